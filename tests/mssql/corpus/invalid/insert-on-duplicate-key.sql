-- reject: on-duplicate-key
-- why: MySQL's upsert
INSERT INTO [ingest_author] ([name], [email]) VALUES (?, ?) ON DUPLICATE KEY UPDATE [email] = ?
