-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-fanout), 2 parameters
SET NOCOUNT OFF; UPDATE [ingest_ingestrun] SET [lease_owner] = ? WHERE [ingest_ingestrun].[id] = ?
