-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase sqlmigrate), 1 parameters

            SELECT
                [name],
                COL_NAME([parent_object_id], [parent_column_id])
            FROM
                [sys].[default_constraints]
            WHERE
                OBJECT_NAME([parent_object_id]) = ?
        
