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
# Next fetches exactly where the rules put them; the jitter's own tests turn it on (override_settings).
os.environ.setdefault("INGEST_JITTER", "0")
# Every test feed is on 127.0.0.1: no spacing between request starts, unless a test of the per-host
# budget (tests/test_hosts.py) sets one.
os.environ.setdefault("INGEST_HOST_SPACING", "0")
# The Celery tests use their own Redis database, never the one in the environment, and a key prefix
# of their own per pytest process (inherited by the workers they start), so concurrent runs never
# take each other's tasks or answer each other's `inspect`.
os.environ["CELERY_BROKER_URL"] = os.environ.get("TEST_CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
os.environ["CELERY_RESULT_BACKEND"] = os.environ["CELERY_BROKER_URL"]
os.environ.setdefault("PIPELINE_TEST_BROKER_PREFIX", f"test-{os.getpid()}-{os.urandom(3).hex()}:")
os.environ["CELERY_BROKER_KEY_PREFIX"] = os.environ["PIPELINE_TEST_BROKER_PREFIX"]
os.environ.setdefault("CELERY_RESULT_EXPIRES", "600")

from pipeline.settings import *  # noqa: E402,F403

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not Django's in-memory test database: the Celery tests start worker processes that
    # must open it too. One file per pytest process, so that two runs never share it.
    import tempfile

    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"pipeline-test-{os.getpid()}.sqlite3")
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":  # noqa: F405
    # The test database as users have theirs: utf8mb4 with the server's default collation, which
    # on MariaDB 10.11 is utf8mb4_general_ci (case- and accent-insensitive, trailing spaces
    # ignored; MariaDB 11.4+ defaults to utf8mb4_uca1400_ai_ci, alike in those respects). Django
    # creates the test database with CHARACTER SET / COLLATE only when TEST names them, else with
    # the server's defaults, whatever they are; named here, so that a server configured otherwise
    # still tests the identity rules (tests/test_identity.py) under the collation they are for.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        **DATABASES["default"].get("TEST", {}),  # noqa: F405
        "CHARSET": "utf8mb4",
        "COLLATION": "utf8mb4_general_ci",
    }

# Logging in to the admin in tests need not cost a real key derivation.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
