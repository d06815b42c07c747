-- reject: grammar foreign-operator
-- why: MySQL's backquoted names
SELECT `ingest_entry`.`id` FROM `ingest_entry`
