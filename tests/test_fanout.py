"""The Celery fan-out's services (ingest.services.fanout) without a broker: the dispatcher claims,
each source is ingested as its task would be, and the run ledger ends up as an in-process run's."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone

from ingest.models import Comment, IdleTick, IngestRun, TechnicalArticle
from ingest.services.fanout import ingest_dispatch, source_ingest
from tests.helpers import serve_wordpress


def test_a_fanned_out_run_counts_its_comment_feeds_and_records_the_same_stats_as_a_local_run(db, feed_server, settings):
    settings.INGEST_COMMENTS_DAYS = 36500  # the sample posts are dated 2026-11
    wp = serve_wordpress(feed_server)
    feed_server.add("/broken.rss", b"nope", status=500)
    broken = TechnicalArticle.objects.create(name="broken", feed_url=feed_server.url("/broken.rss"))

    run_id, owner, claimed = ingest_dispatch(source_ids=[wp.pk, broken.pk])
    assert sorted(claimed) == sorted([wp.pk, broken.pk])
    results = {pk: source_ingest(source_id=pk, owner=owner, run_id=run_id) for pk in claimed}
    assert results[wp.pk].outcome == "created" and results[broken.pk].outcome == "failed"
    assert source_ingest(source_id=wp.pk, owner=owner, run_id=run_id) is None  # a redelivery does nothing

    run = IngestRun.objects.get(pk=run_id)
    assert (run.status, run.sources_total, run.sources_fetched, run.sources_failed) == ("partial", 2, 1, 1)
    assert run.stats["comments"] == {"feeds": 2, "created": 3, "updated": 0, "not_modified": 0, "failed": 0, "deferred": 0, "same_body": 0}
    assert Comment.objects.count() == 3
    assert sorted(s["id"] for s in run.stats["sources"]) == sorted([wp.pk, broken.pk])
    assert [s["outcome"] for s in run.stats["sources"] if s["id"] == broken.pk] == ["failed"]

    out = StringIO()
    call_command("ingest_feeds", "--json", "--source", str(wp.pk), stdout=out, stderr=StringIO())
    local = IngestRun.objects.get(pk=json.loads(out.getvalue())["run_id"])
    assert set(local.stats) == set(run.stats) == {"retries", "skipped_leased", "comments", "sources"}
    assert set(local.stats["comments"]) == set(run.stats["comments"])


def test_a_dispatch_with_nothing_due_records_no_run_and_counts_an_idle_tick(db):
    assert ingest_dispatch() == (None, "", [])
    assert ingest_dispatch() == (None, "", [])
    assert IngestRun.objects.count() == 0
    tick = IdleTick.objects.get(command="ingest_feeds")
    assert tick.idle_ticks == 2 and tick.last_idle_at is not None


def test_a_dispatch_whose_due_sources_are_all_leased_is_a_succeeded_run_with_the_same_stats_keys(db):
    TechnicalArticle.objects.create(name="held", feed_url="http://feeds.example/held.rss", lease_owner="elsewhere",
                                    lease_expires_at=timezone.now() + timedelta(minutes=5))
    run_id, _, claimed = ingest_dispatch()
    run = IngestRun.objects.get(pk=run_id)
    assert claimed == [] and run.status == "succeeded"
    assert run.stats == {"retries": 0, "skipped_leased": 1, "sources": [],
                         "comments": {"feeds": 0, "created": 0, "updated": 0, "not_modified": 0, "failed": 0, "deferred": 0, "same_body": 0}}
    assert not IdleTick.objects.exists()
