-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount-update_subquery), 1 parameters
SELECT TOP 2000 [ingest_entry].[id] AS [pk] FROM [ingest_entry] WHERE [ingest_entry].[id] > ? ORDER BY 1 ASC
