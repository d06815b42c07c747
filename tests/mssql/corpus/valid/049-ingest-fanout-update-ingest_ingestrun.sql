-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-fanout), 5 parameters
SET NOCOUNT OFF; UPDATE [ingest_ingestrun] SET [status] = ?, [error] = ?, [finished_at] = ? WHERE ([ingest_ingestrun].[id] = ? AND [ingest_ingestrun].[status] = ?)
