-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 10 parameters
SET NOCOUNT ON INSERT INTO [auth_user] ([password], [last_login], [is_superuser], [username], [first_name], [last_name], [email], [is_staff], [is_active], [date_joined]) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?); SELECT CAST(SCOPE_IDENTITY() AS bigint)
