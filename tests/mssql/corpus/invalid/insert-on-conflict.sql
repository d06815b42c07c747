-- reject: on-conflict
-- why: PostgreSQL/SQLite upsert; sqlglot 30.30 reads it as T-SQL
INSERT INTO [ingest_author] ([name], [email]) VALUES (?, ?) ON CONFLICT ([name], [email]) DO NOTHING
