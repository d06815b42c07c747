-- reject: temp-params
-- why: captured: Django's default delete of a source with 2,500 entries (mssql-django issue 156)
CREATE TABLE #Temp_params (params bigint )
