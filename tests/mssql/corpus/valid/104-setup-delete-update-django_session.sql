-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 3 parameters
SET NOCOUNT OFF; UPDATE [django_session] SET [session_data] = ?, [expire_date] = ? WHERE [django_session].[session_key] = ?
