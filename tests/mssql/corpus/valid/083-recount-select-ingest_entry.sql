-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount), 0 parameters
SELECT COUNT_BIG(*) AS [__count] FROM [ingest_entry]
