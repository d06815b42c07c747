-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 2 parameters
DECLARE @var0 INT = ? ,@var1 INT = ?  
SET NOCOUNT OFF; UPDATE [ingest_entry] SET [number_of_comments] = COALESCE((SELECT COUNT_BIG(U0.[id]) AS [n] FROM [ingest_comment] U0 WHERE U0.[entry_id] = ([ingest_entry].[id]) GROUP BY U0.[entry_id]), @var0), [number_of_pingbacks] = COALESCE((SELECT COUNT_BIG(U0.[id]) AS [n] FROM [ingest_pingback] U0 WHERE U0.[target_id] = ([ingest_entry].[id]) GROUP BY U0.[target_id]), @var0) WHERE [ingest_entry].[id] IN (@var1)
