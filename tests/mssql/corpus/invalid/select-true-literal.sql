-- reject: boolean-literal
-- why: T-SQL has no TRUE; sqlglot rewrites it to (1 = 1) and sqlfluff accepts it
SELECT [ingest_technicalarticle].[id] AS [pk] FROM [ingest_technicalarticle] WHERE [ingest_technicalarticle].[active] = TRUE
