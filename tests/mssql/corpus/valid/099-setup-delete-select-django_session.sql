-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 1 parameters
SELECT TOP 21 [django_session].[session_key], [django_session].[session_data], [django_session].[expire_date] FROM [django_session] WHERE [django_session].[session_key] = ?
