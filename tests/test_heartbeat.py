"""Heartbeats (ingest.services.heartbeat): a loopback receiver stands in for the cron monitor, real
runs of ``ingest_feeds`` and of the Celery fan-out's services ping it, or do not."""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import pytest
from django.db import connections

from ingest.models import IngestRun, TechnicalArticle
from ingest.services.fanout import ingest_dispatch, source_ingest
from ingest.services.sources import source_add
from tests.helpers import ingest
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)  # pings go out on commit: real commits

DATA = Path(__file__).parent / "data" / "feeds"
BLOG = (DATA / "blog.rss").read_bytes()
NEWS = (DATA / "news.atom").read_bytes()


@pytest.fixture
def monitor(settings):
    with Receiver() as receiver:
        settings.PIPELINE_HEARTBEAT_URL = receiver.url("/ping/check-1")
        settings.PIPELINE_HEARTBEAT_FAIL_URL = ""
        yield receiver


def pings(receiver, path="/ping/check-1"):
    return [r for r in receiver.received if r.path == path]


def heartbeat_warnings(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING and r.getMessage().startswith("heartbeat")]


def test_a_successful_run_pings_once_with_its_summary(monitor, feed_server):
    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    report = ingest()
    assert report["status"] == "succeeded"
    [ping] = pings(monitor)
    assert ping.headers["content-type"] == "application/json"
    body = ping.json()
    assert {k: body[k] for k in ("command", "run_id", "status", "trigger")} == {
        "command": "ingest_feeds", "run_id": report["run_id"], "status": "succeeded", "trigger": "manual"}
    assert body["counts"]["sources_total"] == 1 and body["counts"]["entries_created"] == report["totals"]["created"] > 0
    assert body["counts"]["sources_failed"] == 0


def test_a_failed_run_does_not_ping_success_and_pings_the_fail_url_when_set(monitor, feed_server, settings):
    feed_server.add("/down.rss", b"down", status=500)
    TechnicalArticle.objects.create(name="down", feed_url=feed_server.url("/down.rss"))
    assert ingest()["status"] == "failed"
    assert pings(monitor) == []
    settings.PIPELINE_HEARTBEAT_FAIL_URL = monitor.url("/ping/check-1/fail")
    report = ingest("--all")
    assert report["status"] == "failed" and pings(monitor) == []
    [fail] = pings(monitor, "/ping/check-1/fail")
    assert fail.json()["status"] == "failed" and fail.json()["run_id"] == report["run_id"]
    assert "500" in fail.json()["error"]


def test_a_partial_run_pings_success_with_status_partial(monitor, feed_server):
    feed_server.add("/blog.rss", BLOG)
    feed_server.add("/down.rss", b"down", status=500)
    source_add(url=feed_server.url("/blog.rss"))
    TechnicalArticle.objects.create(name="down", feed_url=feed_server.url("/down.rss"))
    assert ingest()["status"] == "partial"
    [ping] = pings(monitor)
    assert ping.json()["status"] == "partial" and ping.json()["counts"]["sources_failed"] == 1


def test_a_monitor_that_hangs_delays_the_run_by_the_timeout_at_most(feed_server, settings, caplog):
    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    with Receiver(hang=20) as hung:
        settings.PIPELINE_HEARTBEAT_URL = hung.url("/ping/slow")
        settings.PIPELINE_HEARTBEAT_TIMEOUT = 0.5
        started = time.monotonic()
        report = ingest()
        elapsed = time.monotonic() - started
    assert report["status"] == "succeeded" and len(hung.received) == 1
    assert elapsed < 5, f"the run took {elapsed:.1f} s behind a monitor that never answers"
    [warning] = heartbeat_warnings(caplog)
    assert warning.getMessage() == "heartbeat not sent" and "Timeout" in warning.error
    assert "/ping/slow" not in warning.error and warning.host == "127.0.0.1"  # the check's key stays out of logs


def test_an_unreachable_monitor_is_one_warning_and_the_run_stands(feed_server, settings, caplog):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    settings.PIPELINE_HEARTBEAT_URL = f"http://127.0.0.1:{closed}/ping"
    report = ingest()
    assert report["status"] == "succeeded"
    assert IngestRun.objects.get(pk=report["run_id"]).status == "succeeded"
    [warning] = heartbeat_warnings(caplog)
    assert "ConnectError" in warning.error


def test_a_monitor_that_refuses_is_one_warning(feed_server, settings, caplog):
    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    with Receiver(status=404) as refusing:
        settings.PIPELINE_HEARTBEAT_URL = refusing.url("/ping/gone")
        assert ingest()["status"] == "succeeded"
    [warning] = heartbeat_warnings(caplog)
    assert warning.getMessage() == "heartbeat refused" and warning.http_status == 404


def test_unset_sends_nothing(feed_server, settings):
    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    with Receiver() as receiver:
        settings.PIPELINE_HEARTBEAT_URL = ""
        assert ingest()["status"] == "succeeded"
        assert ingest("--all")["status"] == "succeeded"
    assert receiver.received == []


def test_a_fanned_out_run_pings_once_after_its_last_source_is_committed(feed_server, settings):
    feed_server.add("/blog.rss", BLOG)
    feed_server.add("/news.atom", NEWS, content_type="application/atom+xml")
    a, _ = source_add(url=feed_server.url("/blog.rss"))
    b, _ = source_add(url=feed_server.url("/news.atom"))

    def run_as_committed(got):  # read by the receiver's thread, on its own database connection
        try:
            return IngestRun.objects.get(pk=got.json()["run_id"]).status
        finally:
            connections.close_all()

    with Receiver(on_receive=run_as_committed) as receiver:
        settings.PIPELINE_HEARTBEAT_URL = receiver.url("/ping/fanout")
        run_id, owner, claimed = ingest_dispatch(source_ids=[a.pk, b.pk])
        source_ingest(source_id=claimed[0], owner=owner, run_id=run_id)
        assert receiver.received == []  # one source still to report: the run is not over
        source_ingest(source_id=claimed[1], owner=owner, run_id=run_id)
        source_ingest(source_id=claimed[1], owner=owner, run_id=run_id)  # a redelivery: no second ping
    [ping] = receiver.received
    assert ping.json()["run_id"] == run_id and ping.json()["trigger"] == "celery"
    assert receiver.seen == [IngestRun.objects.get(pk=run_id).status]  # committed before the ping left
    assert receiver.seen[0] in ("succeeded", "partial")


def test_an_idle_tick_pings_success(settings):
    with Receiver() as receiver:
        settings.PIPELINE_HEARTBEAT_URL = receiver.url("/ping/idle")
        assert ingest_dispatch() == (None, "", [])
    [ping] = receiver.received
    assert ping.json()["status"] == "idle" and ping.json()["run_id"] is None


def test_the_azure_timer_pings_like_the_command(monitor, feed_server):
    from types import SimpleNamespace

    from functions_app.runner import command_run

    feed_server.add("/blog.rss", BLOG)
    source_add(url=feed_server.url("/blog.rss"))
    report = command_run("ingest_feeds", SimpleNamespace(past_due=False, schedule_status={}))
    [ping] = pings(monitor)
    assert ping.json()["run_id"] == report["run_id"] and ping.json()["trigger"] == "azure"
    assert ping.json()["status"] == "succeeded"
