-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount-since), 2 parameters
SELECT COUNT_BIG(*) AS [__count] FROM [ingest_entry] WHERE ([ingest_entry].[id] IN (SELECT U0.[entry_id] AS [entry_id] FROM [ingest_comment] U0 WHERE U0.[created_at] >= ?) OR [ingest_entry].[id] IN (SELECT U0.[target_id] AS [target_id] FROM [ingest_pingback] U0 WHERE U0.[created_at] >= ?))
