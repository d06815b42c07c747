-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 1 parameters
SELECT [ingest_pingback].[source_key] AS [source_key], [ingest_pingback].[target_id] AS [target_id] FROM [ingest_pingback] WHERE [ingest_pingback].[target_id] IN (?)
