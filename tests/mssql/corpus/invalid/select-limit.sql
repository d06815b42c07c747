-- reject: limit
-- why: LIMIT is PostgreSQL/MySQL/SQLite; sqlfluff's tsql grammar accepts it
SELECT [ingest_entry].[id] FROM [ingest_entry] ORDER BY [ingest_entry].[id] ASC LIMIT 21
