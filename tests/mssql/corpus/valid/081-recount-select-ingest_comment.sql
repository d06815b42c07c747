-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase recount), 2 parameters
DECLARE @var0 INT = ? ,@var1 INT = ?  
SELECT [ingest_comment].[entry_id] AS [entry_id], COUNT_BIG([ingest_comment].[id]) AS [n] FROM [ingest_comment] WHERE ([ingest_comment].[entry_id] >= @var0 AND [ingest_comment].[entry_id] <= @var1) GROUP BY [ingest_comment].[entry_id]
