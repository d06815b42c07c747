-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 1 parameters
SELECT [ingest_entry].[id] AS [pk], [ingest_entry].[link_key] AS [link_key] FROM [ingest_entry] WHERE [ingest_entry].[link_key] IN (?)
