-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 0 parameters
SAVE TRANSACTION s140346310626176_x1
