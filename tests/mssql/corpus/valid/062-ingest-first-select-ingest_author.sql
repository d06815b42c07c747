-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 1 parameters
SELECT [ingest_author].[identity_key] AS [identity_key], [ingest_author].[id] AS [id] FROM [ingest_author] WHERE [ingest_author].[identity_key] IN (?) ORDER BY [ingest_author].[name] ASC OFFSET 0 ROWS
