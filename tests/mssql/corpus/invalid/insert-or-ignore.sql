-- reject: grammar
-- why: SQLite's INSERT OR IGNORE
INSERT OR IGNORE INTO [ingest_author] ([name], [email]) VALUES (?, ?)
