-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 7 parameters
SET NOCOUNT OFF; UPDATE [ingest_commentfeed] SET [etag] = ?, [last_modified] = ?, [last_fetched_at] = ?, [next_fetch_at] = ?, [consecutive_failures] = ?, [last_error] = ? WHERE [ingest_commentfeed].[entry_id] = ?
