"""Django settings. The environment is read here and only here; every variable is in docs/configuration.md.

No domain code lives in this package. Values are parsed with small helpers that fail with a
sentence naming the variable, so a typo in a cron line or an app setting is caught at start-up.
"""

from __future__ import annotations

import json
import math
import os
import re
import zoneinfo
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from pipeline.dburl import parse_database_url
from pipeline.networks import IPNetwork, NetworkListError, parse_networks

BASE_DIR = Path(__file__).resolve().parent.parent
env = os.environ


def _bool(name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


# Durations feed datetime arithmetic (next fetch, lease expiry, staleness); past some centuries
# it overflows mid-run, so a typo with extra zeros is refused here instead.
_MAX_SECONDS = 10 * 365 * 86400


def _number(name: str, default: float, *, kind=float, minimum: float = 0, positive: bool = False,
            maximum: float | None = None):
    """The variable as ``kind`` (int: a whole number), at least ``minimum`` (above 0 with
    ``positive``) and at most ``maximum``; nan and infinities are never a setting."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return kind(default)
    try:
        value = kind(raw)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}.") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {raw!r}.")
    if positive and value <= 0:
        raise ImproperlyConfigured(f"{name} must be greater than 0, not {raw!r}.")
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {raw!r}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {raw!r}.")
    return value


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env.get(name, default).split(",") if item.strip()]


def _networks(name: str) -> tuple[IPNetwork, ...]:
    try:
        return parse_networks(_list(name), name=name)
    except NetworkListError as exc:
        raise ImproperlyConfigured(str(exc)) from None


# --- Core ---------------------------------------------------------------------------------------
DEBUG = _bool("DJANGO_DEBUG", False)
_INSECURE_KEY = "django-insecure-local-development-key-do-not-use-in-production"
SECRET_KEY = env.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set, and production mode (DJANGO_DEBUG off) needs 50+ random characters "
            "there (python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DJANGO_DEBUG=1 on a laptop."
        )
    SECRET_KEY = _INSECURE_KEY
elif not DEBUG and (SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY looks like a placeholder; production mode needs 50+ random characters "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS")

# --- Web: HTTPS behind a TLS proxy (docs/compose.md, "Behind a TLS proxy") ----------------------
# DJANGO_HTTPS: every request reaches the web process through a proxy that terminates TLS and sets
# X-Forwarded-Proto, overwriting whatever the client sent; a request is https when that header says
# so. Plain HTTP is redirected to https, except /healthz (pipeline/urls.py), which the container's
# health check and load balancers probe over plain HTTP. The HSTS variables are checked even when off.
_HTTPS = _bool("DJANGO_HTTPS", False)
# A browser that saw the header refuses plain HTTP to this host for that long (a year by default).
_HSTS_SECONDS = _number("DJANGO_HSTS_SECONDS", 365 * 86400, kind=int, maximum=_MAX_SECONDS)
# Both reach beyond this web process (every subdomain; the browsers' built-in list): only when asked for.
_HSTS_SUBDOMAINS = _bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
_HSTS_PRELOAD = _bool("DJANGO_HSTS_PRELOAD", False)
if _HSTS_PRELOAD and not (_HSTS_SUBDOMAINS and _HSTS_SECONDS >= 365 * 86400):
    raise ImproperlyConfigured("DJANGO_HSTS_PRELOAD needs DJANGO_HSTS_INCLUDE_SUBDOMAINS on and DJANGO_HSTS_SECONDS of "
                               "at least 31536000 (a year): the preload list (hstspreload.org) refuses less.")
if _HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = _HSTS_SECONDS
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _HSTS_SUBDOMAINS
    SECURE_HSTS_PRELOAD = _HSTS_PRELOAD
    # check --deploy warns while these two are off (security.W005, W021); here they are a choice.
    SILENCED_SYSTEM_CHECKS = [name for name, on in (("security.W005", _HSTS_SUBDOMAINS),
                                                    ("security.W021", _HSTS_PRELOAD)) if not on]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",  # the optional database scheduler (PIPELINE_BEAT_SCHEDULER=database); its own migrations
    # The REST API at /api/ (ingest/api/, docs/api.md): DRF, its token table, django-filter's query
    # parameters, the OpenAPI schema, and Swagger UI's files served from here (no CDN).
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ingest",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from the web process itself (no separate static server).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # ETag on every GET response without one, and 304 to a matching If-None-Match (the API's
    # conditional requests, docs/api.md): Django's own, after the view has rendered the body.
    "django.middleware.http.ConditionalGetMiddleware",
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

# --- REST API (ingest/api/, docs/api.md) -------------------------------------------------------
# Reads need a logged-in user or a token unless the site is public; writes always need staff.
API_ANONYMOUS_READ = _bool("DJANGO_API_ANONYMOUS_READ", False)
API_MAX_PAGE_SIZE = _number("API_MAX_PAGE_SIZE", 500, kind=int, positive=True, maximum=10_000)
API_PAGE_SIZE = _number("API_PAGE_SIZE", 50, kind=int, positive=True, maximum=API_MAX_PAGE_SIZE)
REST_FRAMEWORK = {
    # A token first, so that a request with neither gets 401 with WWW-Authenticate: Token.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["ingest.api.permissions.ReadAuthenticatedWriteStaff"],
    "DEFAULT_PAGINATION_CLASS": "ingest.api.pagination.Cursor",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "ingest.api.filters.Search",
        "ingest.api.filters.Ordering",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ingest.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Feed pipeline API",
    "DESCRIPTION": "The articles (feed sources), authors and entries the pipeline ingests. docs/api.md has the guide.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI describe the endpoints, not the data: anyone may read them, and
    # Swagger UI's "Authorize" takes a token for the calls it makes.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "ingest.api.schema.errors_describe",
    ],
}

# --- Database -----------------------------------------------------------------------------------
# Seconds a new database connection may take, handshake and login included (pipeline/dburl.py
# hands it to each driver): a server that accepts TCP and never answers would otherwise hold a
# command for 130 s per attempt (psycopg's default) or forever (PyMySQL reads its greeting unbounded).
DB_CONNECT_TIMEOUT = _number("DB_CONNECT_TIMEOUT", 10, kind=int, positive=True, maximum=3600)
_db = parse_database_url(env.get("DATABASE_URL"), base_dir=BASE_DIR, connect_timeout=DB_CONNECT_TIMEOUT)
_db["CONN_MAX_AGE"] = _number("CONN_MAX_AGE", 0, kind=int, maximum=_MAX_SECONDS)
_db["CONN_HEALTH_CHECKS"] = _bool("CONN_HEALTH_CHECKS", False)
if _db["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL is pure Python (no C client library to build). It presents itself as MySQLdb;
    # Django checks MySQLdb's version, so report the mysqlclient API level PyMySQL implements.
    import pymysql

    pymysql.version_info = (2, 2, 1, "final", 0)
    pymysql.install_as_MySQLdb()
    if "read_timeout" not in _db["OPTIONS"]:
        # PyMySQL reads the server's greeting and the login with read_timeout (connect_timeout only
        # covers TCP): bounded while connecting, unbounded from then on (pipeline/dburl.py).
        from django.db.backends.signals import connection_created

        from pipeline.dburl import mysql_reads_unbounded

        _db["OPTIONS"]["read_timeout"] = _db["OPTIONS"]["connect_timeout"]
        connection_created.connect(mysql_reads_unbounded, dispatch_uid="pipeline-mysql-reads-unbounded")
elif _db["ENGINE"] == "django.db.backends.sqlite3" and _db["NAME"] != ":memory:":
    # Nothing is written at import (read-only installs import these settings): the database
    # file's folder (var/ by default) is made when a connection first opens it. pipeline/sqlite.py.
    from pipeline.sqlite import ParentCreatingConnection

    _db["OPTIONS"] = {**_db.get("OPTIONS", {}), "factory": ParentCreatingConnection}
DATABASES = {"default": _db}
if _db["ENGINE"] == "mssql" and (env.get("TIME_ZONE", "").strip() or "UTC") != "UTC":
    # mssql-django issue 371: with USE_TZ and another TIME_ZONE, datetimes are written with the
    # wrong offset and filters on them match nothing.
    raise ImproperlyConfigured(f"TIME_ZONE must be UTC on SQL Server (mssql-django issue 371), not "
                               f"{env['TIME_ZONE'].strip()!r}: leave TIME_ZONE unset or set it to UTC.")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- I18N / static ------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.get("TIME_ZONE", "").strip() or "UTC"
try:
    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    raise ImproperlyConfigured(f"TIME_ZONE must be an IANA time zone such as UTC or Europe/Berlin, not {TIME_ZONE!r}.") from None
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = Path(env.get("STATIC_ROOT", BASE_DIR / "var" / "static"))
# WhiteNoise serves the admin's files from STATIC_ROOT (filled by collectstatic); in DEBUG it also
# finds them in the apps, so a laptop needs no collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
# Not created here (nothing is written at import): collectstatic creates it. Without DEBUG,
# WhiteNoise warns "No directory at" when collectstatic has not run.

# --- Ingest -------------------------------------------------------------------------------------
INGEST_USER_AGENT = env.get(
    "INGEST_USER_AGENT", "feed-pipeline/1.0 (+https://example.invalid/feed-pipeline; scheduled feed ingest)"
)
# Parsed here, so that a typo stops start-up instead of the first fetch (ingest/fetch/config.py reads these).
INGEST_ALLOWED_NETWORKS = _networks("INGEST_ALLOWED_NETWORKS")
INGEST_CONNECT_TIMEOUT = _number("INGEST_CONNECT_TIMEOUT", 5.0, positive=True, maximum=_MAX_SECONDS)
INGEST_READ_TIMEOUT = _number("INGEST_READ_TIMEOUT", 15.0, positive=True, maximum=_MAX_SECONDS)
INGEST_DEADLINE = _number("INGEST_DEADLINE", 60.0, positive=True, maximum=_MAX_SECONDS)
INGEST_MAX_BYTES = _number("INGEST_MAX_BYTES", 10 * 1024 * 1024, kind=int, positive=True)
# 0: a redirect is a failure of the source.
INGEST_MAX_REDIRECTS = _number("INGEST_MAX_REDIRECTS", 5, kind=int, maximum=100)
INGEST_DEFAULT_INTERVAL = _number("INGEST_DEFAULT_INTERVAL", 1800, kind=int, positive=True, maximum=_MAX_SECONDS)
INGEST_BACKOFF_BASE = _number("INGEST_BACKOFF_BASE", 300, kind=int, positive=True, maximum=_MAX_SECONDS)
INGEST_MAX_BACKOFF = _number("INGEST_MAX_BACKOFF", 86400, kind=int, positive=True, maximum=_MAX_SECONDS)
INGEST_LEASE_SECONDS = _number("INGEST_LEASE_SECONDS", 900, kind=int, positive=True, maximum=_MAX_SECONDS)
# The same bound as ingest_feeds --workers.
INGEST_WORKERS = _number("INGEST_WORKERS", 4, kind=int, positive=True, maximum=64)
# Processes that parse feeds during a run, at most (unset: one per CPU beyond two; 0: parse in the fetch threads).
INGEST_PARSE_PROCESSES = (_number("INGEST_PARSE_PROCESSES", 0, kind=int, maximum=256)
                          if env.get("INGEST_PARSE_PROCESSES", "").strip() else None)
INGEST_PARSE_TIMEOUT = _number("INGEST_PARSE_TIMEOUT", 60.0, positive=True, maximum=_MAX_SECONDS)  # s per feed
# Which parser reads RSS/Atom: "auto" (lxml for the documents ingest.parse.fast is sure of, to
# feedparser's result; feedparser for the rest) or "feedparser" (the reference alone).
INGEST_PARSER = env.get("INGEST_PARSER", "").strip().lower() or "auto"
if INGEST_PARSER not in ("auto", "feedparser"):
    raise ImproperlyConfigured(f"INGEST_PARSER must be auto or feedparser, not {INGEST_PARSER!r}.")
INGEST_COMMENTS_DAYS = _number("INGEST_COMMENTS_DAYS", 14, kind=int, maximum=36500)
# PostgreSQL: per-source transactions commit without waiting for the WAL flush (see ingest/db.py).
INGEST_ASYNC_COMMIT = _bool("INGEST_ASYNC_COMMIT", True)
# RFC 5005 history pages (rel="next", rel="prev-archive") followed on a source's first fetch; 0: off.
INGEST_BACKFILL_PAGES = _number("INGEST_BACKFILL_PAGES", 0, kind=int, maximum=1000)
# Entries of different sources with one link key are marked duplicates of the earliest one
# (Entry.duplicate_of, ingest/services/duplicates.py); off: nothing new is marked.
INGEST_CROSS_FEED_DEDUP = _bool("INGEST_CROSS_FEED_DEDUP", True)

# --- Ingest: the schedule's bounds and spread (ingest/schedule.py, docs/scheduling-policy.md) -----
# Cadence, default interval and the server's freshness hints are held within these (an explicit
# per-source fetch_interval is not); the jitter stretches each next fetch by up to this fraction.
INGEST_MIN_INTERVAL = _number("INGEST_MIN_INTERVAL", 300, kind=int, positive=True, maximum=_MAX_SECONDS)
INGEST_MAX_INTERVAL = _number("INGEST_MAX_INTERVAL", 86400, kind=int, positive=True, maximum=_MAX_SECONDS)
if INGEST_MIN_INTERVAL > INGEST_MAX_INTERVAL:
    raise ImproperlyConfigured(f"INGEST_MIN_INTERVAL ({INGEST_MIN_INTERVAL}) must not be above INGEST_MAX_INTERVAL "
                               f"({INGEST_MAX_INTERVAL}).")
INGEST_JITTER = _number("INGEST_JITTER", 0.1, maximum=1)
# --- Per-host budget (docs/scheduling-policy.md, "Per-host budget") ----------------------------
# Shared by every run and worker through the database (ingest/services/hosts.py): at most this many
# requests in flight to one host, and at least this many seconds between two request starts to it.
INGEST_HOST_CONCURRENCY = _number("INGEST_HOST_CONCURRENCY", 2, kind=int, positive=True, maximum=64)
INGEST_HOST_SPACING = _number("INGEST_HOST_SPACING", 1.0, maximum=3600)
# What a 429/503 with Retry-After backs off: the source alone, or every source of its host.
INGEST_RETRY_AFTER_SCOPE = env.get("INGEST_RETRY_AFTER_SCOPE", "").strip().lower() or "source"
if INGEST_RETRY_AFTER_SCOPE not in ("source", "host"):
    raise ImproperlyConfigured(f"INGEST_RETRY_AFTER_SCOPE must be source or host, not {INGEST_RETRY_AFTER_SCOPE!r}.")
# --- Bot walls and WebSub (docs/scheduling-policy.md) ------------------------------------------
# A challenge page of a publisher's bot protection waits at least this long (seconds) before the next try.
INGEST_BOT_WALL_BACKOFF = _number("INGEST_BOT_WALL_BACKOFF", 6 * 3600, kind=int, positive=True, maximum=_MAX_SECONDS)
# A source with a live WebSub subscription is polled every INGEST_MAX_INTERVAL, as a safety net.
# The public base URL of this site (e.g. https://feeds.example.org); set, sources whose feed names a
# WebSub hub are subscribed with the callback <this URL>/websub/<id>. Empty: no subscriptions.
INGEST_WEBSUB_CALLBACK_URL = env.get("INGEST_WEBSUB_CALLBACK_URL", "").strip().rstrip("/")
if INGEST_WEBSUB_CALLBACK_URL and not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", INGEST_WEBSUB_CALLBACK_URL):
    raise ImproperlyConfigured(f"INGEST_WEBSUB_CALLBACK_URL must be an http(s) URL with a host and no query, not "
                               f"{INGEST_WEBSUB_CALLBACK_URL!r}.")
# The lease asked of the hub (seconds); the hub decides, and the lease is renewed before it ends.
INGEST_WEBSUB_LEASE_SECONDS = _number("INGEST_WEBSUB_LEASE_SECONDS", 10 * 86400, kind=int, minimum=60,
                                      maximum=_MAX_SECONDS)
# --- Feed health (ingest/health.py, docs/health.md) ---------------------------------------------
# Failures in a row from which a source is "failing" rather than "degraded".
INGEST_HEALTH_FAILING_AFTER = _number("INGEST_HEALTH_FAILING_AFTER", 3, kind=int, positive=True, maximum=1000)
# A healthy source not fetched successfully within this many times the interval its schedule chose
# is "degraded" (stale); at least 1.
INGEST_HEALTH_STALE_FACTOR = _number("INGEST_HEALTH_STALE_FACTOR", 3.0, minimum=1, maximum=1000)


# --- Feed credentials (docs/configuration.md, "Authenticated feeds") ----------------------------
# A source's auth_secret and extra headers name secrets, never hold them: env:NAME is looked up in
# INGEST_SECRET_ENVIRON (the process environment, read at request time so that a changed secret
# needs no restart), setting:KEY in INGEST_FEED_SECRETS, a JSON object of strings. A malformed
# value stops start-up with a sentence that quotes no part of it.
INGEST_SECRET_ENVIRON = env


def _secrets(name: str) -> dict[str, str]:
    raw = env.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_.\-]{1,128}", k) and isinstance(v, str)
            for k, v in value.items()):
        raise ImproperlyConfigured(f"{name} must be a JSON object of strings whose keys are letters, digits, "
                                   f"'_', '.' or '-'.")
    return value


INGEST_FEED_SECRETS = _secrets("INGEST_FEED_SECRETS")

DB_RETRY_ATTEMPTS = _number("DB_RETRY_ATTEMPTS", 5, kind=int, positive=True, maximum=100)
# 0: retry at once.
DB_RETRY_BASE_DELAY = _number("DB_RETRY_BASE_DELAY", 0.05, maximum=3600)
DB_RETRY_MAX_DELAY = _number("DB_RETRY_MAX_DELAY", 2.0, maximum=3600)

# --- Logging ------------------------------------------------------------------------------------
# One configuration for every process: commands, web (Django, and gunicorn through
# pipeline/gunicorn_conf.py), Celery worker and beat (pipeline/celery.py applies it on Celery's
# setup_logging signal) and the Azure Functions host (functions_app/runner.py). Every record goes
# through the root logger's one handler, so Celery's and other libraries' lines share the format.
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level(name: str, default: str) -> str:
    value = env.get(name, "").strip().upper() or default
    if value not in _LEVELS:
        raise ImproperlyConfigured(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {value!r}.")
    return value


LOG_LEVEL = _level("LOG_LEVEL", "INFO")
# httpx and httpcore (the feed fetcher's HTTP client) log a line per request at INFO and the
# connection's every step at DEBUG: quiet unless asked for.
LOG_HTTP_LEVEL = _level("LOG_HTTP_LEVEL", "WARNING")
LOG_FORMAT = env.get("LOG_FORMAT", "").strip().lower() or "text"
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
LOGGING_CONFIG = "pipeline.logformat.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "pipeline.logformat.TextFormatter"},
        "json": {"()": "pipeline.logformat.JsonFormatter"},
    },
    # task_id and task_name on the records logged while a Celery task runs.
    "filters": {"celery_task": {"()": "pipeline.logformat.CeleryTaskFilter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["celery_task"]}},
    "root": {"handlers": ["stderr"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own through the root's handler (its defaults add handlers of their own): its
        # warnings and errors, and runserver's request lines at LOG_LEVEL.
        "django": {"handlers": [], "level": "WARNING", "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "httpx": {"level": LOG_HTTP_LEVEL},
        "httpcore": {"level": LOG_HTTP_LEVEL},
    },
}

# --- Celery: workers, beat, Flower (pipeline/celery.py reads every CELERY_* name below) ------------
# The rule behind each choice: a message is never lost and a source is never processed twice.
CELERY_BROKER_URL = env.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
# Results are small summaries (IngestRun is the record); Flower and `celery result` show them.
CELERY_RESULT_BACKEND = env.get("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_RESULT_EXPIRES = _number("CELERY_RESULT_EXPIRES", 86400, kind=int, minimum=60, maximum=_MAX_SECONDS)
CELERY_TIMEZONE = TIME_ZONE
# JSON only: a pickled message from a compromised broker would run code on every worker.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
# Acknowledge after the task ran: a worker that dies mid-task leaves its message to be delivered
# again. Safe because the tasks are idempotent (source lease, natural keys, content hashes).
CELERY_TASK_ACKS_LATE = True
# A worker process killed mid-task (OOM killer, SIGKILL) requeues its message instead of acking it.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One reserved message per worker process: a slow feed holds up no other, and a crash re-queues one.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The soft limit raises SoftTimeLimitExceeded inside the task; the hard limit kills the process.
CELERY_TASK_SOFT_TIME_LIMIT = _number("CELERY_TASK_SOFT_TIME_LIMIT", 300, kind=int, positive=True, maximum=_MAX_SECONDS)
CELERY_TASK_TIME_LIMIT = _number("CELERY_TASK_TIME_LIMIT", 360, kind=int, positive=True, maximum=_MAX_SECONDS)
# Redis redelivers an unacknowledged message after this many seconds; it must exceed the hard
# time limit, or a long task still running is delivered to a second worker.
CELERY_VISIBILITY_TIMEOUT = _number("CELERY_VISIBILITY_TIMEOUT", 3600, kind=int, positive=True, maximum=_MAX_SECONDS)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT}) must be below CELERY_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT}), or the task never gets the chance to stop cleanly."
    )
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({CELERY_VISIBILITY_TIMEOUT}) must be above CELERY_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT}), or Redis hands a task that is still running to a second worker."
    )
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    # Sweep for messages of dead workers about ten times per visibility timeout (at most every 10 s).
    "unacked_restore_interval": max(1, min(10, CELERY_VISIBILITY_TIMEOUT // 10)),
    "unacked_restore_throttle": 1,
}
if env.get("CELERY_BROKER_KEY_PREFIX"):
    # Prefix of every broker key and channel: deployments (or test runs) can share one Redis database.
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env["CELERY_BROKER_KEY_PREFIX"]
# Autoretry of transient errors: backoff capped below the visibility timeout (a longer countdown
# would be delivered twice), and a bound on attempts.
PIPELINE_TASK_MAX_RETRIES = _number("PIPELINE_TASK_MAX_RETRIES", 5, kind=int, maximum=100)
PIPELINE_TASK_RETRY_BACKOFF_MAX = max(1, min(300, CELERY_VISIBILITY_TIMEOUT // 2))
# Off: on a lost Redis connection, cancelling terminates the running tasks and then, once the
# broker is back, acknowledges their messages (the requeue needs the broker that is down), so the
# sources wait for their lease to expire. A task that keeps running finishes its work; its message
# stays unacknowledged and is redelivered after the visibility timeout, where the lease makes it a no-op.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Task events, so that Flower and `celery events` show tasks, queued ones included.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# A running task reports STARTED instead of PENDING.
CELERY_TASK_TRACK_STARTED = True

# Webhooks (ingest.services.webhooks, docs/webhooks.md): events per signed POST, attempts of a batch
# before it is dead, the backoff between them (base * 2^n with equal jitter, capped), when an
# endpoint that keeps failing is disabled (dead batches in a row, or failing this many seconds),
# how long a worker holds an endpoint while it sends, and how often beat catches up.
WEBHOOK_BATCH_SIZE = _number("WEBHOOK_BATCH_SIZE", 100, kind=int, positive=True, maximum=1000)
WEBHOOK_MAX_ATTEMPTS = _number("WEBHOOK_MAX_ATTEMPTS", 8, kind=int, positive=True, maximum=100)
WEBHOOK_BACKOFF_BASE = _number("WEBHOOK_BACKOFF_BASE", 10.0, positive=True, maximum=_MAX_SECONDS)
WEBHOOK_BACKOFF_MAX = _number("WEBHOOK_BACKOFF_MAX", 3600.0, positive=True, maximum=_MAX_SECONDS)
WEBHOOK_DISABLE_DEAD_BATCHES = _number("WEBHOOK_DISABLE_DEAD_BATCHES", 3, kind=int, positive=True, maximum=1000)
WEBHOOK_DISABLE_AFTER = _number("WEBHOOK_DISABLE_AFTER", 3 * 86400, kind=int, positive=True, maximum=_MAX_SECONDS)
WEBHOOK_LEASE_SECONDS = _number("WEBHOOK_LEASE_SECONDS", 300, kind=int, positive=True, maximum=_MAX_SECONDS)
WEBHOOK_SCHEDULE_SECONDS = _number("WEBHOOK_SCHEDULE_SECONDS", 30, kind=int, positive=True, maximum=_MAX_SECONDS)
if WEBHOOK_BACKOFF_MAX < WEBHOOK_BACKOFF_BASE:
    raise ImproperlyConfigured(f"WEBHOOK_BACKOFF_MAX ({WEBHOOK_BACKOFF_MAX:g}) must be at least "
                               f"WEBHOOK_BACKOFF_BASE ({WEBHOOK_BACKOFF_BASE:g}).")

# Beat. Exactly one beat process may run: two would enqueue every entry twice (the source lease
# still keeps a source from being processed twice, but the work and the IngestRun rows double).
INGEST_SCHEDULE_SECONDS = _number("INGEST_SCHEDULE_SECONDS", 300, kind=int, positive=True, maximum=_MAX_SECONDS)
RECOUNT_SCHEDULE_SECONDS = _number("RECOUNT_SCHEDULE_SECONDS", 3600, kind=int, positive=True, maximum=_MAX_SECONDS)
# prune_runs (by hand, cron, beat, the Azure timer) deletes finished runs older than this.
INGEST_RUNS_KEEP_DAYS = _number("INGEST_RUNS_KEEP_DAYS", 30, kind=int, positive=True, maximum=36500)
PRUNE_SCHEDULE_SECONDS = _number("PRUNE_SCHEDULE_SECONDS", 86400, kind=int, positive=True, maximum=_MAX_SECONDS)
# prune_entries (by hand, cron, beat, the Azure timer): entries published more than this many days
# ago, and past the newest this many of a source, are deleted (0: keep forever, no cap); a
# source's retention_days / retention_max_entries override them.
INGEST_RETENTION_DAYS = _number("INGEST_RETENTION_DAYS", 0, kind=int, maximum=36500)
INGEST_RETENTION_MAX_ENTRIES = _number("INGEST_RETENTION_MAX_ENTRIES", 0, kind=int, maximum=1_000_000_000)
PRUNE_ENTRIES_SCHEDULE_SECONDS = _number("PRUNE_ENTRIES_SCHEDULE_SECONDS", 86400, kind=int, positive=True,
                                         maximum=_MAX_SECONDS)
CELERY_BEAT_SCHEDULE = {
    # Claims the due sources and fans out one ingest_source task per source.
    "ingest-feeds": {
        "task": "ingest.tasks.ingest_feeds",
        "schedule": float(INGEST_SCHEDULE_SECONDS),
        # A run still queued when the next one is due is dropped: no pile-up after a worker outage.
        "options": {"expires": INGEST_SCHEDULE_SECONDS},
    },
    "recompute-counts": {
        "task": "ingest.tasks.recompute_counts",
        "schedule": float(RECOUNT_SCHEDULE_SECONDS),
        "options": {"expires": RECOUNT_SCHEDULE_SECONDS},
    },
    # Deletes the finished IngestRun rows older than INGEST_RUNS_KEEP_DAYS.
    "prune-runs": {
        "task": "ingest.tasks.prune_runs",
        "schedule": float(PRUNE_SCHEDULE_SECONDS),
        "options": {"expires": PRUNE_SCHEDULE_SECONDS},
    },
    # Deletes the entries past INGEST_RETENTION_DAYS / INGEST_RETENTION_MAX_ENTRIES (or a source's own).
    "prune-entries": {
        "task": "ingest.tasks.prune_entries",
        "schedule": float(PRUNE_ENTRIES_SCHEDULE_SECONDS),
        "options": {"expires": PRUNE_ENTRIES_SCHEDULE_SECONDS},
    },
}
# Fans new events out to the webhook endpoints and sends the due batches (ingest.events.deliver);
# a write that records events also queues it, so this catches up what a crash between commit and
# queueing left behind.
CELERY_BEAT_SCHEDULE["webhooks-deliver"] = {
    "task": "ingest.events.deliver",
    "schedule": float(WEBHOOK_SCHEDULE_SECONDS),
    "options": {"expires": WEBHOOK_SCHEDULE_SECONDS},
}
if INGEST_WEBSUB_CALLBACK_URL:
    # WebSub subscriptions to send, renew before their lease ends, or cancel (ingest.services.websub);
    # the Celery path's ingest_feeds only fans out, so the pass needs its own entry.
    CELERY_BEAT_SCHEDULE["websub-maintain"] = {
        "task": "ingest.tasks.websub_maintain",
        "schedule": float(INGEST_SCHEDULE_SECONDS),
        "options": {"expires": INGEST_SCHEDULE_SECONDS},
    }
# "settings" (default): the schedule above, in version control and the same on every machine.
# "database": django-celery-beat's scheduler; the entries above seed its table once, then the
# admin (Periodic tasks) is where operators edit, add or disable schedules.
PIPELINE_BEAT_SCHEDULER = env.get("PIPELINE_BEAT_SCHEDULER", "settings").strip().lower()
if PIPELINE_BEAT_SCHEDULER == "settings":
    # Celery's file scheduler, which creates the file's folder when beat starts (pipeline/beat.py).
    CELERY_BEAT_SCHEDULER = "pipeline.beat:PersistentScheduler"
    CELERY_BEAT_SCHEDULE_FILENAME = env.get("CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / "var" / "celerybeat-schedule"))
elif PIPELINE_BEAT_SCHEDULER == "database":
    CELERY_BEAT_SCHEDULER = "pipeline.beat:SeedingDatabaseScheduler"
else:
    raise ImproperlyConfigured(f"PIPELINE_BEAT_SCHEDULER must be settings or database, not {PIPELINE_BEAT_SCHEDULER!r}.")

# Monitoring (pipeline_status, /healthz): unhealthy when no ingest run completed within this many
# seconds; with PIPELINE_CELERY on (the default when CELERY_BROKER_URL is set), also when no worker answers.
PIPELINE_HEALTH_MAX_AGE = _number("PIPELINE_HEALTH_MAX_AGE", min(_MAX_SECONDS, max(3600, 3 * INGEST_SCHEDULE_SECONDS)),
                                  kind=int, positive=True, maximum=_MAX_SECONDS)
PIPELINE_CELERY = _bool("PIPELINE_CELERY", bool(env.get("CELERY_BROKER_URL")))

# Prometheus metrics at /metrics (ingest/views.py, docs/metrics.md): served to a request that carries
# "Authorization: Bearer <METRICS_TOKEN>" or comes from METRICS_ALLOWED_NETWORKS (loopback unless set;
# set to an empty value, the token alone opens it). Empty token: networks only.
METRICS_TOKEN = env.get("METRICS_TOKEN", "").strip()
if METRICS_TOKEN and (len(METRICS_TOKEN) < 16 or not re.fullmatch(r"[\x21-\x7e]+", METRICS_TOKEN)):
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 printable characters without spaces "
                               "(python -c 'import secrets; print(secrets.token_urlsafe(32))').")
METRICS_ALLOWED_NETWORKS = (_networks("METRICS_ALLOWED_NETWORKS") if "METRICS_ALLOWED_NETWORKS" in env
                            else parse_networks(["127.0.0.0/8", "::1/128"], name="METRICS_ALLOWED_NETWORKS"))
# Seconds the scrape waits for the broker's queue lengths before it reports the broker unreadable.
METRICS_BROKER_TIMEOUT = _number("METRICS_BROKER_TIMEOUT", 0.5, positive=True, maximum=30)
if _HTTPS:
    # Scraped over plain HTTP inside the network, like /healthz.
    SECURE_REDIRECT_EXEMPT.append(r"^metrics$")
# pipeline_status exits 4 when more than this fraction of the active sources is failing or blocked
# (docs/health.md); 0: any one of them, 1: never.
PIPELINE_HEALTH_TOLERANCE = _number("PIPELINE_HEALTH_TOLERANCE", 0.1, maximum=1)

# --- Heartbeats and error tracking (docs/heartbeats.md) ----------------------------------------
# A cron monitor's ping URL (healthchecks.io and the like): POSTed a small JSON summary after each
# ingest_feeds run that succeeded or was partial, and after an idle tick; the fail URL after a
# failed run. Both empty (off) by default. The path is the check's key: never quoted back.
_HEARTBEAT_URL = re.compile(r"https?://[^/?#\s@]+([/?][^#\s]*)?")


def _heartbeat_url(name: str) -> str:
    value = env.get(name, "").strip()
    if value and not _HEARTBEAT_URL.fullmatch(value):
        raise ImproperlyConfigured(f"{name} must be an http:// or https:// URL with a host (and no user or password).")
    return value


PIPELINE_HEARTBEAT_URL = _heartbeat_url("PIPELINE_HEARTBEAT_URL")
PIPELINE_HEARTBEAT_FAIL_URL = _heartbeat_url("PIPELINE_HEARTBEAT_FAIL_URL")
# Seconds each step of a ping (connect, send, wait for the answer) may take; the run waits no longer.
PIPELINE_HEARTBEAT_TIMEOUT = _number("PIPELINE_HEARTBEAT_TIMEOUT", 3.0, positive=True, maximum=60)
# Sentry: off (and sentry_sdk not imported) while SENTRY_DSN is empty; pipeline/sentry.py.
SENTRY_DSN = env.get("SENTRY_DSN", "").strip()
SENTRY_ENVIRONMENT = env.get("SENTRY_ENVIRONMENT", "").strip() or "production"
SENTRY_TRACES_SAMPLE_RATE = _number("SENTRY_TRACES_SAMPLE_RATE", 0.0, maximum=1)
if SENTRY_DSN:
    from pipeline.sentry import sentry_init

    sentry_init(SENTRY_DSN, environment=SENTRY_ENVIRONMENT, traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
                secrets=[*INGEST_FEED_SECRETS.values(), SECRET_KEY, PIPELINE_HEARTBEAT_URL, PIPELINE_HEARTBEAT_FAIL_URL])
