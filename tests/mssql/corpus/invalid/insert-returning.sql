-- reject: returning
-- why: PostgreSQL/SQLite/MariaDB RETURNING; sqlfluff's tsql grammar accepts it
INSERT INTO [ingest_author] ([name], [email]) VALUES (?, ?), (?, ?) RETURNING [ingest_author].[id]
