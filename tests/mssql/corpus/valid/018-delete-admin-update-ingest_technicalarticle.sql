-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 2 parameters
SET NOCOUNT OFF; UPDATE [ingest_technicalarticle] SET [active] = ? WHERE [ingest_technicalarticle].[id] = ?
