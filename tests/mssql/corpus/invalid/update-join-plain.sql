-- reject: update-join
-- why: JOIN without INNER, as MySQL accepts it
UPDATE [ingest_entry] JOIN [ingest_comment] ON [ingest_comment].[entry_id] = [ingest_entry].[id] SET [ingest_entry].[number_of_comments] = [ingest_entry].[number_of_comments] + ? WHERE [ingest_comment].[id] = ?
