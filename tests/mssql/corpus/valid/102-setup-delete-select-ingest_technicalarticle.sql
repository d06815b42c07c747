-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 1 parameters
SELECT TOP 1 [ingest_technicalarticle].[id] AS [pk] FROM [ingest_technicalarticle] WHERE [ingest_technicalarticle].[id] = ? ORDER BY [ingest_technicalarticle].[name] ASC
