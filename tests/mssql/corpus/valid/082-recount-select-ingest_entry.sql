-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount), 1 parameters
SELECT TOP 1000 [ingest_entry].[id] AS [pk], [ingest_entry].[number_of_comments] AS [number_of_comments], [ingest_entry].[number_of_pingbacks] AS [number_of_pingbacks] FROM [ingest_entry] WHERE [ingest_entry].[id] > ? ORDER BY 1 ASC
