"""SQL Server without a server: a recording stand-in for the ODBC driver (``recorder``), the
T-SQL reader the contract tests use (``tsql``), and the capture script (``capture``)."""

import os

import pytest


def require_pyodbc() -> None:
    """Skip unless pyodbc loads (mssql-django imports it; it needs unixODBC's libodbc.so.2, which
    .ci/run installs); under REQUIRE_SERVICES=1 a missing library fails instead."""
    try:
        import pyodbc  # noqa: F401
    except ImportError as exc:
        message = f"pyodbc cannot load ({exc}); install unixODBC: apt-get install unixodbc"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message + " (REQUIRE_SERVICES=1 makes this a failure)")
        pytest.skip(message)
