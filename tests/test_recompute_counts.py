"""``recompute_counts``: counters equal the Comment and Pingback rows, chunked and set-based."""

import json
import random
import threading
from datetime import datetime, timezone
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from bench import recount_strategies
from ingest import counters
from ingest.models import Comment, Entry, IngestRun, Pingback, TechnicalArticle
from tests.helpers import entries_make, postgres_only, serve_wordpress


def recount(*args) -> dict:
    out = StringIO()
    call_command("recompute_counts", "--json", *args, stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())



def true_counts() -> dict[int, tuple[int, int]]:
    return {e.pk: (e.comments.count(), e.pingbacks.count()) for e in Entry.objects.all()}


def stored_counts() -> dict[int, tuple[int, int]]:
    return {pk: (c, p) for pk, c, p in Entry.objects.values_list("pk", "number_of_comments", "number_of_pingbacks")}


@pytest.fixture
def drifted(db):
    rng = random.Random(7)
    entries = entries_make(60)
    Comment.objects.bulk_create(Comment(entry=e, guid=f"c{e.pk}-{k}") for e in entries for k in range(rng.randrange(4)))
    Pingback.objects.bulk_create(
        Pingback(target=e, source_url=f"https://src.example/{k}") for e in entries for k in range(rng.randrange(3))
    )
    for e in rng.sample(entries, 25):  # counters drift: some too high, some too low
        Entry.objects.filter(pk=e.pk).update(number_of_comments=rng.randrange(10), number_of_pingbacks=rng.randrange(10))
    return entries


@pytest.mark.parametrize("strategy", ["read_bulk_update", "update_subquery", "annotated_read", "range_aggregate", "set_based"])
def test_recompute_fixes_every_drifted_counter_then_changes_nothing(drifted, monkeypatch, strategy):
    monkeypatch.setattr(counters, "chunk_reconcile", recount_strategies.STRATEGIES[strategy])
    wrong = sum(1 for pk, v in stored_counts().items() if v != true_counts()[pk])
    assert wrong > 0
    first = recount("--chunk-size", "7")
    assert first["status"] == "succeeded" and first["scanned"] == 60 and first["changed"] == wrong
    assert first["chunks"] == 9  # ceil(60 / 7)
    assert stored_counts() == true_counts()
    second = recount()
    assert second["changed"] == 0
    run = IngestRun.objects.get(pk=first["run_id"])
    assert (run.command, run.trigger, run.status) == ("recompute_counts", "manual", "succeeded")


def test_dry_run_reports_the_drift_and_writes_nothing(drifted):
    before = stored_counts()
    wrong = sum(1 for pk, v in before.items() if v != true_counts()[pk])
    report = recount("--dry-run")
    assert report["changed"] == wrong and report["run_id"] is None
    assert stored_counts() == before and not IngestRun.objects.exists()


def test_scope_by_entry_source_and_since(drifted):
    target = drifted[0]
    Entry.objects.filter(pk=target.pk).update(number_of_comments=99)
    assert recount("--entry", str(target.pk))["scanned"] == 1
    assert Entry.objects.get(pk=target.pk).number_of_comments == target.comments.count()

    other = TechnicalArticle.objects.create(name="other", feed_url="https://other.example/feed")
    lone = entries_make(3, other)
    Entry.objects.filter(pk=lone[0].pk).update(number_of_comments=5)
    report = recount("--source", str(other.pk))
    assert (report["scanned"], report["changed"]) == (3, 1)

    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    Comment.objects.update(created_at=old)
    Pingback.objects.update(created_at=old)
    Comment.objects.create(entry=lone[1], guid="fresh")
    report = recount("--since", "2026-01-01")
    assert report["scanned"] == 1 and Entry.objects.get(pk=lone[1].pk).number_of_comments == 1


def test_statements_per_chunk_are_bounded_and_no_update_exceeds_the_chunk(db):
    entries = entries_make(50)
    Comment.objects.bulk_create(Comment(entry=e, guid="c") for e in entries)
    with CaptureQueriesContext(connection) as queries:
        report = recount("--chunk-size", "10")
    assert report["chunks"] == 5 and report["changed"] == 50
    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN"))]
    # Per chunk: the keyset read, two aggregate reads, at most one UPDATE, and on PostgreSQL the
    # SET LOCAL that makes the chunk commit asynchronously; plus run bookkeeping.
    assert len(statements) <= 5 * 5 + 6, len(statements)
    assert "OFFSET" not in " ".join(statements).upper()
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE") and Entry._meta.db_table in s.split("SET")[0]]
    assert len(updates) == 5
    assert all(s.count("WHEN") <= 2 * 10 for s in updates)  # each row appears once per counter


@pytest.mark.parametrize("args, message", [
    (["--chunk-size", "0"], "--chunk-size"),
    (["--chunk-size", "100000"], "--chunk-size"),
    (["--since", "yesterday"], "--since"),
    (["--source", "404"], "No source matches"),
])
def test_bad_arguments(db, args, message):
    with pytest.raises(CommandError, match=message) as info:
        call_command("recompute_counts", *args, stdout=StringIO())
    assert info.value.returncode == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_recompute_beside_concurrent_comment_writers_and_ingest_loses_nothing(feed_server, settings):
    settings.INGEST_COMMENTS_DAYS = 36500
    serve_wordpress(feed_server)
    entries = entries_make(400)
    stop = threading.Event()
    errors = []

    def ingester():
        try:
            for _ in range(3):
                call_command("ingest_feeds", "--all", "--json", stdout=StringIO(), stderr=StringIO())
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def writer(seed):
        rng = random.Random(seed)
        try:
            n = 0
            while not stop.is_set():
                entry = rng.choice(entries)
                Comment.objects.create(entry_id=entry.pk, guid=f"w{seed}-{n}")
                n += 1
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(2)] + [threading.Thread(target=ingester)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            recount("--chunk-size", "50")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    recount()  # the run after the writers stop catches whatever the concurrent runs could not see
    assert stored_counts() == true_counts()
    assert Comment.objects.filter(guid__startswith="https://indexing.example").count() == 3  # the ingested ones
    assert Pingback.objects.count() == 1
