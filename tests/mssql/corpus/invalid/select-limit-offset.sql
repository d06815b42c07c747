-- reject: limit offset
-- why: LIMIT n OFFSET m, as Django writes it for PostgreSQL
SELECT [ingest_entry].[id] FROM [ingest_entry] ORDER BY [ingest_entry].[id] ASC LIMIT 21 OFFSET 40
