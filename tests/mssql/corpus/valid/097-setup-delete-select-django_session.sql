-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 2 parameters
SELECT TOP 1 ? AS [a] FROM [django_session] WHERE [django_session].[session_key] = ?
