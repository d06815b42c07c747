-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase sqlmigrate), 1 parameters

            SELECT
                i.name AS index_name,
                i.is_unique,
                i.is_unique_constraint,
                i.is_primary_key,
                i.type,
                i.type_desc,
                ic.is_descending_key,
                c.name AS column_name
            FROM
                sys.tables AS t
            INNER JOIN sys.schemas AS s ON
                t.schema_id = s.schema_id
            INNER JOIN sys.indexes AS i ON
                t.object_id = i.object_id
            INNER JOIN sys.index_columns AS ic ON
                i.object_id = ic.object_id AND
                i.index_id = ic.index_id
            INNER JOIN sys.columns AS c ON
                ic.object_id = c.object_id AND
                ic.column_id = c.column_id
            WHERE
                t.schema_id = SCHEMA_ID(SCHEMA_NAME()) AND
                t.name = ?
            ORDER BY
                i.index_id ASC,
                ic.index_column_id ASC
        
