-- reject: offset
-- why: T-SQL pages only an ordered query
SELECT [ingest_entry].[id] FROM [ingest_entry] OFFSET 40 ROWS FETCH NEXT 21 ROWS ONLY
