"""SQL Server without a server: a recording stand-in for the ODBC driver (``recorder``), the
T-SQL reader the contract tests use (``tsql``), and the capture script (``capture``)."""
