"""mssql:// URLs: every mssql-django option in its type, ODBC keywords, refusals; and what reaches mssql-django.

Parsing is checked directly; then a fresh process builds mssql-django's own connection from such
a URL (the driver's ``connect`` replaced by a stand-in that records what it is given) to show that
each option arrives where mssql-django reads it. Last, two start-up failures as a user meets them
through ``manage.py``: TIME_ZONE other than UTC on SQL Server, and an ODBC driver that is not
installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pipeline.dburl import parse_database_url
from tests.mssql import require_pyodbc

pytestmark = pytest.mark.nodb
ROOT = Path(__file__).resolve().parent.parent
BASE = Path("/srv/app")
EVERY_OPTION = (
    "mssql://app:pw@sql.example.com:1433/pipeline?Encrypt=yes&trustservercertificate=no"
    "&connection_timeout=7&query_timeout=30&connection_retries=2&connection_retry_backoff_time=3&datefirst=1"
    "&connection_recovery_interval_msec=250&host_is_server=yes&unicode_results=true&return_rows_bulk_insert=1"
    "&driver_needs_utf8=on&isolation_level=read_committed&collation=Latin1_General_100_CI_AS_SC_UTF8"
    "&driver=ODBC+Driver+18+for+SQL+Server&driver_charset=utf-8&extra_params=APP%3Dfeed-pipeline"
    "&ApplicationIntent=ReadOnly&KeystoreSecret=s%3Bcret%7D"
)


def options(url: str, **kwargs) -> dict:
    return parse_database_url(url, base_dir=BASE, **kwargs)["OPTIONS"]


def refused(url: str) -> str:
    with pytest.raises(ImproperlyConfigured) as caught:
        parse_database_url(url, base_dir=BASE)
    message = str(caught.value)
    assert "\n" not in message and message.endswith((".", "?")), message
    return message


def test_every_option_in_the_type_mssql_django_reads():
    assert options(EVERY_OPTION) == {
        "driver": "ODBC Driver 18 for SQL Server", "connection_timeout": 7, "query_timeout": 30,
        "connection_retries": 2, "connection_retry_backoff_time": 3, "datefirst": 1,
        "connection_recovery_interval_msec": 250.0, "host_is_server": True, "unicode_results": True,
        "return_rows_bulk_insert": True, "driver_needs_utf8": True, "isolation_level": "READ COMMITTED",
        "collation": "Latin1_General_100_CI_AS_SC_UTF8", "driver_charset": "utf-8",
        # extra_params first, then each ODBC keyword as documented, braced where its value needs it.
        "extra_params": "APP=feed-pipeline;Encrypt=yes;TrustServerCertificate=no;ApplicationIntent=ReadOnly;"
                        "KeystoreSecret={s;cret}}}",
    }


@pytest.mark.parametrize("query, expected", [
    ("unicode_results=false&host_is_server=0&return_rows_bulk_insert=no", {"unicode_results": False,
                                                                            "host_is_server": False,
                                                                            "return_rows_bulk_insert": False}),
    ("driver_needs_utf8=false", {}),  # mssql-django tests this one for presence: false leaves it out
    ("isolation_level=SNAPSHOT", {"isolation_level": "SNAPSHOT"}),
    ("isolation_level=repeatable+read", {"isolation_level": "REPEATABLE READ"}),
    ("python_driver=mssql-python", {"python_driver": "mssql_python"}),
    ("dsn=PipelineDSN", {"dsn": "PipelineDSN"}),
    ("Connection_Retries=0", {"connection_retries": 0}),  # option names, like ODBC keywords, ignore case
])
def test_values_and_their_types(query, expected):
    got = options(f"mssql://u:p@h/db?{query}")
    assert got == {"driver": "ODBC Driver 18 for SQL Server", **expected}


def test_the_connect_timeout_default_and_the_url_wins():
    assert options("mssql://u:p@h/db", connect_timeout=10)["connection_timeout"] == 10
    assert options("mssql://u:p@h/db?connection_timeout=3", connect_timeout=10)["connection_timeout"] == 3


def test_an_unknown_key_is_refused_by_name_with_the_allowed_ones():
    message = refused("mssql://u:p@h/db?Encrpyt=yes")
    assert message.startswith("DATABASE_URL option 'Encrpyt' is neither an mssql-django option nor an ODBC "
                              "Driver 18 keyword (did you mean Encrypt?).")
    for allowed in ("connection_retries", "isolation_level", "return_rows_bulk_insert", "python_driver",
                    "TrustServerCertificate", "Authentication", "MultiSubnetFailover", "extra_params=Key%3Dvalue"):
        assert allowed in message
    assert "did you mean" not in refused("mssql://u:p@h/db?colour=blue")


@pytest.mark.parametrize("query, expected", [
    ("connection_retries=many", "DATABASE_URL option connection_retries must be a whole number of 0 or more, not 'many'."),
    ("query_timeout=-1", "DATABASE_URL option query_timeout must be a whole number of 0 or more, not '-1'."),
    ("datefirst=8", "DATABASE_URL option datefirst must be a whole number from 1 to 7, not '8'."),
    ("connection_recovery_interval_msec=nan", "connection_recovery_interval_msec must be a number of 0 or more"),
    ("unicode_results=maybe", "DATABASE_URL option unicode_results must be true or false, not 'maybe'."),
    ("isolation_level=READ+COMMITTED%3B+DROP+TABLE+x", "isolation_level must be one of READ UNCOMMITTED, READ COMMITTED"),
    ("collation=Latin1%20General", "DATABASE_URL option collation must be a collation name"),
    ("python_driver=pyodbc", "DATABASE_URL option python_driver must be mssql_python"),
    ("Encrypt=", "DATABASE_URL option Encrypt is empty; give it a value or leave it out."),
    ("UID=someone", "DATABASE_URL option UID is not allowed: mssql-django sets it from the user of the URL."),
    ("PWD=x", "sets it from the password of the URL"),
    ("Server=other", "sets it from the host and port of the URL"),
    ("Database=other", "sets it from the path of the URL"),
    ("setencoding=utf-8", "DATABASE_URL option 'setencoding' is neither"),
])
def test_bad_values_are_one_sentence(query, expected):
    assert expected in refused(f"mssql://u:p@h/db?{query}")


# --- What mssql-django does with them -------------------------------------------------------------

CONNECT_SCRIPT = r"""
import datetime, json, sys
from django.conf import settings
from pipeline.dburl import parse_database_url
from pathlib import Path

settings.configure(USE_TZ=True, TIME_ZONE="UTC", DATABASES={"default": parse_database_url(sys.argv[1], base_dir=Path("."))})
import django
django.setup()
import pyodbc
from django.db import connection
from mssql.base import DatabaseWrapper

sent = {"statements": []}

class Cursor:
    def execute(self, sql, params=()):
        sent["statements"].append(sql)
        self.row = (0,) if "@@TRANCOUNT" in sql else (datetime.datetime(2026, 1, 1),)
        return self
    def fetchone(self):
        return self.row
    def close(self):
        pass
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        pass

class Connection:
    timeout = None
    def getinfo(self, kind):
        return "libmsodbcsql-18.5.so.1.1"
    def cursor(self):
        return Cursor()
    def add_output_converter(self, *args):
        pass
    def setencoding(self, **kw):
        pass
    def setdecoding(self, *a, **kw):
        pass
    autocommit = True
    def close(self):
        pass

def connect(connection_string, **kwargs):
    sent["connection_string"], sent["kwargs"] = connection_string, kwargs
    return Connection()

pyodbc.connect = connect
DatabaseWrapper._known_versions["default"], DatabaseWrapper._known_azures["default"] = 2022, False
connection.ensure_connection()
sent["query_timeout"] = connection.connection.timeout
sent["bulk_insert_returns_rows"] = connection.features.can_return_rows_from_bulk_insert
sent["contains"] = connection.operators["contains"]
sent["recovery_s"] = connection.connection_recovery_interval_msec
print(json.dumps(sent))
"""


def _env(**extra) -> dict:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CONN_", "TIME_ZONE"))}
    return {**keep, **extra}


def test_each_option_reaches_mssql_django():
    require_pyodbc()
    url = EVERY_OPTION.replace("&driver_needs_utf8=on", "")  # driver_charset is what it would set
    result = subprocess.run([sys.executable, "-c", CONNECT_SCRIPT, url], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    sent = json.loads(result.stdout)
    assert sent["kwargs"] == {"timeout": 7, "unicode_results": True}  # the ODBC login timeout
    assert sent["connection_string"] == (
        "DRIVER=ODBC Driver 18 for SQL Server;SERVER=sql.example.com,1433;UID=app;PWD=pw;DATABASE=pipeline;"
        "APP=feed-pipeline;Encrypt=yes;TrustServerCertificate=no;ApplicationIntent=ReadOnly;KeystoreSecret={s;cret}}}")
    session = [sql for sql in sent["statements"] if sql.startswith("SET ")]
    assert session[:2] == ["SET TRANSACTION ISOLATION LEVEL READ COMMITTED", "SET DATEFORMAT ymd; SET DATEFIRST 1"]
    assert sent["query_timeout"] == 30
    assert sent["bulk_insert_returns_rows"] is True
    assert sent["contains"].endswith("COLLATE Latin1_General_100_CI_AS_SC_UTF8")
    assert sent["recovery_s"] == 0.25  # driver_charset only matters to non-Microsoft drivers (FreeTDS)


# --- Start-up failures, through manage.py ---------------------------------------------------------


def _manage(*args: str, url: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL,
                          env=_env(DJANGO_SETTINGS_MODULE="pipeline.settings", DJANGO_DEBUG="1", DATABASE_URL=url, **env))


def test_a_time_zone_other_than_utc_is_refused_on_sql_server():
    result = _manage("ingest_feeds", url="mssql://u:p@127.0.0.1:1/db?Encrypt=yes", TIME_ZONE="Europe/Berlin")
    assert result.returncode == 2
    assert result.stderr.strip() == ("manage.py: configuration error: TIME_ZONE must be UTC on SQL Server "
                                     "(mssql-django issue 371), not 'Europe/Berlin': leave TIME_ZONE unset or set it to UTC.")
    fine = _manage("check", url="postgres://u@127.0.0.1:1/db", TIME_ZONE="Europe/Berlin")
    assert fine.returncode == 0, fine.stderr


@pytest.mark.parametrize("args", [("ingest_feeds",), ("ingest_feeds", "--json"), ("recompute_counts",)])
def test_a_missing_odbc_driver_is_one_sentence_that_names_the_package(args):
    require_pyodbc()
    result = _manage(*args, url="mssql://u:p@127.0.0.1:1/db?driver=ODBC+Driver+99+for+SQL+Server&Encrypt=yes")
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == ("CommandError: The ODBC driver 'ODBC Driver 99 for SQL Server' is not installed: install msodbcsql18 "
                    "from Microsoft's package repository (README, \"Installing the driver\"), or use the driver inside "
                    "the mssql-python wheel (it brings mssql-python-odbc) by adding python_driver=mssql_python to "
                    "DATABASE_URL.")
    if "--json" in args:
        assert json.loads(result.stdout)["error"] == line.removeprefix("CommandError: ")
