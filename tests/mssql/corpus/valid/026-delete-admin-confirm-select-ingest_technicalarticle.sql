-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin-confirm), 1 parameters
SELECT TOP 1 [ingest_technicalarticle].[id] AS [pk], [ingest_technicalarticle].[name] AS [name], [ingest_technicalarticle].[feed_url] AS [feed_url] FROM [ingest_technicalarticle] WHERE [ingest_technicalarticle].[id] = ? ORDER BY 2 ASC
