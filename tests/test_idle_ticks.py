"""A scheduled ingest tick that finds nothing due leaves no ``IngestRun`` row: it is counted on
``IdleTick``, and ``pipeline_status`` and ``/healthz`` still see the scheduler alive through it."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from ingest.models import IdleTick, IngestRun, TechnicalArticle
from ingest.services.fanout import ingest_dispatch
from ingest.services.runs import run_idle_tick


def status(*args) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("pipeline_status", "--no-celery", *args, stdout=out, stderr=StringIO())
    except CommandError as exc:
        return exc.returncode, out.getvalue()
    return 0, out.getvalue()


def old_run(hours: float) -> IngestRun:
    finished = timezone.now() - timedelta(hours=hours)
    return IngestRun.objects.create(command="ingest_feeds", trigger="celery", status="succeeded",
                                    started_at=finished - timedelta(seconds=2), finished_at=finished)


def test_a_day_of_idle_ticks_leaves_one_counter_row_and_no_runs(db):
    for _ in range(288):
        assert ingest_dispatch() == (None, "", [])
    assert IngestRun.objects.count() == 0
    assert list(IdleTick.objects.values_list("command", "idle_ticks")) == [("ingest_feeds", 288)]


def test_a_tick_with_a_source_due_is_still_a_run(db, feed_server):
    feed_server.add("/feed.rss", b"<rss version='2.0'><channel><title>T</title></channel></rss>")
    source = TechnicalArticle.objects.create(name="due", feed_url=feed_server.url("/feed.rss"))
    run_id, owner, claimed = ingest_dispatch()
    assert claimed == [source.pk] and IngestRun.objects.get(pk=run_id).lease_owner == owner
    assert not IdleTick.objects.exists()


def test_pipeline_status_counts_the_last_idle_tick_as_fresh(db):
    last = old_run(hours=6)  # the last run that did something is old ...
    code, out = status("--max-age", "3600")
    assert code == 3 and "no ingest_feeds run completed in the last 1h00m" in out
    ingest_dispatch()  # ... but beat ticked a moment ago and found nothing due
    code, out = status("--max-age", "3600")
    assert code == 0 and "Pipeline healthy" in out
    assert "Last ingest tick: nothing was due, " in out and f"last completed run {last.pk})" in out
    assert "Idle ticks (scheduled runs that found nothing due, not recorded as runs): 1, the last " in out
    code, out = status("--json", "--max-age", "3600")
    fresh = json.loads(out)["freshness"]
    assert code == 0 and fresh["stale"] is False and fresh["idle_ticks"] == 1 and fresh["run_id"] == last.pk
    assert fresh["age_s"] < 60 and fresh["finished_at"] == fresh["last_idle_at"]


def test_an_old_idle_tick_is_stale_like_an_old_run(db):
    ingest_dispatch()
    IdleTick.objects.update(last_idle_at=timezone.now() - timedelta(hours=3))
    code, out = status("--max-age", "3600")
    assert code == 3 and "the last one finished 3h00m ago" in out
    old_run(hours=0.1)  # a newer completed run is what counts
    code, out = status("--max-age", "3600")
    assert code == 0 and "Last completed ingest: run " in out and "Idle ticks" in out


def test_healthz_is_ok_on_idle_ticks_alone(db, client):
    assert client.get("/healthz").json()["status"] == "stale"  # never ran, never ticked
    ingest_dispatch()
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["ingest"]["stale"] is False and body["ingest"]["run_id"] is None
    assert body["ingest"]["idle_ticks"] == 1 and body["ingest"]["max_age_s"] == settings.PIPELINE_HEALTH_MAX_AGE


def test_concurrent_idle_ticks_are_all_counted(transactional_db):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serializes writers; the F() increment's concurrency is a server database's question")
    errors: list[BaseException] = []

    def tick() -> None:
        from django.db import connection as own

        try:
            for _ in range(10):
                run_idle_tick(command="ingest_feeds", now=timezone.now())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=tick) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert IdleTick.objects.get(command="ingest_feeds").idle_ticks == 60


def test_the_models_and_the_migrations_agree(db):
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    except SystemExit as exc:  # --check exits 1 when a model change has no migration
        pytest.fail(f"makemigrations --check exited {exc.code}: a model change has no migration:\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()
