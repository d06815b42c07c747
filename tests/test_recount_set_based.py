"""The set-based recount (``ingest.counters.set_based``): exact counts on any graph of comments,
pingbacks and duplicates, one statement per chunk, and no row written when nothing drifted.

Runs on whichever database the pass uses (SQLite, PostgreSQL, MariaDB; tests/conftest.py).
"""

import random
import sqlite3
from datetime import datetime, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import counters
from ingest.models import Comment, Entry, Pingback, TechnicalArticle
from ingest.selectors import counts_scope
from ingest.services.recount import counts_recompute
from tests.helpers import entries_make

NOW = datetime(2026, 11, 20, tzinfo=timezone.utc)
TABLE = Entry._meta.db_table



def stored() -> dict[int, tuple[int, int]]:
    return {pk: (c, p) for pk, c, p in Entry.objects.values_list("pk", "number_of_comments", "number_of_pingbacks")}


def by_hand() -> dict[int, tuple[int, int]]:
    """The counters as the rule defines them, counted in Python from the rows."""
    own: dict[int, int] = {}
    for entry_id in Comment.objects.values_list("entry_id", flat=True):
        own[entry_id] = own.get(entry_id, 0) + 1
    pings: dict[int, int] = {}
    for target_id in Pingback.objects.values_list("target_id", flat=True):
        pings[target_id] = pings.get(target_id, 0) + 1
    canonical = dict(Entry.objects.filter(duplicate_of__isnull=False).values_list("pk", "duplicate_of"))
    comments = dict(own)
    for duplicate, target in canonical.items():
        comments[target] = comments.get(target, 0) + own.get(duplicate, 0)
    return {pk: (comments.get(pk, 0), pings.get(pk, 0)) for pk in Entry.objects.values_list("pk", flat=True)}


@st.composite
def graphs(draw):
    """Two sources' entries, each with 0-3 comments and 0-2 pingbacks, some of them duplicates of an
    earlier canonical entry, and counters drifted at random (too high, too low, or right)."""
    n = draw(st.integers(1, 24))
    entries = []
    for i in range(n):
        canonicals = [j for j, e in enumerate(entries) if e["dup"] is None]
        dup = draw(st.one_of(st.none(), st.sampled_from(canonicals))) if canonicals else None
        entries.append({"source": draw(st.integers(0, 1)), "comments": draw(st.integers(0, 3)),
                        "pingbacks": draw(st.integers(0, 2)), "dup": dup,
                        "drift": draw(st.one_of(st.none(), st.tuples(st.integers(0, 9), st.integers(0, 9))))})
    return {"entries": entries, "chunk": draw(st.integers(1, 9)), "scope": draw(st.sampled_from([None, 0, 1]))}


def build(graph) -> list[TechnicalArticle]:
    sources = [TechnicalArticle.objects.create(name=f"s{k}", feed_url=f"https://s{k}.example/{random.random()}")
               for k in range(2)]
    rows = []
    for i, spec in enumerate(graph["entries"]):
        rows.append(Entry.objects.create(technical_article=sources[spec["source"]], guid=f"g{i}", headline="h",
                                         body_text="", pub_date=NOW.date(), published_at=NOW, content_hash="x"))
    for i, spec in enumerate(graph["entries"]):
        if spec["dup"] is not None:
            Entry.objects.filter(pk=rows[i].pk).update(duplicate_of=rows[spec["dup"]].pk)
        Comment.objects.bulk_create(Comment(entry=rows[i], guid=f"c{i}-{k}") for k in range(spec["comments"]))
        Pingback.objects.bulk_create(Pingback(target=rows[i], source_url=f"https://p.example/{i}/{k}")
                                     for k in range(spec["pingbacks"]))
    true = by_hand()
    for i, spec in enumerate(graph["entries"]):
        c, p = spec["drift"] if spec["drift"] is not None else true[rows[i].pk]
        Entry.objects.filter(pk=rows[i].pk).update(number_of_comments=c, number_of_pingbacks=p)
    return sources


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(graph=graphs())
def test_set_based_counts_exactly_what_range_aggregate_and_a_hand_count_give(graph):
    # Each example starts from empty tables (the run's chunks are transactions of their own, so
    # an example cannot be wrapped in one to roll back).
    Comment.objects.all().delete()
    Pingback.objects.all().delete()
    TechnicalArticle.objects.all().delete()
    sources = build(graph)
    source_ids = [sources[graph["scope"]].pk] if graph["scope"] is not None else []
    scoped = set(counts_scope(source_ids=source_ids).values_list("pk", flat=True))
    before, true = stored(), by_hand()
    wrong = {pk for pk in scoped if before[pk] != true[pk]}

    # The dry runs of both strategies see the same drift and write nothing.
    for reconcile in (counters.set_based, counters.range_aggregate):
        report = counts_recompute(source_ids=source_ids, chunk_size=graph["chunk"], dry_run=True, reconcile=reconcile)
        assert (report.scanned, report.changed) == (len(scoped), len(wrong))
    assert stored() == before

    report = counts_recompute(source_ids=source_ids, chunk_size=graph["chunk"], reconcile=counters.set_based)
    assert (report.scanned, report.changed) == (len(scoped), len(wrong))
    after = stored()
    assert {pk: after[pk] for pk in scoped} == {pk: true[pk] for pk in scoped}  # the hand count
    assert {pk: after[pk] for pk in after if pk not in scoped} == {pk: before[pk] for pk in before if pk not in scoped}
    # range_aggregate finds nothing left to do: the two strategies agree.
    assert counts_recompute(source_ids=source_ids, chunk_size=graph["chunk"], reconcile=counters.range_aggregate).changed == 0


def rows_written() -> int:
    """Rows this session has written, as the database counts them (PostgreSQL: of ingest_entry;
    SQLite and MariaDB count every table's: see ``ledger_writes``)."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT total_changes()")
        elif connection.vendor == "postgresql":
            cursor.execute("SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = %s", [TABLE])
        elif connection.vendor == "mysql":
            cursor.execute("SHOW SESSION STATUS LIKE 'Handler_update'")
            return int(cursor.fetchone()[1])
        else:
            pytest.skip(f"no row counter read on {connection.vendor}")
        return int(cursor.fetchone()[0])


def ledger_writes() -> int:
    """Rows a recount writes besides the counters (its IngestRun): those of a run without chunks."""
    written = rows_written()
    counts_recompute(reconcile=lambda base, **chunk: None)
    return rows_written() - written


def entry_statements(queries) -> list[str]:
    return [q["sql"] for q in queries if TABLE in q["sql"] and not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


@pytest.mark.django_db
def test_one_update_per_drifted_chunk_and_no_row_written_without_drift():
    if not counters.set_based_supported(connection):
        pytest.skip(f"SQLite {sqlite3.sqlite_version} has no UPDATE ... FROM: range_aggregate is used")
    article = TechnicalArticle.objects.create(name="a", feed_url="https://a.example/feed")
    entries = entries_make(50, article)
    Comment.objects.bulk_create(Comment(entry=e, guid=f"c{k}") for e in entries for k in range(e.pk % 3))
    Pingback.objects.bulk_create(Pingback(target=e, source_url="https://p.example/") for e in entries[::4])
    Entry.objects.filter(pk=entries[12].pk).update(duplicate_of=entries[3].pk)
    counts_recompute()  # right, then made wrong
    Entry.objects.filter(pk__in=[e.pk for e in entries[:20]]).update(number_of_comments=7)  # chunks 1 and 2 drift

    ledger = ledger_writes()
    written = rows_written()
    with CaptureQueriesContext(connection) as queries:
        report = counts_recompute(chunk_size=10)
    assert (report.chunks, report.scanned, report.changed) == (5, 50, 20)
    assert stored() == by_hand()
    assert rows_written() - written == 20 + ledger
    statements = entry_statements(queries)
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    # Per chunk: the keyset bounds read and one set-based UPDATE (and a last read that finds the
    # walk over); nothing else touches the table.
    assert len(statements) == 2 * 5 + 1 and len(updates) == 5, statements
    assert all("GROUP BY" in s and "COUNT(" in s.upper() for s in updates)
    assert "OFFSET" not in " ".join(statements).upper()

    stamps = dict(Entry.objects.values_list("pk", "updated_at"))
    written = rows_written()
    with CaptureQueriesContext(connection) as queries:
        report = counts_recompute(chunk_size=10)
    assert (report.chunks, report.changed) == (5, 0)
    assert rows_written() - written == ledger  # the UPDATEs matched no row: no counter written
    assert dict(Entry.objects.values_list("pk", "updated_at")) == stamps
    assert len(entry_statements(queries)) == 2 * 5 + 1


@pytest.mark.django_db
def test_dry_run_is_one_count_per_chunk_and_writes_nothing():
    article = TechnicalArticle.objects.create(name="a", feed_url="https://a.example/feed")
    entries = entries_make(30, article)
    Comment.objects.bulk_create(Comment(entry=e, guid="c") for e in entries)  # every counter is 0: all drifted
    written = rows_written()  # a dry run records no run
    with CaptureQueriesContext(connection) as queries:
        report = counts_recompute(chunk_size=10, dry_run=True)
    assert (report.scanned, report.changed) == (30, 30)
    assert rows_written() == written
    if counters.set_based_supported(connection):
        statements = entry_statements(queries)
        assert len(statements) == 2 * 3 + 1 and not any(s.lstrip().upper().startswith("UPDATE") for s in statements)


@pytest.mark.django_db
def test_sqlite_before_3_33_reconciles_with_range_aggregate(monkeypatch):
    if connection.vendor != "sqlite":
        pytest.skip("the fallback is SQLite's")
    assert counters.STRATEGY == "set_based"
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 32, 3))  # as an old SQLite reports itself
    article = TechnicalArticle.objects.create(name="a", feed_url="https://a.example/feed")
    entries = entries_make(12, article)
    Comment.objects.bulk_create(Comment(entry=e, guid="c") for e in entries)
    with CaptureQueriesContext(connection) as queries:
        report = counts_recompute(chunk_size=5)
    assert (report.chunks, report.changed) == (3, 12) and stored() == by_hand()
    updates = [s for s in entry_statements(queries) if s.lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 3 and not any(" FROM (" in s.split(" WHERE ")[0] for s in updates)
