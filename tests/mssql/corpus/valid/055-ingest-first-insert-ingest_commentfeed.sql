-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 7 parameters
INSERT INTO [ingest_commentfeed] ([entry_id], [etag], [last_modified], [last_fetched_at], [next_fetch_at], [consecutive_failures], [last_error]) VALUES (?, ?, ?, ?, ?, ?, ?)
