-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 2 parameters
SELECT TOP 1 ? AS [a] FROM [ingest_entry] WHERE [ingest_entry].[technical_article_id] = ?
