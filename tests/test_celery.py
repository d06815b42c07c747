"""The pipeline on Celery: a real Redis broker and real workers, never eager mode.

Eager mode would hide what these tests are for: JSON serialization of the task arguments, late
acknowledgement, redelivery after a worker dies, and expiry of queued periodic runs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from io import StringIO
from pathlib import Path

import pytest
from celery.beat import Scheduler
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError, connection, reset_queries
from django.test import override_settings
from django_celery_beat.models import PeriodicTask

from ingest import tasks
from ingest.models import Author, Comment, CommentFeed, Entry, EntryLink, IdleTick, IngestRun, Pingback, TechnicalArticle
from ingest.services.fanout import ingest_dispatch, source_abandon
from pipeline.beat import SeedingDatabaseScheduler
from pipeline.celery import app
from tests.helpers import wait_until
from tests.workers import WorkerProcess, in_process_worker

DATA = Path(__file__).parent / "data" / "feeds"
BLOG = (DATA / "blog.rss").read_bytes()
NEWS = (DATA / "news.atom").read_bytes()


def add_sources(server, *paths: str) -> list[TechnicalArticle]:
    return [TechnicalArticle.objects.create(name=path, feed_url=server.url(path)) for path in paths]


def serve_feeds(server, *, news_delay: float = 0.0) -> None:
    server.add("/blog.rss", BLOG, etag='"v1"', last_modified="Mon, 01 Jun 2026 10:00:00 GMT")
    server.add("/news.atom", NEWS, content_type="application/atom+xml", delay=news_delay)


def run_finished(run_id: int, timeout: float = 30.0) -> IngestRun:
    def done():
        run = IngestRun.objects.get(pk=run_id)
        return run if run.status != IngestRun.Status.RUNNING else None

    return wait_until(done, timeout=timeout, message=f"run {run_id} to finish")


@pytest.fixture
def executed():
    """Names and kwargs of the tasks the in-process worker ran, in order."""
    from celery.signals import task_postrun

    seen: list[tuple[str, dict]] = []
    lock = threading.Lock()

    def record(sender=None, kwargs=None, **_):
        with lock:
            seen.append((sender.name, dict(kwargs or {})))

    task_postrun.connect(record, weak=False)
    yield seen
    task_postrun.disconnect(record)


# --- Configuration ------------------------------------------------------------------------------


def test_settings_that_keep_work_from_being_lost_or_doubled():
    conf = app.conf
    assert conf.task_serializer == conf.result_serializer == "json"
    assert list(conf.accept_content) == ["json"]
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.worker_send_task_events and conf.task_send_sent_event
    for task in (tasks.ingest_feeds, tasks.ingest_source, tasks.recompute_counts):
        assert OperationalError in task.autoretry_for
        assert 0 < task.max_retries <= 10 and task.retry_backoff
        assert task.retry_backoff_max < conf.broker_transport_options["visibility_timeout"]


def test_beat_schedule_entries_resolve_to_tasks_and_expire():
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery included
    schedule = settings.CELERY_BEAT_SCHEDULE
    assert {entry["task"] for entry in schedule.values()} == {"ingest.tasks.ingest_feeds", "ingest.tasks.recompute_counts",
                                                              "ingest.tasks.prune_runs", "ingest.tasks.prune_entries",
                                                              "ingest.events.deliver"}
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: {entry['task']} is not a registered task"
        assert 0 < entry["options"]["expires"] <= entry["schedule"], f"{name}: a queued run must expire"
    assert schedule["ingest-feeds"]["schedule"] == settings.INGEST_SCHEDULE_SECONDS
    assert schedule["recompute-counts"]["schedule"] == settings.RECOUNT_SCHEDULE_SECONDS
    assert schedule["prune-runs"]["schedule"] == settings.PRUNE_SCHEDULE_SECONDS
    assert schedule["prune-entries"]["schedule"] == settings.PRUNE_ENTRIES_SCHEDULE_SECONDS
    assert schedule["webhooks-deliver"]["schedule"] == settings.WEBHOOK_SCHEDULE_SECONDS
    assert settings.CELERY_BEAT_SCHEDULER == "pipeline.beat:PersistentScheduler"


def test_beat_creates_the_folder_of_its_schedule_file_when_it_starts_not_at_import(tmp_path):
    from django.core.exceptions import ImproperlyConfigured

    from pipeline.beat import PersistentScheduler

    filename = tmp_path / "beat" / "state" / "celerybeat-schedule"
    lazy = PersistentScheduler(app=app, schedule_filename=str(filename), lazy=True)  # beat's banner
    assert not filename.parent.exists()
    lazy.setup_schedule()
    try:
        assert filename.parent.is_dir() and "ingest-feeds" in lazy.schedule
    finally:
        lazy.close()
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ImproperlyConfigured, match="CELERY_BEAT_SCHEDULE_FILENAME"):
        PersistentScheduler(app=app, schedule_filename=str(tmp_path / "a-file" / "sub" / "schedule"))


def test_beat_sends_its_entries_with_an_expiry(broker):
    scheduler = Scheduler(app=broker, lazy=True)
    scheduler.setup_schedule()
    entry = scheduler.schedule["ingest-feeds"]
    before = time.time()
    scheduler.apply_async(entry, advance=False)
    with broker.connection_for_read() as conn:
        queue = conn.SimpleQueue(broker.conf.task_default_queue)
        message = queue.get(timeout=5)
        message.ack()
        queue.close()
    assert message.headers["task"] == "ingest.tasks.ingest_feeds"
    from datetime import datetime

    expires = datetime.fromisoformat(message.headers["expires"]).timestamp()
    assert before < expires <= time.time() + settings.INGEST_SCHEDULE_SECONDS + 1


@pytest.mark.django_db(transaction=True)
def test_database_scheduler_seeds_the_table_once_and_keeps_admin_edits(broker):
    SeedingDatabaseScheduler(app=broker)
    rows = {task.name: task for task in PeriodicTask.objects.all()}
    assert rows["ingest-feeds"].task == "ingest.tasks.ingest_feeds"
    assert rows["ingest-feeds"].interval.every == settings.INGEST_SCHEDULE_SECONDS
    assert rows["ingest-feeds"].expire_seconds == settings.INGEST_SCHEDULE_SECONDS
    assert rows["recompute-counts"].expire_seconds == settings.RECOUNT_SCHEDULE_SECONDS

    # An operator changes the interval and disables the recount in the admin; beat restarts.
    from django_celery_beat.models import IntervalSchedule

    edited = IntervalSchedule.objects.create(every=42, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="ingest-feeds").update(interval=edited)
    PeriodicTask.objects.filter(name="recompute-counts").update(enabled=False)
    scheduler = SeedingDatabaseScheduler(app=broker)
    assert PeriodicTask.objects.get(name="ingest-feeds").interval.every == 42
    assert not PeriodicTask.objects.get(name="recompute-counts").enabled
    assert scheduler.schedule["ingest-feeds"].options["expires"] == settings.INGEST_SCHEDULE_SECONDS
    assert "recompute-counts" not in scheduler.schedule


# --- A real worker in this process --------------------------------------------------------------


def test_periodic_run_fans_out_one_task_per_source(transactional_db, broker, feed_server, executed):
    serve_feeds(feed_server)
    blog, news = add_sources(feed_server, "/blog.rss", "/news.atom")
    with in_process_worker():
        started = tasks.ingest_feeds.delay().get(timeout=20)
        run = run_finished(started["run_id"])
        again = tasks.ingest_feeds.delay().get(timeout=20)  # nothing is due any more
        wait_until(lambda: len(executed) == 4, message="the tasks to be recorded")
    assert started["sources"] == 2 and again["sources"] == 0
    assert (run.command, run.trigger, run.status) == ("ingest_feeds", "celery", "succeeded")
    assert (run.sources_total, run.sources_fetched, run.sources_failed, run.entries_created) == (2, 2, 0, 8)
    assert run.finished_at is not None
    fanned = sorted(kwargs["source_id"] for name, kwargs in executed if name == "ingest.tasks.ingest_source")
    assert fanned == [blog.pk, news.pk]
    assert Entry.objects.count() == 8
    assert set(Entry.objects.values_list("technical_article_id", flat=True)) == {blog.pk, news.pk}
    assert set(IngestRun.objects.values_list("trigger", flat=True)) == {"celery"}
    # The tick that found nothing due left no run row: it is counted as an idle tick.
    assert again["run_id"] is None and again["idle"] is True
    assert IngestRun.objects.count() == 1
    assert IdleTick.objects.get(command="ingest_feeds").idle_ticks == 1
    blog.refresh_from_db()
    assert blog.lease_owner == "" and blog.etag == '"v1"'


def test_periodic_recount_records_a_celery_run(transactional_db, broker):
    with in_process_worker():
        report = tasks.recompute_counts.delay().get(timeout=20)
    run = IngestRun.objects.get(pk=report["run_id"])
    assert (run.command, run.trigger, run.status) == ("recompute_counts", "celery", "succeeded")


def test_overlapping_runs_never_process_a_source_twice(transactional_db, broker, feed_server):
    """Beat fires again (and cron runs) while the first run is still fetching a slow feed."""
    serve_feeds(feed_server, news_delay=1.0)
    blog, news = add_sources(feed_server, "/blog.rss", "/news.atom")
    with in_process_worker(concurrency=3):
        first = tasks.ingest_feeds.delay().get(timeout=20)
        wait_until(lambda: feed_server.hits("/news.atom") == 1, message="the slow feed to be requested")
        stored = TechnicalArticle.objects.filter(pk=blog.pk, lease_owner="", last_success_at__isnull=False)
        wait_until(stored.exists, message="the fast feed to be stored")
        second = tasks.ingest_feeds.delay().get(timeout=20)  # the next periodic run, mid-flight
        out = StringIO()
        call_command("ingest_feeds", "--all", "--json", "--trigger", "cron", stdout=out, stderr=StringIO())
        run = run_finished(first["run_id"])
    assert first["sources"] == 2
    assert second["sources"] == 0  # the blog is stored (not due), the news is leased
    assert IngestRun.objects.get(pk=second["run_id"]).status == "succeeded"
    assert IngestRun.objects.get(pk=second["run_id"]).stats["skipped_leased"] == 1
    assert '"skipped_leased": 1' in out.getvalue()  # the cron run left the leased source alone too
    assert feed_server.hits("/news.atom") == 1
    assert (run.status, run.sources_fetched, run.entries_created) == ("succeeded", 2, 8)
    assert Entry.objects.filter(technical_article=news).count() == 3


def test_a_redelivered_source_task_changes_nothing(transactional_db, broker, feed_server):
    serve_feeds(feed_server)
    (blog,) = add_sources(feed_server, "/blog.rss")
    run_id, owner, claimed = ingest_dispatch(trigger=IngestRun.Trigger.CELERY)
    assert claimed == [blog.pk]
    kwargs = {"source_id": blog.pk, "owner": owner, "run_id": run_id}
    with in_process_worker():
        first = tasks.ingest_source.apply_async(kwargs=kwargs).get(timeout=20)
        again = tasks.ingest_source.apply_async(kwargs=kwargs).get(timeout=20)  # as after a crash before the ack
    assert first["outcome"] == "created" and again["outcome"] == "skipped"
    assert feed_server.hits("/blog.rss") == 1
    run = IngestRun.objects.get(pk=run_id)
    assert (run.status, run.sources_fetched, run.entries_created) == ("succeeded", 1, 5)


def test_a_run_queued_while_no_worker_was_up_expires(transactional_db, broker):
    stale = tasks.ingest_feeds.apply_async(expires=0.2)  # beat sends with expires=INGEST_SCHEDULE_SECONDS
    time.sleep(0.5)
    with in_process_worker():
        fresh = tasks.ingest_feeds.delay().get(timeout=20)
        wait_until(lambda: stale.state == "REVOKED", message="the expired run to be dropped")
    # Only the fresh tick ran (nothing was due: counted, no run row); the expired one did nothing.
    assert fresh["run_id"] is None and not IngestRun.objects.exists()
    assert IdleTick.objects.get(command="ingest_feeds").idle_ticks == 1


# --- Worker processes killed mid-task -----------------------------------------------------------


def _snapshot() -> dict:
    """Everything a run leaves in the database, without ids and timestamps."""
    sources = sorted(
        TechnicalArticle.objects.values_list("feed_url", "name", "tagline", "site_url", "active", "etag",
                                             "last_modified", "last_status", "consecutive_failures",
                                             "last_error", "lease_owner", "lease_expires_at")
    )
    entries = sorted(
        (e.technical_article.feed_url, e.guid, e.headline, e.body_text, e.link, e.published_at, e.content_hash,
         e.number_of_comments, e.number_of_pingbacks, tuple(sorted(a.name for a in e.authors.all())))
        for e in Entry.objects.select_related("technical_article").prefetch_related("authors")
    )
    runs = list(IngestRun.objects.order_by("pk").values_list(
        "command", "trigger", "status", "sources_total", "sources_fetched", "sources_not_modified",
        "sources_failed", "entries_created", "entries_updated", "entries_unchanged", "error"))
    counts = {m.__name__: m.objects.count() for m in (Author, Comment, CommentFeed, Entry, EntryLink, Pingback)}
    return {"sources": sources, "entries": entries, "runs": runs, "counts": counts}


def _reset(server) -> None:
    for model in (IngestRun, Pingback, Comment, EntryLink, Entry, Author, TechnicalArticle):
        model.objects.all().delete()
    add_sources(server, "/blog.rss", "/news.atom")


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["pool_process", "whole_worker"])
def test_worker_killed_mid_task_redelivers_and_ends_like_an_undisturbed_run(
    victim, transactional_db, broker, feed_server, tmp_path
):
    """SIGKILL while a source task is fetching: the task runs again and the database ends up
    identical to a run nobody disturbed.

    ``pool_process``: the pool process dies (OOM killer); the worker requeues the message at once
    (task_reject_on_worker_lost). ``whole_worker``: the machine dies; the message stays
    unacknowledged and Redis hands it to another worker after the visibility timeout.
    """
    slow = 3.0
    serve_feeds(feed_server, news_delay=slow)
    add_sources(feed_server, "/blog.rss", "/news.atom")
    env = {
        "CELERY_VISIBILITY_TIMEOUT": "10", "CELERY_TASK_TIME_LIMIT": "9", "CELERY_TASK_SOFT_TIME_LIMIT": "8",
        "INGEST_READ_TIMEOUT": "6", "INGEST_DEADLINE": "7",
    }
    worker = WorkerProcess(log_dir=tmp_path, env=env).start()
    spare = None
    try:
        first = tasks.ingest_feeds.delay().get(timeout=30)
        assert first["sources"] == 2
        wait_until(lambda: feed_server.hits("/news.atom") == 1, message="the slow feed to be requested")
        if victim == "pool_process":
            os.kill(worker.pool_pid_running("ingest.tasks.ingest_source"), signal.SIGKILL)
        else:
            worker.kill()
            spare = worker = WorkerProcess(log_dir=tmp_path, env=env).start()
        run = run_finished(first["run_id"], timeout=60)
        assert feed_server.hits("/news.atom") == 2, "the killed task was not delivered again"
        disturbed = _snapshot()

        _reset(feed_server)
        second = tasks.ingest_feeds.delay().get(timeout=30)
        run_finished(second["run_id"], timeout=60)
        assert feed_server.hits("/news.atom") == 3
        undisturbed = _snapshot()
    except BaseException:
        print(worker.log())
        raise
    finally:
        worker.stop()
        if spare is not None:
            spare.stop()
    assert (run.status, run.trigger, run.sources_total, run.sources_fetched, run.entries_created) == (
        "succeeded", "celery", 2, 2, 8)
    assert disturbed == undisturbed
    assert disturbed["counts"]["Entry"] == 8


@pytest.mark.django_db
def test_a_source_stopped_by_its_time_limit_is_recorded_backed_off_and_released():
    TechnicalArticle.objects.create(name="slow", feed_url="https://slow.example/feed")
    run_id, owner, (source_id,) = ingest_dispatch(trigger="celery")
    result = source_abandon(source_id=source_id, owner=owner, run_id=run_id, reason="The task exceeded its soft time limit of 300 s.")
    assert result.outcome == "failed"
    source = TechnicalArticle.objects.get(pk=source_id)
    assert source.lease_owner == "" and source.consecutive_failures == 1 and "time limit" in source.last_error
    run = IngestRun.objects.get(pk=run_id)
    assert (run.status, run.sources_failed) == ("failed", 1)  # its only source failed: the run is closed now
    # A second delivery of the same task finds the lease gone and does nothing.
    assert source_abandon(source_id=source_id, owner=owner, run_id=run_id, reason="again") is None
    assert IngestRun.objects.get(pk=run_id).sources_failed == 1


@override_settings(DEBUG=True)
def test_a_task_keeps_no_debug_query_log(db):
    """With DJANGO_DEBUG=1 a worker would otherwise hold every statement its tasks sent."""
    reset_queries()
    report = tasks.recompute_counts.run()  # the task's body, in this thread
    assert report["status"] == "succeeded"
    assert connection.queries == []
