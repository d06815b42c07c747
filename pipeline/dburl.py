"""Turn a ``DATABASE_URL`` into one entry of Django's ``DATABASES``.

Owns the URL grammar and the connection options it implies; it imports no database driver, so
choosing SQLite, PostgreSQL or MariaDB never needs the ODBC libraries.

    (unset)                                  -> SQLite file under var/
    sqlite:///relative/or//absolute/path     -> SQLite
    postgres://user:pass@host:port/db?sslmode=require
    mysql://user:pass@host:port/db           -> MariaDB / MySQL (PyMySQL)
    mssql://user:pass@host:port/db?Encrypt=yes&TrustServerCertificate=no
        each query key (case aside) is one of two kinds, and anything else is refused by name:
        * an mssql-django OPTION, in its type: integers connection_timeout, query_timeout,
          connection_retries, connection_retry_backoff_time, datefirst (1-7); the number
          connection_recovery_interval_msec; booleans (true/false, yes/no, 1/0, on/off)
          host_is_server, unicode_results, return_rows_bulk_insert, driver_needs_utf8;
          isolation_level (READ COMMITTED, SNAPSHOT, ...); collation (a collation name);
          python_driver=mssql_python; strings driver, dsn, driver_charset, extra_params (raw
          ODBC text, ';'-separated: percent-encode ';' and '=');
        * an ODBC Driver 18 connection-string keyword (Encrypt, TrustServerCertificate,
          Authentication, ApplicationIntent, MultiSubnetFailover, HostnameInCertificate, ...:
          ``_ODBC_KEYWORDS``), appended to extra_params as Keyword=value (braced when the value
          holds ';'). Server, Database, UID, PWD and Trusted_Connection come from the URL itself.
        Any other ODBC keyword: in extra_params. setencoding/setdecoding: not from a URL.

``connect_timeout`` (DB_CONNECT_TIMEOUT) becomes each driver's own bound on opening a connection:
libpq's ``connect_timeout``, PyMySQL's ``connect_timeout``, mssql-django's ``connection_timeout``
(the ODBC login timeout); settings also bound PyMySQL's handshake reads with it (see
``mysql_reads_unbounded``). The same key in the URL's query string wins. SQLite opens a file and
keeps its lock ``timeout``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

MSSQL_DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
# mssql-django 2.0's OPTIONS a URL can carry, by type (mssql/base.py reads each). setencoding and
# setdecoding take lists of dicts: settings only. Every key is matched without regard to case.
_MSSQL_INTEGERS = {  # name: lowest value
    "connection_timeout": 0, "query_timeout": 0, "connection_retries": 0, "connection_retry_backoff_time": 0,
    "datefirst": 1,
}
_MSSQL_NUMBERS = {"connection_recovery_interval_msec"}
_MSSQL_BOOLEANS = {"host_is_server", "unicode_results", "return_rows_bulk_insert", "driver_needs_utf8"}
_MSSQL_STRINGS = {"driver", "dsn", "extra_params", "driver_charset"}
# Written into SQL by mssql-django (SET TRANSACTION ISOLATION LEVEL %s, LIKE ... COLLATE %s): checked.
_MSSQL_ISOLATION_LEVELS = ("READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SNAPSHOT", "SERIALIZABLE")
_MSSQL_PYTHON_DRIVERS = ("mssql_python", "mssql-python", "python")
_MSSQL_OPTIONS = sorted({*_MSSQL_INTEGERS, *_MSSQL_NUMBERS, *_MSSQL_BOOLEANS, *_MSSQL_STRINGS,
                         "isolation_level", "collation", "python_driver"})
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# Connection-string keywords of Microsoft's ODBC Driver 18 (learn.microsoft.com, "DSN and connection
# string keywords and attributes"), spelled as documented; appended to extra_params as Key=value.
_ODBC_KEYWORDS = {k.lower(): k for k in (
    "AnsiNPW", "APP", "ApplicationIntent", "AttachDBFileName", "Authentication", "AutoTranslate",
    "ClientCertificate", "ClientKey", "ColumnEncryption", "ConcatNullYieldsNull", "ConnectRetryCount",
    "ConnectRetryInterval", "ConnectTimeout", "Description", "Encrypt", "Failover_Partner", "FailoverPartner",
    "FailoverPartnerSPN", "FileDSN", "GetDataExtensions", "HostnameInCertificate", "IpAddressPreference",
    "KeepAlive", "KeepAliveInterval", "KeystoreAuthentication", "KeystorePrincipalId", "KeystoreSecret",
    "Language", "LongAsMax", "MARS_Connection", "MultipleActiveResultSets", "MultiSubnetFailover", "Net",
    "Network", "QueryLog_On", "QueryLogFile", "QueryLogTime", "QuotedId", "Regional", "Replication",
    "RetryExec", "SaveFile", "ServerCertificate", "ServerSPN", "StatsLog_On", "StatsLogFile",
    "TransparentNetworkIPResolution", "TrustServerCertificate", "UseFMTONLY", "WSID",
)}
# ODBC keywords mssql-django writes itself from the URL's parts: a second one would contradict them.
_ODBC_FROM_URL = {"server": "the host and port", "address": "the host and port", "addr": "the host and port",
                  "database": "the path", "uid": "the user", "pwd": "the password",
                  "trusted_connection": "leaving out the user (a system-assigned managed identity takes "
                                        "Authentication=ActiveDirectoryMsi)"}
# PyMySQL compares these with numbers, so a string from the query string would fail at connect time.
_MYSQL_INTEGERS = ("connect_timeout", "read_timeout", "write_timeout")


def parse_database_url(url: str | None, *, base_dir: Path, connect_timeout: int | None = None) -> dict:
    if not url:
        path = base_dir / "var" / "pipeline.sqlite3"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": _sqlite_options()}
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL"
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "sqlite":
        raw = unquote(parts.path)
        # sqlite:///var/x.sqlite3 is relative to the repository; sqlite:////abs/x is absolute.
        name = raw[1:]
        path = Path(name) if Path(name).is_absolute() else base_dir / name
        if name in ("", ":memory:"):
            path = ":memory:"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": _sqlite_options()}
    if scheme not in _SCHEMES:
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme {scheme!r} is not supported; use sqlite, postgres, mysql or mssql."
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        # Only the part after the credentials, so that the sentence never shows a password.
        shown = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ImproperlyConfigured(f"DATABASE_URL has the port {shown!r}; a port is a number from 1 to 65535.")
    common = {
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(port or ""),
    }
    if not common["NAME"]:
        raise ImproperlyConfigured(f"DATABASE_URL for {scheme} must name a database, as in {scheme}://user@host/dbname.")
    if scheme in ("postgres", "postgresql", "pgsql"):
        options = {**_timeout(connect_timeout, "connect_timeout"), **query}
        _integers(options, ("connect_timeout",))
        return {"ENGINE": "django.db.backends.postgresql", **common, "OPTIONS": options}
    if scheme in ("mysql", "mariadb"):
        options = {"charset": "utf8mb4", **_timeout(connect_timeout, "connect_timeout"), **query}
        _integers(options, _MYSQL_INTEGERS, positive=True)
        return {"ENGINE": "django.db.backends.mysql", **common, "OPTIONS": options}
    return {"ENGINE": "mssql", **common, "OPTIONS": _mssql_options(query, connect_timeout)}


_SCHEMES = {"postgres", "postgresql", "pgsql", "mysql", "mariadb", "mssql", "sqlserver"}


def _timeout(seconds: int | None, key: str) -> dict:
    return {key: seconds} if seconds else {}


def _integers(options: dict, keys, *, positive: bool = False) -> None:
    """Turn the query string's whole-number options into ints, refusing anything else by name."""
    for key in keys:
        raw = options.get(key)
        if not isinstance(raw, str):
            continue
        try:
            options[key] = int(raw)
        except ValueError:
            options[key] = -1
        if options[key] < int(positive):
            what = "a whole number above 0" if positive else "a whole number of 0 or more"
            raise ImproperlyConfigured(f"DATABASE_URL option {key} must be {what}, not {raw!r}.")


def mysql_reads_unbounded(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver for MySQL/MariaDB: lift the read bound of the handshake.

    PyMySQL's ``connect_timeout`` covers the TCP connect only; the server's greeting, the login and
    the session set-up are read with ``read_timeout``. Settings set that to the connect timeout
    when the URL names none, so a server that accepts and never answers cannot hang a command; once
    Django has set the connection up, reads are unbounded again, since a long statement (a large
    recount chunk, a lock wait) must not time out on the client.
    """
    if connection.vendor == "mysql":
        # No public setter; every read applies this attribute (PyMySQL is pinned in requirements.txt,
        # and tests/test_config_errors.py runs a statement longer than the connect timeout).
        connection.connection._read_timeout = None


def _sqlite_options() -> dict:
    # WAL lets readers (the admin, pipeline_status) work while a run writes; IMMEDIATE makes a
    # writer take the lock at BEGIN, so two writers queue instead of deadlocking mid-transaction.
    return {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }


def _mssql_options(query: dict[str, str], connect_timeout: int | None) -> dict:
    """OPTIONS for mssql-django: its own options typed, ODBC keywords into ``extra_params``.

    A key that is neither is refused by name, so a misspelt ``Encrpyt=yes`` stops start-up instead
    of reaching the driver (which ignores unknown keywords).
    """
    options: dict = {"driver": MSSQL_DEFAULT_DRIVER}
    options.update(_timeout(connect_timeout, "connection_timeout"))
    keywords: list[str] = []
    for raw_key, value in query.items():
        key = raw_key.lower()
        if key not in _MSSQL_OPTIONS and key not in _ODBC_KEYWORDS:
            raise ImproperlyConfigured(_mssql_unknown(raw_key))
        if value.strip() == "":
            raise ImproperlyConfigured(f"DATABASE_URL option {raw_key} is empty; give it a value or leave it out.")
        if key in _ODBC_KEYWORDS:
            keywords.append(f"{_ODBC_KEYWORDS[key]}={_odbc_value(value)}")
        else:
            _mssql_option(options, key, value)
    extra = [options.pop("extra_params").strip(";")] if "extra_params" in options else []
    if extra or keywords:
        options["extra_params"] = ";".join(extra + keywords)
    return options


def _mssql_option(options: dict, key: str, value: str) -> None:
    """Set one mssql-django option from its query-string text, in the type mssql-django reads."""
    text = value.strip()
    if key in _MSSQL_INTEGERS:
        low = _MSSQL_INTEGERS[key]
        high = 7 if key == "datefirst" else None
        if not text.isdecimal() or int(text) < low or (high is not None and int(text) > high):
            bound = f"from {low} to {high}" if high else f"of {low} or more"
            raise ImproperlyConfigured(f"DATABASE_URL option {key} must be a whole number {bound}, not {value!r}.")
        options[key] = int(text)
    elif key in _MSSQL_NUMBERS:
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if not 0 <= number < float("inf"):
            raise ImproperlyConfigured(f"DATABASE_URL option {key} must be a number of 0 or more, not {value!r}.")
        options[key] = number
    elif key in _MSSQL_BOOLEANS:
        if text.lower() not in _TRUE + _FALSE:
            raise ImproperlyConfigured(f"DATABASE_URL option {key} must be true or false, not {value!r}.")
        if text.lower() in _TRUE:
            options[key] = True
        elif key != "driver_needs_utf8":  # mssql-django tests that one for presence, not truth
            options[key] = False
    elif key == "isolation_level":
        level = " ".join(text.upper().replace("_", " ").split())
        if level not in _MSSQL_ISOLATION_LEVELS:
            raise ImproperlyConfigured(f"DATABASE_URL option isolation_level must be one of "
                                       f"{', '.join(_MSSQL_ISOLATION_LEVELS)}, not {value!r}.")
        options[key] = level
    elif key == "collation":
        if not text.replace("_", "").isalnum() or not text.isascii():
            raise ImproperlyConfigured(f"DATABASE_URL option collation must be a collation name such as "
                                       f"Latin1_General_100_CI_AS_SC_UTF8, not {value!r}.")
        options[key] = text
    elif key == "python_driver":
        if text.lower() not in _MSSQL_PYTHON_DRIVERS:
            raise ImproperlyConfigured(f"DATABASE_URL option python_driver must be mssql_python (mssql-python's "
                                       f"bundled driver), not {value!r}.")
        options[key] = "mssql_python"
    else:  # driver, dsn, extra_params, driver_charset
        options[key] = text


def _odbc_value(value: str) -> str:
    """An ODBC attribute value; braced when it holds ';', braces or edge spaces (MS-ODBCSTR)."""
    if any(c in value for c in ";{}") or value != value.strip():
        return "{" + value.replace("}", "}}") + "}"
    return value


def _mssql_unknown(key: str) -> str:
    import difflib

    if key.lower() in _ODBC_FROM_URL:
        return (f"DATABASE_URL option {key} is not allowed: mssql-django sets it from {_ODBC_FROM_URL[key.lower()]} "
                f"of the URL.")
    known = {**{name: name for name in _MSSQL_OPTIONS}, **_ODBC_KEYWORDS}  # lower-case -> as written
    near = difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.75)
    hint = f" (did you mean {known[near[0]]}?)" if near else ""
    return (f"DATABASE_URL option {key!r} is neither an mssql-django option nor an ODBC Driver 18 keyword{hint}. "
            f"mssql-django options: {', '.join(_MSSQL_OPTIONS)}. ODBC keywords: "
            f"{', '.join(sorted(_ODBC_KEYWORDS.values(), key=str.lower))}. Any other ODBC keyword goes in "
            f"extra_params=Key%3Dvalue.")
