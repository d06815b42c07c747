-- reject: returning
-- why: RETURNING on a DELETE; T-SQL has OUTPUT DELETED.*
SET NOCOUNT OFF; DELETE FROM [ingest_comment] WHERE [ingest_comment].[id] IN (?, ?, ?) RETURNING [id]
