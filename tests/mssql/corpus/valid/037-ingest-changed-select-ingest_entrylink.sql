-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 1 parameters
SELECT [ingest_entrylink].[entry_id] AS [entry_id], [ingest_entrylink].[link_key] AS [link_key] FROM [ingest_entrylink] WHERE [ingest_entrylink].[link_key] IN (?)
