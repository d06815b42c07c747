"""``manage.py ingest_feeds`` end to end: a real HTTP server on 127.0.0.1, the real database."""

import json
import logging
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, reset_queries
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest.db import no_query_log
from ingest.models import Entry, IngestRun, TechnicalArticle
from ingest.services.fetch_parse import POOL_MIN_BYTES
from ingest.services.ingest import feeds_ingest
from ingest.services.sources import source_add
from tests.helpers import generate_feeds, ingest

DATA = Path(__file__).parent / "data" / "feeds"
BLOG = (DATA / "blog.rss").read_bytes()
NEWS = (DATA / "news.atom").read_bytes()


def source(server, path, **kwargs) -> TechnicalArticle:
    article, _ = source_add(url=server.url(path), **kwargs)
    return article


def entry_writes(queries) -> list[str]:
    table = Entry._meta.db_table
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and table in q["sql"]]


@pytest.fixture
def two_sources(db, feed_server):
    feed_server.add("/blog.rss", BLOG, etag='"v1"', last_modified="Mon, 01 Jun 2026 10:00:00 GMT")
    feed_server.add("/news.atom", NEWS, content_type="application/atom+xml")
    return source(feed_server, "/blog.rss"), source(feed_server, "/news.atom")


def test_first_run_creates_entries_and_records_the_run(two_sources):
    blog, news = two_sources
    report = ingest()
    assert report["status"] == "succeeded"
    assert report["totals"] == {"sources": 2, "created": 8, "updated": 0, "unchanged": 0, "not_modified": 0, "failed": 0,
                                "internal_errors": 0, "pingbacks": 0, "deferred": 0, "bot_walls": 0, "same_body": 0}
    assert {s["url"]: s["outcome"] for s in report["sources"]} == {blog.feed_url: "created", news.feed_url: "created"}
    run = IngestRun.objects.get(pk=report["run_id"])
    assert (run.command, run.trigger, run.status, run.entries_created) == ("ingest_feeds", "manual", "succeeded", 8)
    assert run.finished_at is not None
    blog.refresh_from_db()
    assert blog.etag == '"v1"' and blog.name == "Example Engineering Blog"
    assert blog.next_fetch_at > timezone.now() and blog.lease_owner == ""
    headline = Entry.objects.get(guid="tag:news.example,2026:1").headline
    assert headline == "Release 1 notes"
    assert "<script" not in Entry.objects.get(guid="tag:news.example,2026:1").body_text


def test_second_run_is_not_modified_or_unchanged_and_writes_no_entries(two_sources, feed_server):
    ingest()
    with CaptureQueriesContext(connection) as queries:
        report = ingest("--all")
    outcomes = {s["url"].rsplit("/", 1)[1]: s["outcome"] for s in report["sources"]}
    assert outcomes == {"blog.rss": "not_modified", "news.atom": "unchanged"}
    assert report["totals"]["unchanged"] == 3 and report["totals"]["not_modified"] == 1
    assert entry_writes(queries) == []
    conditional = [r for r in feed_server.requests if r.path == "/blog.rss"][-1]
    assert conditional.headers.get("if-none-match") == '"v1"'


def test_schedule_skips_sources_that_are_not_due(two_sources):
    ingest()
    report = ingest()
    assert report["totals"]["sources"] == 0


def test_changed_feed_updates_only_changed_entries(db, feed_server):
    feed_server.add_sequence("/blog.rss", [dict(body=BLOG), dict(body=(DATA / "blog-changed.rss").read_bytes())])
    source(feed_server, "/blog.rss")
    ingest()
    report = ingest("--all")
    assert report["totals"] == {"sources": 1, "created": 1, "updated": 1, "unchanged": 4, "not_modified": 0, "failed": 0,
                                "internal_errors": 0, "pingbacks": 0, "deferred": 0, "bot_walls": 0, "same_body": 0}
    assert "revised" in Entry.objects.get(guid="blog-example-2").body_text
    assert list(Entry.objects.get(guid="blog-example-6").authors.values_list("name", flat=True)) == ["Edsger Dijkstra"]


def test_failing_source_is_reported_backed_off_and_does_not_stop_others(db, feed_server):
    feed_server.add("/blog.rss", BLOG)
    feed_server.add("/broken", b"oops", status=500)
    good, bad = source(feed_server, "/blog.rss"), source(feed_server, "/broken")
    report = ingest()
    by_id = {s["id"]: s for s in report["sources"]}
    assert by_id[good.pk]["outcome"] == "created"
    assert by_id[bad.pk]["outcome"] == "failed" and "500" in by_id[bad.pk]["error"]
    assert report["status"] == "partial"
    bad.refresh_from_db()
    assert bad.consecutive_failures == 1 and "500" in bad.last_error
    assert bad.next_fetch_at > timezone.now() + timedelta(seconds=200)
    run = IngestRun.objects.get(pk=report["run_id"])
    assert run.sources_failed == 1 and run.status == "partial" and "500" in run.error


def test_gone_source_is_deactivated_with_the_reason(db, feed_server):
    feed_server.add("/gone", b"", status=410)
    gone = source(feed_server, "/gone")
    ingest()
    gone.refresh_from_db()
    assert gone.active is False and "410" in gone.last_error


def test_retry_after_is_honoured(db, feed_server):
    feed_server.add("/busy", b"", status=429, headers={"Retry-After": "7200"})
    busy = source(feed_server, "/busy")
    ingest()
    busy.refresh_from_db()
    assert busy.next_fetch_at >= timezone.now() + timedelta(seconds=7000)


def test_permanent_redirect_updates_the_stored_url(db, feed_server):
    feed_server.add("/new.rss", BLOG)
    feed_server.redirect("/old.rss", "/new.rss", status=301)
    moved = source(feed_server, "/old.rss")
    report = ingest()
    assert report["sources"][0]["outcome"] == "created"
    moved.refresh_from_db()
    assert moved.feed_url == feed_server.url("/new.rss")


def test_dry_run_reports_and_writes_nothing(two_sources):
    report = ingest("--dry-run")
    assert report["dry_run"] is True and report["run_id"] is None
    assert report["totals"]["created"] == 8
    assert Entry.objects.count() == 0 and IngestRun.objects.count() == 0
    assert TechnicalArticle.objects.filter(etag="").count() == 2


def test_source_option_by_id_and_url_and_trigger(two_sources):
    blog, news = two_sources
    report = ingest("--source", str(blog.pk), "--source", news.feed_url, "--trigger", "cron")
    assert report["totals"]["sources"] == 2
    assert IngestRun.objects.get(pk=report["run_id"]).trigger == "cron"


def test_a_source_leased_by_another_run_is_skipped(two_sources):
    blog, news = two_sources
    TechnicalArticle.objects.filter(pk=blog.pk).update(lease_owner="other-run", lease_expires_at=timezone.now() + timedelta(minutes=5))
    report = ingest()
    assert [s["id"] for s in report["sources"]] == [news.pk]
    assert report["skipped_leased"] == 1
    # An expired lease (its run died) is taken over.
    TechnicalArticle.objects.filter(pk=blog.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert [s["id"] for s in ingest()["sources"]] == [blog.pk]


def test_human_summary_lists_sources_and_totals(two_sources):
    out = StringIO()
    call_command("ingest_feeds", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "Example Engineering Blog" in text and "created" in text
    assert "2 sources, 8 new, 0 updated, 0 unchanged, 0 not modified, 0 failed" in text
    assert "\r" not in text  # no progress bar when not on a terminal


@pytest.mark.parametrize("args, message", [
    (["--workers", "0"], "--workers"),
    (["--source", "999999"], "No source matches"),
    (["--source", "https://nowhere.example/feed"], "No source matches"),
])
def test_bad_arguments_are_one_sentence_errors(db, args, message):
    with pytest.raises(CommandError, match=message) as info:
        call_command("ingest_feeds", *args, stdout=StringIO())
    assert info.value.returncode == 2


def test_unknown_trigger_is_rejected(db):
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("ingest_feeds", "--trigger", "nightly", stdout=StringIO())


@pytest.mark.nodb
@pytest.mark.parametrize("command", ["ingest_feeds", "recompute_counts"])
def test_unreachable_database_is_exit_1_with_one_sentence_and_json(command):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1",
           "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nowhere", "DB_RETRY_ATTEMPTS": "1"}
    result = subprocess.run([sys.executable, "manage.py", command, "--json"], cwd=root, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "failed"
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("CommandError: The database is unreachable")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_run_whose_lease_was_taken_over_writes_nothing(two_sources, monkeypatch):
    """If a lease expires mid-run and another run claims the source, the first run must not commit."""
    from ingest.services import ingest as services

    blog, _ = two_sources
    real_store = services.source_store

    def steal_then_store(*, source, **kwargs):
        if source.pk == blog.pk:
            TechnicalArticle.objects.filter(pk=blog.pk).update(lease_owner="another-run")
        return real_store(source=source, **kwargs)

    monkeypatch.setattr(services, "source_store", steal_then_store)
    report = ingest()
    blog_result = next(s for s in report["sources"] if s["id"] == blog.pk)
    assert blog_result["outcome"] == "failed" and "another run" in blog_result["error"]
    assert not Entry.objects.filter(technical_article=blog).exists()
    assert TechnicalArticle.objects.get(pk=blog.pk).lease_owner == "another-run"


@override_settings(DEBUG=True)
def test_with_debug_on_a_run_of_many_feeds_keeps_no_query_log(db, feed_server):
    feeds, _ = generate_feeds(30, 20)
    for path, body in feeds.items():
        feed_server.add(path, body)
        source(feed_server, path)
    reset_queries()
    report = ingest()
    assert report["totals"]["sources"] == 30 and report["totals"]["created"] == 600
    assert connection.queries == []  # DEBUG alone would have kept every statement of the run
    with no_query_log(), CaptureQueriesContext(connection) as queries:  # asked for explicitly: still counted
        Entry.objects.count()
        TechnicalArticle.objects.count()
    assert len(queries) == 2
    reset_queries()
    Entry.objects.count()  # past the run, DEBUG logs again
    assert len(connection.queries) == 1


@override_settings(INGEST_PARSE_PROCESSES=1)
def test_parse_processes_start_only_for_large_bodies(db, feed_server, caplog):
    """Small feeds are parsed in the fetch threads: a run of them starts no process; a large body does."""
    feeds, unique = generate_feeds(9, 10)
    for path, body in feeds.items():
        feed_server.add(path, body)
        source(feed_server, path)
    caplog.set_level(logging.DEBUG, logger="ingest.parsepool")
    assert feeds_ingest(force=True).totals["created"] == sum(len(guids) for guids in unique.values())
    assert [r for r in caplog.records if r.getMessage() == "parse process started"] == []

    big, big_unique = generate_feeds(1, 1200, seed=8)
    [(path, body)] = big.items()
    assert len(body) >= POOL_MIN_BYTES
    feed_server.add("/big.xml", body)
    source(feed_server, "/big.xml")
    report = feeds_ingest(force=True)
    assert report.totals["created"] == len(big_unique[path]) and report.totals["failed"] == 0
    assert len([r for r in caplog.records if r.getMessage() == "parse process started"]) == 1
