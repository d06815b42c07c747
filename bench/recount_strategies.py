"""The ways of reconciling one chunk of counters that ``ingest.counters`` was chosen from. Bench-only.

Each is a ``reconcile`` for ``ingest.services.counts_recompute(reconcile=...)``: the signature and
result of ``ingest.counters.chunk_reconcile(base, *, after, size, dry_run)``, and, like it, an
asynchronous commit on PostgreSQL, so that a benchmark compares the statements and nothing else.
Every strategy touches only entries whose stored counter differs:

* ``update_subquery``: read the chunk's ids, then one UPDATE whose WHERE and SET both use
  correlated ``Subquery(Count)`` expressions;
* ``read_bulk_update``: a range-aggregate read of the chunk's counts, then ``bulk_update`` of the
  drifted rows with the values read;
* ``annotated_read``: one keyset read that returns stored and true counts side by side, then one
  UPDATE of the drifted rows only (no write at all when nothing drifted);
* ``range_aggregate``: the range-aggregate read of the second, then the drifted-only UPDATE of the
  third (``ingest.counters.range_aggregate``: the product's fallback where ``set_based`` has no
  statement);
* ``set_based``: one ``UPDATE ... FROM (SELECT ... GROUP BY)`` per chunk in the database's dialect
  that writes only the drifted rows: the product's own ``chunk_reconcile``, kept
  (``ingest.counters.STRATEGY``).

``bench/recount.py`` measures them all on PostgreSQL; ``tests/mssql/capture.py`` records the T-SQL
of each for the SQL Server contract; ``tests/test_recompute_counts.py`` checks each one's result.
"""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from ingest import counters
from ingest.counters import ChunkResult, count_of, counts_set, keyset, range_read
from ingest.db import commit_asynchronously
from ingest.models import Comment, Entry, Pingback


def update_subquery(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Read the chunk's ids, then one UPDATE whose WHERE and SET both use correlated counts."""
    if not dry_run:
        commit_asynchronously()
    ids = list(keyset(base, after, size).values_list("pk", flat=True)[:size])
    if not ids:
        return None
    drifted = (
        Entry.objects.filter(pk__in=ids)
        .alias(c=count_of(Comment, "entry"), p=count_of(Pingback, "target"))
        .filter(~Q(number_of_comments=F("c")) | ~Q(number_of_pingbacks=F("p")))
    )
    if dry_run:
        return ChunkResult(len(ids), drifted.count(), ids[-1])
    changed = drifted.update(number_of_comments=count_of(Comment, "entry"), number_of_pingbacks=count_of(Pingback, "target"))
    return ChunkResult(len(ids), changed, ids[-1])


def read_bulk_update(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Range-aggregate read, then ``bulk_update`` of the drifted rows with the values read."""
    if not dry_run:
        commit_asynchronously()
    rows, comments, pingbacks = range_read(base, after, size)
    if not rows:
        return None
    drifted = [
        Entry(pk=pk, number_of_comments=comments.get(pk, 0), number_of_pingbacks=pingbacks.get(pk, 0))
        for pk, stored_c, stored_p in rows
        if stored_c != comments.get(pk, 0) or stored_p != pingbacks.get(pk, 0)
    ]
    if drifted and not dry_run:
        Entry.objects.bulk_update(drifted, ["number_of_comments", "number_of_pingbacks"], batch_size=len(drifted))
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


def annotated_read(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """One keyset read returns each entry's stored and true counts; one UPDATE of the drifted rows
    recomputes them at write time, so a comment committed in between is not lost."""
    if not dry_run:
        commit_asynchronously()
    rows = list(
        keyset(base, after, size)
        .annotate(c=count_of(Comment, "entry"), p=count_of(Pingback, "target"))
        .values_list("pk", "number_of_comments", "number_of_pingbacks", "c", "p")[:size]
    )
    if not rows:
        return None
    drifted = [pk for pk, stored_c, stored_p, c, p in rows if stored_c != c or stored_p != p]
    if drifted and not dry_run:
        counts_set(drifted)
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


STRATEGIES = {
    "update_subquery": update_subquery,
    "read_bulk_update": read_bulk_update,
    "annotated_read": annotated_read,
    "range_aggregate": counters.range_aggregate,
    counters.STRATEGY: counters.chunk_reconcile,
}
ALTERNATIVES = {name: fn for name, fn in STRATEGIES.items() if name != counters.STRATEGY}
