-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 7 parameters
SET NOCOUNT ON INSERT INTO [django_admin_log] ([action_time], [user_id], [content_type_id], [object_id], [object_repr], [action_flag], [change_message]) VALUES (?, ?, ?, ?, ?, ?, ?); SELECT CAST(SCOPE_IDENTITY() AS bigint)
