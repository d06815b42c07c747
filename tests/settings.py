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

# Logging in to the admin in tests need not cost a real key derivation.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
