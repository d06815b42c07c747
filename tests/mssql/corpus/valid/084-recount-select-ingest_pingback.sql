-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount), 2 parameters
DECLARE @var0 INT = ? ,@var1 INT = ?  
SELECT [ingest_pingback].[target_id] AS [target_id], COUNT_BIG([ingest_pingback].[id]) AS [n] FROM [ingest_pingback] WHERE ([ingest_pingback].[target_id] >= @var0 AND [ingest_pingback].[target_id] <= @var1) GROUP BY [ingest_pingback].[target_id]
