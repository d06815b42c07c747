-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-changed), 1 parameters
SELECT [ingest_technicalarticle].[id] AS [pk] FROM [ingest_technicalarticle] WHERE [ingest_technicalarticle].[active] = ? ORDER BY [ingest_technicalarticle].[next_fetch_at] ASC, 1 ASC OFFSET 0 ROWS
