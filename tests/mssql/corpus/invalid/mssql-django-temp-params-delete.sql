-- reject: temp-params
-- why: captured: each cascade step then reads the temporary table
SET NOCOUNT OFF; DELETE FROM [ingest_comment] WHERE [ingest_comment].[entry_id] IN (SELECT params from #Temp_params)
