-- reject: boolean-value
-- why: EXISTS is a predicate; mssql-django wraps it in CASE WHEN
SELECT [ingest_entry].[id], EXISTS(SELECT 1 AS [a] FROM [ingest_comment] U0 WHERE U0.[entry_id] = ([ingest_entry].[id])) AS [has_comments] FROM [ingest_entry]
