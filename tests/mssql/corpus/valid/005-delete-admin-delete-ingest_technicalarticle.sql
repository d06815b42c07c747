-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 1 parameters
SET NOCOUNT OFF; DELETE FROM [ingest_technicalarticle] WHERE [ingest_technicalarticle].[id] IN (?)
