"""Scrape cost of ``/metrics``: the series are computed from the database at scrape time, so a scrape
must stay cheap on a large install (docs/metrics.md, "Scrape cost"; the budget is 200 ms).

    python -m bench.metrics_scrape                            # 10,000 sources, SQLite under var/bench/
    python -m bench.metrics_scrape --database-url postgres://postgres@127.0.0.1:5432/bench_metrics
    python -m bench.metrics_scrape --sources 1000 --repeat 5  # a quick run

A fresh database (a SQLite file, or the ``bench_*`` PostgreSQL database of ``--database-url``,
dropped and created), migrated and filled with bulk inserts: ``--sources`` sources in every health
state, a third of them due, ``--runs`` finished runs of both commands (30 days of a 5-minute
schedule is 8,640), ``--deliveries`` webhook deliveries (a tenth pending). Then ``--repeat`` scrapes
of ``/metrics`` through Django's test client in this process (the broker is not read: its cost is
Redis's, bounded by METRICS_BROKER_TIMEOUT), each timed in wall and CPU seconds of this process;
the database server's own CPU (PostgreSQL) is not in the CPU figure. Prints one JSON object: the
median, p90 and maximum wall milliseconds, the median CPU milliseconds and the query count.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta

from bench.common import ROOT
from bench.harness import emit

NOW = datetime.now(UTC)
HEALTH = ("healthy",) * 14 + ("degraded", "failing", "blocked", "gone")


def _database(url: str | None) -> str:
    from bench.common import postgres_create
    from bench.harness import sqlite_url

    if url is None:
        return sqlite_url("metrics")
    name = url.rsplit("/", 1)[1]
    if not name.startswith("bench_"):
        raise SystemExit(f"--database-url must name a database of its own, bench_*, not {name!r}: it is dropped")
    return postgres_create(url)


def fill(sources: int, runs: int, deliveries: int, seed: int = 1) -> None:
    from ingest.models import Event, IngestRun, TechnicalArticle, WebhookDelivery, WebhookEndpoint

    rng = random.Random(seed)
    TechnicalArticle.objects.bulk_create(
        (TechnicalArticle(name=f"source {i}", feed_url=f"http://feeds.example/{i}.xml", health=rng.choice(HEALTH),
                          active=i % 50 != 0, next_fetch_at=NOW + timedelta(seconds=rng.randint(-1800, 3600)))
         for i in range(sources)), batch_size=1000)
    commands = ("ingest_feeds",) * 9 + ("recompute_counts",)
    statuses = ("succeeded",) * 8 + ("partial", "failed")
    rows = []
    for i in range(runs):
        started = NOW - timedelta(minutes=5 * (runs - i))
        rows.append(IngestRun(command=rng.choice(commands), status=rng.choice(statuses), started_at=started,
                              finished_at=started + timedelta(seconds=rng.lognormvariate(2.5, 1.0)),
                              sources_total=40, sources_fetched=rng.randint(0, 30), sources_not_modified=8,
                              sources_failed=rng.randint(0, 2), entries_created=rng.randint(0, 200),
                              entries_updated=rng.randint(0, 20), stats={"retries": rng.randint(0, 1), "sources": []}))
    IngestRun.objects.bulk_create(rows, batch_size=1000)
    endpoint = WebhookEndpoint.objects.create(name="bench", url="http://hooks.example/in")
    events = Event.objects.bulk_create((Event(type="entry.created", entry_id=i) for i in range(deliveries)),
                                       batch_size=1000)
    if not events or events[0].pk is None:  # backends that return no ids from bulk_create
        events = list(Event.objects.order_by("pk"))
    WebhookDelivery.objects.bulk_create(
        (WebhookDelivery(endpoint=endpoint, event=event, state="pending" if i % 10 == 0 else "delivered",
                         created_at=NOW - timedelta(seconds=deliveries - i)) for i, event in enumerate(events)),
        batch_size=1000)


def run(args) -> dict:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1", "LOG_LEVEL": "WARNING",
                       "PIPELINE_CELERY": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                       "DATABASE_URL": _database(args.database_url)})
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from prometheus_client import generate_latest

    from bench.common import migrate
    from ingest.services.metrics import metrics_registry

    settings.DEBUG = False
    migrate()
    started = time.perf_counter()
    fill(args.sources, args.runs, args.deliveries)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    filled_s = time.perf_counter() - started
    client = Client(HTTP_HOST="localhost")  # an ALLOWED_HOSTS name; REMOTE_ADDR is 127.0.0.1
    with CaptureQueriesContext(connection) as captured:  # the collector itself: the client's request closes the connection
        generate_latest(metrics_registry())
    queries = len(captured)  # now: a new connection clears the log the context reads
    first = client.get("/metrics")
    assert first.status_code == 200, first.content[:200]
    walls, cpus = [], []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        response = client.get("/metrics")
        cpus.append((time.process_time() - cpu) * 1000)
        walls.append((time.perf_counter() - wall) * 1000)
        assert response.status_code == 200
    walls.sort()
    return {"backend": connection.vendor, "sources": args.sources, "runs": args.runs, "deliveries": args.deliveries,
            "fill_s": round(filled_s, 1), "queries": queries, "bytes": len(first.content),
            "repeat": args.repeat, "wall_ms_median": round(statistics.median(walls), 1),
            "wall_ms_p90": round(walls[int(0.9 * (len(walls) - 1))], 1), "wall_ms_max": round(walls[-1], 1),
            "cpu_ms_median": round(statistics.median(cpus), 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=8_640, help="finished runs in the ledger (30 days every 5 min)")
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--database-url", help="postgres://…/bench_* (dropped and created); default: a SQLite file")
    return emit(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
