"""Load: 1,000 sources × 50 entries over 127.0.0.1, 0–500 ms latency per request, 5 % HTTP 500s.

Ingested once by ``manage.py ingest_feeds --workers 16`` and once by two Celery worker processes
(prefork, 8 each). Each time: the run completes; the entries in the database equal exactly the
unique entries of the feeds that were served (each feed also repeats one of its items, and one
feed in fifty shares its guids with another source); the sources that got a 500 are backed off,
due again after the backoff, and a second pass with the errors switched off makes the database
equal every unique entry. Elapsed times go to docs/reliability.md; nothing here gates on them.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from ingest.models import Entry, TechnicalArticle
from ingest.selectors import sources_due
from samples.feedserver import FeedServer
from tests.helpers import entry_keys, expected_entries, generate_feeds, postgres_only, vendor, wipe
from tests.reliability.celery_harness import SHARED_REDIS, Broker, CeleryProcess, require_redis, result_of, run_finished
from tests.reliability.runner import manage, observe

pytestmark = [pytest.mark.slow, postgres_only, pytest.mark.django_db(transaction=True)]

SOURCES, ENTRIES = 1000, 50
LATENCY, ERROR_RATE = (0.0, 0.5), 0.05
# Every feed is on one loopback host: the per-host budget (tests/test_hosts.py) is lifted, as for a feed farm of one's own.
ENV = {"INGEST_DEADLINE": "30", "INGEST_READ_TIMEOUT": "10", "INGEST_CONNECT_TIMEOUT": "10", "INGEST_HOST_CONCURRENCY": "64"}


@pytest.fixture(scope="module")
def feeds():
    return generate_feeds(SOURCES, ENTRIES, seed=2026)


def _register(server: FeedServer, bodies) -> dict[int, str]:
    TechnicalArticle.objects.bulk_create(TechnicalArticle(name=path, feed_url=server.url(path)) for path in sorted(bodies))
    return dict(TechnicalArticle.objects.values_list("pk", "feed_url"))


def _check_first_pass(server: FeedServer, unique, urls: dict[int, str], failed_ids: set[int]) -> None:
    """Entries equal what was served; the failed sources are exactly those given a 500, backed off."""
    expected = expected_entries(server, unique)
    assert entry_keys() == expected and Entry.objects.count() == len(expected)
    path_of = {pk: url[len(server.base_url):] for pk, url in urls.items()}
    assert {path_of[pk] for pk in failed_ids} == server.failed
    now = timezone.now()
    failed = TechnicalArticle.objects.filter(pk__in=failed_ids)
    assert all(s.consecutive_failures >= 1 and s.next_fetch_at > now and "500" in s.last_error for s in failed)
    assert not TechnicalArticle.objects.exclude(lease_owner="").exists()
    # Due again once the backoff has passed, and they alone (the others wait for their interval).
    later = now + timedelta(seconds=settings.INGEST_BACKOFF_BASE + 60)
    assert set(sources_due(now=later)) == failed_ids
    assert server.overlapping_paths() == []


def test_load_through_the_command_with_16_workers(feeds):
    bodies, unique = feeds
    with FeedServer(feeds=bodies, latency=LATENCY, error_rate=ERROR_RATE, seed=1) as server:
        urls = _register(server, bodies)
        first = manage("ingest_feeds", "--json", "--workers", "16", env=ENV, timeout=900)
        assert first.returncode == 0, first.explain()
        report = first.json()
        failed_ids = {s["id"] for s in report["sources"] if s["outcome"] == "failed"}
        assert report["status"] == "partial" and report["totals"]["sources"] == SOURCES
        _check_first_pass(server, unique, urls, failed_ids)
        answered_500 = len(server.failed)

        server.error_rate = 0.0
        second = manage("ingest_feeds", "--json", "--all", "--workers", "16", env=ENV, timeout=900)
        assert second.returncode == 0, second.explain()
        totals = second.json()["totals"]
    everything = expected_entries(server, unique, set(bodies))
    assert entry_keys() == everything and Entry.objects.count() == len(everything)
    assert totals["failed"] == 0 and totals["not_modified"] == SOURCES - len(failed_ids)
    assert not TechnicalArticle.objects.filter(consecutive_failures__gt=0).exists()
    observe("load-command", f"{vendor()}: {SOURCES:,} sources × {ENTRIES} entries, 0–500 ms latency, 5 % 500s, "
            f"`ingest_feeds --workers 16`: first pass {first.elapsed_s:.1f}s wall (run {report['elapsed_s']:.1f}s), "
            f"{len(failed_ids)} sources failed (= the {answered_500} answered 500), {report['totals']['created']:,} "
            f"entries = exactly the unique entries served; failed sources backed off and due again after "
            f"{settings.INGEST_BACKOFF_BASE}s; second pass without errors {second.elapsed_s:.1f}s "
            f"({totals['not_modified']} not modified, {totals['created']:,} created): {len(everything):,} entries = all "
            f"unique entries; peak RSS {first.max_rss_mb:.0f} MB.",
            mode="`ingest_feeds --workers 16` (one process)", first_s=round(first.elapsed_s, 1),
            second_s=round(second.elapsed_s, 1), failed=len(failed_ids), created=report["totals"]["created"],
            total=len(everything))


def test_load_through_two_celery_workers(feeds, tmp_path):
    bodies, unique = feeds
    broker = Broker(SHARED_REDIS)
    require_redis(broker)
    broker.cleanup()
    workers = []
    try:
        with FeedServer(feeds=bodies, latency=LATENCY, error_rate=ERROR_RATE, seed=2) as server:
            urls = _register(server, bodies)
            workers = [CeleryProcess("worker", broker=broker, log_dir=tmp_path, env=ENV, concurrency=8).start()
                       for _ in range(2)]
            started = time.monotonic()
            first_run = run_finished(result_of(broker.send("ingest.tasks.ingest_feeds"), timeout=60)["run_id"], timeout=900)
            first_s = time.monotonic() - started
            failed_ids = set(TechnicalArticle.objects.filter(consecutive_failures__gt=0).values_list("pk", flat=True))
            assert (first_run.status, first_run.sources_total, first_run.sources_failed) == ("partial", SOURCES, len(failed_ids))
            _check_first_pass(server, unique, urls, failed_ids)
            assert first_run.entries_created == Entry.objects.count()

            server.error_rate = 0.0
            started = time.monotonic()
            second_run = run_finished(result_of(broker.send("ingest.tasks.ingest_feeds", force=True), timeout=60)["run_id"],
                                      timeout=900)
            second_s = time.monotonic() - started
            assert server.overlapping_paths() == []
            per_worker = [len(re.findall(r"Task ingest\.tasks\.ingest_source\[[^]]+\] received", w.log(tail=10**9)))
                          for w in workers]
        assert all(w.tripped() == [] for w in workers)
    except BaseException:
        for worker in workers:
            print(worker.log())
        raise
    finally:
        for worker in workers:
            worker.stop()
        broker.cleanup()
        broker.close()
    everything = expected_entries(server, unique, set(bodies))
    assert entry_keys() == everything and Entry.objects.count() == len(everything)
    assert (second_run.status, second_run.sources_failed, second_run.sources_not_modified) == (
        "succeeded", 0, SOURCES - len(failed_ids))
    observe("load-celery", f"{vendor()}: the same load through two Celery worker processes (prefork, 8 each; "
            f"source tasks received per worker over both runs: {per_worker}): first run {first_s:.1f}s until closed, "
            f"{len(failed_ids)} failed (= the 500s), {first_run.entries_created:,} entries = exactly the unique entries "
            f"served; failed sources backed off and due again; forced second run without errors {second_s:.1f}s: "
            f"{len(everything):,} entries = all unique entries, 0 duplicates.",
            mode="two Celery workers (prefork, 8 processes each)", first_s=round(first_s, 1), second_s=round(second_s, 1),
            failed=len(failed_ids), created=first_run.entries_created, total=len(everything))
    wipe()
