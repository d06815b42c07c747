-- reject: case-nesting
-- why: IIF is a CASE: the same limit applies
SELECT IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, IIF([ingest_entry].[rating] > ?, ?, ?))))))))))) AS [bucket] FROM [ingest_entry]
