-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 1 parameters
SELECT [ingest_entry_authors].[id] AS [id], [ingest_entry_authors].[entry_id] AS [entry_id], [ingest_entry_authors].[author_id] AS [author_id] FROM [ingest_entry_authors] WHERE [ingest_entry_authors].[entry_id] IN (?)
