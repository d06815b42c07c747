-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 3 parameters
INSERT INTO [ingest_author] ([name], [email], [identity_key]) VALUES (?, ?, ?)
