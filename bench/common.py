"""Shared benchmark plumbing: Django setup against a chosen database, timing, statistics, RSS."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(database_url: str | None) -> None:
    """Configure Django for a benchmark database (never the user's default database)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "pipeline.settings"
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("INGEST_ALLOWED_NETWORKS", "127.0.0.0/8")
    # Every benchmark feed is on one loopback host: the per-host budget would measure itself.
    os.environ.setdefault("INGEST_HOST_CONCURRENCY", "64")
    os.environ.setdefault("INGEST_HOST_SPACING", "0")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///var/bench-{os.getpid()}.sqlite3"
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # no query log: it would cost memory and time


def postgres_create(url: str) -> str:
    """Create (or recreate) the database named in a postgres:// URL; returns the URL."""
    import psycopg
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = f"host={parts.hostname} port={parts.port or 5432} user={parts.username or 'postgres'} dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def timed(fn: Callable[[], object], repeat: int, setup: Callable[[], None] | None = None) -> list[float]:
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def summary(times: list[float]) -> dict:
    return {
        "median_s": round(statistics.median(times), 4),
        "min_s": round(min(times), 4),
        "max_s": round(max(times), 4),
        "runs": len(times),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
