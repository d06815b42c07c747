-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 2 parameters
SET NOCOUNT OFF; UPDATE [ingest_ingestrun] SET [sources_total] = ? WHERE [ingest_ingestrun].[id] = ?
