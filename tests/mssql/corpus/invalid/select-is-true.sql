-- reject: boolean-literal
-- why: IS TRUE is PostgreSQL/MySQL
SELECT [ingest_technicalarticle].[id] FROM [ingest_technicalarticle] WHERE ([ingest_technicalarticle].[active] = ?) IS TRUE
