"""Turn a ``DATABASE_URL`` into one entry of Django's ``DATABASES``.

Owns only the URL grammar; it imports no database driver, so choosing SQLite, PostgreSQL or
MariaDB never needs the ODBC libraries.

    (unset)                                  -> SQLite file under var/
    sqlite:///relative/or//absolute/path     -> SQLite
    postgres://user:pass@host:port/db?sslmode=require
    mysql://user:pass@host:port/db           -> MariaDB / MySQL (PyMySQL)
    mssql://user:pass@host:port/db?Encrypt=yes&TrustServerCertificate=no
        known query keys: driver, extra_params, connection_retries,
        connection_retry_backoff_time, python_driver; any other key is appended to
        extra_params as Key=Value (Encrypt, TrustServerCertificate, Authentication, ...).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

MSSQL_DEFAULT_DRIVER = "ODBC Driver 18 for SQL Server"
_MSSQL_KNOWN = {"driver", "extra_params", "connection_retries", "connection_retry_backoff_time", "python_driver"}


def parse_database_url(url: str | None, *, base_dir: Path) -> dict:
    if not url:
        path = base_dir / "var" / "pipeline.sqlite3"
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path), "OPTIONS": _sqlite_options()}
    parts = urlsplit(url)
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
    common = {
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }
    if not common["NAME"]:
        raise ImproperlyConfigured(f"DATABASE_URL for {scheme} must name a database, as in {scheme}://user@host/dbname.")
    if scheme in ("postgres", "postgresql", "pgsql"):
        return {"ENGINE": "django.db.backends.postgresql", **common, "OPTIONS": query}
    if scheme in ("mysql", "mariadb"):
        options = {"charset": "utf8mb4", **query}
        return {"ENGINE": "django.db.backends.mysql", **common, "OPTIONS": options}
    if scheme in ("mssql", "sqlserver"):
        return {"ENGINE": "mssql", **common, "OPTIONS": _mssql_options(query)}
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {scheme!r} is not supported; use sqlite, postgres, mysql or mssql."
    )


def _sqlite_options() -> dict:
    # WAL lets readers (the admin, pipeline_status) work while a run writes; IMMEDIATE makes a
    # writer take the lock at BEGIN, so two writers queue instead of deadlocking mid-transaction.
    return {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }


def _mssql_options(query: dict[str, str]) -> dict:
    options: dict = {"driver": query.get("driver") or MSSQL_DEFAULT_DRIVER}
    extra = [query["extra_params"]] if query.get("extra_params") else []
    extra += [f"{key}={value}" for key, value in query.items() if key not in _MSSQL_KNOWN]
    if extra:
        options["extra_params"] = ";".join(part.strip(";") for part in extra)
    for key in ("connection_retries", "connection_retry_backoff_time"):
        if key in query:
            try:
                options[key] = int(query[key])
            except ValueError:
                raise ImproperlyConfigured(f"DATABASE_URL option {key} must be a whole number, not {query[key]!r}.")
    if query.get("python_driver"):
        options["python_driver"] = query["python_driver"]
    return options
