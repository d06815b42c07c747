-- reject: foreign-operator
-- why: PostgreSQL's :: cast; sqlfluff's tsql grammar accepts it
SELECT [ingest_entry].[id]::text AS [id] FROM [ingest_entry]
