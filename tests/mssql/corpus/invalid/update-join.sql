-- reject: update-join
-- why: MySQL's UPDATE ... JOIN ... SET; T-SQL is UPDATE ... SET ... FROM ... JOIN
UPDATE [ingest_entry] INNER JOIN [ingest_technicalarticle] ON ([ingest_entry].[technical_article_id] = [ingest_technicalarticle].[id]) SET [ingest_entry].[rating] = ? WHERE [ingest_technicalarticle].[active] = ?
