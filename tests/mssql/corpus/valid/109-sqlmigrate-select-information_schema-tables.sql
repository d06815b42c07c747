-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase sqlmigrate), 0 parameters
SELECT
                        TABLE_NAME,
                        TABLE_TYPE,
                        CAST(ep.value AS VARCHAR) AS COMMENT
                    FROM INFORMATION_SCHEMA.TABLES i
                    LEFT JOIN sys.tables t ON t.name = i.TABLE_NAME
                    LEFT JOIN sys.extended_properties ep ON t.object_id = ep.major_id
                    AND ((ep.name = 'MS_DESCRIPTION' AND ep.minor_id = 0) OR ep.value IS NULL)
                    WHERE i.TABLE_SCHEMA = SCHEMA_NAME()
