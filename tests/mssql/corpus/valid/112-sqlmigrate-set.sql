-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase sqlmigrate), 0 parameters
SET DATEFORMAT ymd; SET DATEFIRST 7
