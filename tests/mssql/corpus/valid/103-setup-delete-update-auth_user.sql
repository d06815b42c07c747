-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 2 parameters
SET NOCOUNT OFF; UPDATE [auth_user] SET [last_login] = ? WHERE [auth_user].[id] = ?
