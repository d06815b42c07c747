-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 1 parameters
SET NOCOUNT OFF; DELETE FROM [django_session] WHERE [django_session].[session_key] IN (?)
