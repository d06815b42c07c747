"""Django settings. The environment is read here and only here; every variable is in the README.

No domain code lives in this package. Values are parsed with small helpers that fail with a
sentence naming the variable, so a typo in a cron line or an app setting is caught at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from pipeline.dburl import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
env = os.environ


def _bool(name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def _number(name: str, default: float, *, kind=float, minimum: float | None = 0):
    raw = env.get(name)
    if raw is None or raw == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}.")
    return value


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


# --- Core ---------------------------------------------------------------------------------------
DEBUG = _bool("DJANGO_DEBUG", False)
_INSECURE_KEY = "django-insecure-local-development-key-do-not-use-in-production"
SECRET_KEY = env.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Production mode (DJANGO_DEBUG off) needs a real secret key; "
            "set DJANGO_SECRET_KEY to 50+ random characters, or DJANGO_DEBUG=1 on a laptop."
        )
    SECRET_KEY = _INSECURE_KEY
elif not DEBUG and (SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY looks like a placeholder; production mode needs 50+ random characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ingest",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "pipeline.urls"
WSGI_APPLICATION = "pipeline.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Database -----------------------------------------------------------------------------------
_db = parse_database_url(env.get("DATABASE_URL"), base_dir=BASE_DIR)
_db["CONN_MAX_AGE"] = _number("CONN_MAX_AGE", 0, kind=int)
_db["CONN_HEALTH_CHECKS"] = _bool("CONN_HEALTH_CHECKS", False)
if _db["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL is pure Python (no C client library to build). It presents itself as MySQLdb;
    # Django checks MySQLdb's version, so report the mysqlclient API level PyMySQL implements.
    import pymysql

    pymysql.version_info = (2, 2, 1, "final", 0)
    pymysql.install_as_MySQLdb()
elif _db["ENGINE"] == "django.db.backends.sqlite3" and _db["NAME"] != ":memory:":
    Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- I18N / static ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Ingest -------------------------------------------------------------------------------------
INGEST_USER_AGENT = env.get(
    "INGEST_USER_AGENT", "feed-pipeline/1.0 (+https://example.invalid/feed-pipeline; scheduled feed ingest)"
)
INGEST_ALLOWED_NETWORKS = _list("INGEST_ALLOWED_NETWORKS")
INGEST_CONNECT_TIMEOUT = _number("INGEST_CONNECT_TIMEOUT", 5.0)
INGEST_READ_TIMEOUT = _number("INGEST_READ_TIMEOUT", 15.0)
INGEST_DEADLINE = _number("INGEST_DEADLINE", 60.0)
INGEST_MAX_BYTES = _number("INGEST_MAX_BYTES", 10 * 1024 * 1024, kind=int, minimum=1)
INGEST_MAX_REDIRECTS = _number("INGEST_MAX_REDIRECTS", 5, kind=int)
INGEST_DEFAULT_INTERVAL = _number("INGEST_DEFAULT_INTERVAL", 1800, kind=int, minimum=1)
INGEST_BACKOFF_BASE = _number("INGEST_BACKOFF_BASE", 300, kind=int, minimum=1)
INGEST_MAX_BACKOFF = _number("INGEST_MAX_BACKOFF", 86400, kind=int, minimum=1)
INGEST_LEASE_SECONDS = _number("INGEST_LEASE_SECONDS", 900, kind=int, minimum=1)
INGEST_WORKERS = _number("INGEST_WORKERS", 4, kind=int, minimum=1)
INGEST_COMMENTS_DAYS = _number("INGEST_COMMENTS_DAYS", 14, kind=int)

DB_RETRY_ATTEMPTS = _number("DB_RETRY_ATTEMPTS", 5, kind=int, minimum=1)
DB_RETRY_BASE_DELAY = _number("DB_RETRY_BASE_DELAY", 0.05)
DB_RETRY_MAX_DELAY = _number("DB_RETRY_MAX_DELAY", 2.0)

# --- Logging ------------------------------------------------------------------------------------
LOG_LEVEL = env.get("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env.get("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "pipeline.logformat.TextFormatter"},
        "json": {"()": "pipeline.logformat.JsonFormatter"},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "loggers": {
        "ingest": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "pipeline": {"handlers": ["stderr"], "level": LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
