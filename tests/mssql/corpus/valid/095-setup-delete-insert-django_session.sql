-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase setup-delete), 3 parameters
INSERT INTO [django_session] ([session_key], [session_data], [expire_date]) VALUES (?, ?, ?)
