"""Settings for the test suite: the project's settings with test-friendly environment defaults.

The database comes from DATABASE_URL like everywhere else (unset: SQLite); scripts/test runs the
suite once per backend.
"""

import os

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("INGEST_ALLOWED_NETWORKS", "127.0.0.0/8")
os.environ.setdefault("INGEST_CONNECT_TIMEOUT", "2")
os.environ.setdefault("INGEST_READ_TIMEOUT", "2")
os.environ.setdefault("INGEST_DEADLINE", "5")
os.environ.setdefault("DB_RETRY_BASE_DELAY", "0.01")
os.environ.setdefault("DB_RETRY_MAX_DELAY", "0.2")

from pipeline.settings import *  # noqa: E402,F403
