-- reject: foreign-operator
-- why: PostgreSQL's ILIKE
SELECT [ingest_author].[id] FROM [ingest_author] WHERE [ingest_author].[name] ILIKE ?
