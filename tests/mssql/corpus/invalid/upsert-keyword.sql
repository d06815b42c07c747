-- reject: grammar
-- why: not a statement of any SQL Server version
UPSERT INTO [ingest_author] ([name], [email]) VALUES (?, ?)
