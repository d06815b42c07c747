-- accept: captured from mssql-django 2.0.0 (sqlserver-2019, phase ingest-first), 6 parameters
SET NOCOUNT OFF; UPDATE [ingest_technicalarticle] SET [lease_owner] = ?, [lease_expires_at] = ? WHERE (([ingest_technicalarticle].[lease_expires_at] IS NULL OR [ingest_technicalarticle].[lease_expires_at] < ? OR [ingest_technicalarticle].[lease_owner] = ?) AND [ingest_technicalarticle].[id] IN (?, ?))
