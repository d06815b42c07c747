-- reject: fetch
-- why: FETCH NEXT needs OFFSET ... ROWS before it
SELECT [ingest_entry].[id] FROM [ingest_entry] ORDER BY [ingest_entry].[id] FETCH NEXT 21 ROWS ONLY
