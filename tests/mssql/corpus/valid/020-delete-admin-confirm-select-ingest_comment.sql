-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin-confirm), 1 parameters
SELECT COUNT_BIG(*) AS [__count] FROM [ingest_comment] INNER JOIN [ingest_entry] ON ([ingest_comment].[entry_id] = [ingest_entry].[id]) WHERE [ingest_entry].[technical_article_id] = ?
