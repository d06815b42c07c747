-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 1 parameters
SELECT TOP 1000 [ingest_entry].[id] AS [pk] FROM [ingest_entry] WHERE [ingest_entry].[technical_article_id] = ? ORDER BY 1 ASC
