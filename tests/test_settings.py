"""Settings from the environment: DATABASE_URL forms, and production refusing a placeholder key."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from pipeline.dburl import parse_database_url

pytestmark = pytest.mark.nodb
BASE = Path("/srv/app")
ROOT = Path(__file__).resolve().parent.parent


def test_unset_is_sqlite_under_var():
    db = parse_database_url(None, base_dir=BASE)
    assert db["ENGINE"] == "django.db.backends.sqlite3" and db["NAME"] == "/srv/app/var/pipeline.sqlite3"


def test_postgres():
    db = parse_database_url("postgres://u:p%40ss@db.example:6432/app?sslmode=require", base_dir=BASE)
    assert db == {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "USER": "u", "PASSWORD": "p@ss",
                  "HOST": "db.example", "PORT": "6432", "OPTIONS": {"sslmode": "require"}}


def test_mysql():
    db = parse_database_url("mysql://root@127.0.0.1:3306/test", base_dir=BASE)
    assert db["ENGINE"] == "django.db.backends.mysql" and db["OPTIONS"]["charset"] == "utf8mb4"


def test_mssql_defaults_and_pass_through():
    db = parse_database_url(
        "mssql://sa:S3cret%21@sql.example:1433/pipeline?Encrypt=yes&TrustServerCertificate=no"
        "&connection_retries=3&connection_retry_backoff_time=2&python_driver=mssql_python", base_dir=BASE)
    assert db["ENGINE"] == "mssql" and db["PASSWORD"] == "S3cret!"
    assert db["OPTIONS"] == {"driver": "ODBC Driver 18 for SQL Server", "extra_params": "Encrypt=yes;TrustServerCertificate=no",
                             "connection_retries": 3, "connection_retry_backoff_time": 2, "python_driver": "mssql_python"}


def test_mssql_entra_id_and_explicit_extra_params():
    db = parse_database_url("mssql://client-id:secret@srv.database.windows.net/db?driver=ODBC+Driver+17+for+SQL+Server"
                            "&extra_params=Encrypt%3Dyes&Authentication=ActiveDirectoryServicePrincipal", base_dir=BASE)
    assert db["OPTIONS"]["driver"] == "ODBC Driver 17 for SQL Server"
    assert db["OPTIONS"]["extra_params"] == "Encrypt=yes;Authentication=ActiveDirectoryServicePrincipal"


@pytest.mark.parametrize("url, message", [
    ("oracle://x/y", "not supported"),
    ("postgres://host:5432/", "must name a database"),
    ("mssql://h/db?connection_retries=many", "whole number"),
])
def test_bad_urls_are_explained(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_database_url(url, base_dir=BASE)


def _settings_in_subprocess(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT,
                          env={**clean, "DJANGO_SETTINGS_MODULE": "pipeline.settings", **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("env", [{}, {"DJANGO_SECRET_KEY": "django-insecure-abc"}, {"DJANGO_SECRET_KEY": "short"}])
def test_production_refuses_to_start_without_a_real_secret_key(env):
    result = _settings_in_subprocess({"DJANGO_DEBUG": "0", **env})
    assert result.returncode != 0 and "DJANGO_SECRET_KEY" in result.stderr


def test_production_starts_with_a_real_key_and_sqlite_needs_no_odbc():
    result = _settings_in_subprocess({"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "k" * 20 + "0123456789abcdefghijklmnopqrstuvwxyz"})
    assert result.returncode == 0, result.stderr
    check = subprocess.run([sys.executable, "-c", "import django,sys; django.setup(); assert 'pyodbc' not in sys.modules"],
                           cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1"},
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_settings_write_nothing_at_import_and_sqlite_makes_its_folder_when_it_connects(tmp_path):
    # A read-only install (Azure Functions' package, a read_only container) imports the settings;
    # scripts/smoke runs the processes themselves from a read-only tree.
    script = ("import django, os, sys; django.setup(); print(sorted(os.listdir(sys.argv[1])));"
              "from django.db import connection; connection.ensure_connection(); print(sorted(os.listdir(sys.argv[1])))")
    env = {"DJANGO_DEBUG": "1", "DATABASE_URL": f"sqlite:///{tmp_path}/db/pipeline.sqlite3",
           "STATIC_ROOT": str(tmp_path / "static"), "CELERY_BEAT_SCHEDULE_FILENAME": str(tmp_path / "beat" / "schedule")}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "DJANGO_SETTINGS_MODULE": "pipeline.settings", **env})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]", "['db']"]
    assert (tmp_path / "db" / "pipeline.sqlite3").is_file()
