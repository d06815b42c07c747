-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 1 parameters
SELECT [ingest_entry].[id] FROM [ingest_entry] WHERE [ingest_entry].[technical_article_id] IN (?)
