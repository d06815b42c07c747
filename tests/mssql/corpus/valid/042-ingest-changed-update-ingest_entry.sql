-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 5 parameters
SET NOCOUNT OFF; UPDATE [ingest_entry] SET [headline] = CASE WHEN ([ingest_entry].[id] = ?) THEN ? ELSE NULL END, [content_hash] = CASE WHEN ([ingest_entry].[id] = ?) THEN ? ELSE NULL END WHERE [ingest_entry].[id] IN (?)
