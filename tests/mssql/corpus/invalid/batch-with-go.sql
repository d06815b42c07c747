-- reject: go
-- why: GO belongs to sqlcmd and SSMS; the server rejects it
SET NOCOUNT ON
GO
SELECT [ingest_entry].[id] FROM [ingest_entry] WHERE [ingest_entry].[id] = ?
