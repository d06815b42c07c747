-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase delete-admin), 2 parameters
SELECT TOP 21 [django_content_type].[id], [django_content_type].[app_label], [django_content_type].[model] FROM [django_content_type] WHERE ([django_content_type].[app_label] = ? AND [django_content_type].[model] = ?)
