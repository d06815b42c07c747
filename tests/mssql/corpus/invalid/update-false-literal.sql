-- reject: boolean-literal
-- why: T-SQL has no FALSE: a bit column takes 0
SET NOCOUNT OFF; UPDATE [ingest_technicalarticle] SET [active] = FALSE WHERE [ingest_technicalarticle].[id] = ?
