-- accept: captured from mssql-django 2.0.0 (sqlserver-2022, phase recount), 1 parameters
SELECT COUNT(*), MAX([b].[k]) FROM (SELECT TOP 1000 [ingest_entry].[id] AS [k] FROM [ingest_entry] WHERE [ingest_entry].[id] > ? ORDER BY [ingest_entry].[id] ASC) [b]
