-- reject: foreign-operator
-- why: '||' only exists from SQL Server 2025 on; 2019 and 2022 reject it
SELECT [ingest_author].[name] || ? AS [label] FROM [ingest_author]
