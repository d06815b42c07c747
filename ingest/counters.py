"""Denormalized counters: ``Entry.number_of_comments`` / ``number_of_pingbacks`` from their rows.

ORM only. Two ways to reconcile one chunk of entries, both touching only entries whose stored
counter differs:

* ``chunk_update_subquery``: one UPDATE with correlated ``Subquery(Count)`` expressions;
* ``chunk_read_bulk_update``: an aggregate read of the chunk's counts, then ``bulk_update`` of
  the drifted rows only;
* ``chunk_annotated_read``: one keyset read that returns stored and true counts side by side,
  then one UPDATE of the drifted rows only (no write at all when nothing drifted);
* ``chunk_range_aggregate``: the range-aggregate read of the second, then the drifted-only
  UPDATE of the third.

``bench/recount.py`` measures both on PostgreSQL; ``STRATEGY`` names the one kept and
docs/benchmarks.md has the numbers. Chunks carry at most ``MAX_CHUNK`` ids (an IN list stays far
below SQL Server's 2,100 parameters, and an UPDATE below its ~5,000-lock escalation threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from ingest.db import commit_asynchronously
from ingest.models import Comment, Entry, Pingback

MAX_CHUNK = 2000


@dataclass(frozen=True)
class ChunkResult:
    scanned: int
    changed: int
    last_pk: int  # the keyset cursor: the next chunk starts after it


def _count_of(model, fk: str) -> Coalesce:
    counted = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _keyset(base: QuerySet, after: int, size: int) -> QuerySet:
    """Keyset pagination: the next ``size`` entries with a primary key above ``after`` (no OFFSET)."""
    return base.filter(pk__gt=after).order_by("pk")


def _set_counts(ids: Sequence[int]) -> int:
    return Entry.objects.filter(pk__in=ids).update(
        number_of_comments=_count_of(Comment, "entry"), number_of_pingbacks=_count_of(Pingback, "target")
    )


def chunk_update_subquery(base: QuerySet, after: int, size: int, dry_run: bool) -> ChunkResult | None:
    """Read the chunk's ids, then one UPDATE whose WHERE and SET both use correlated counts."""
    ids = list(_keyset(base, after, size).values_list("pk", flat=True)[:size])
    if not ids:
        return None
    drifted = (
        Entry.objects.filter(pk__in=ids)
        .alias(c=_count_of(Comment, "entry"), p=_count_of(Pingback, "target"))
        .filter(~Q(number_of_comments=F("c")) | ~Q(number_of_pingbacks=F("p")))
    )
    if dry_run:
        return ChunkResult(len(ids), drifted.count(), ids[-1])
    changed = drifted.update(number_of_comments=_count_of(Comment, "entry"), number_of_pingbacks=_count_of(Pingback, "target"))
    return ChunkResult(len(ids), changed, ids[-1])


def _range_read(base: QuerySet, after: int, size: int) -> tuple[list[tuple[int, int, int]], dict[int, int], dict[int, int]]:
    """The chunk's (id, stored comments, stored pingbacks) and its true counts from two range
    aggregates (one index range scan each, rather than one probe per entry)."""
    rows = list(_keyset(base, after, size).values_list("pk", "number_of_comments", "number_of_pingbacks")[:size])
    if not rows:
        return rows, {}, {}
    lo, hi = rows[0][0], rows[-1][0]
    comments = dict(Comment.objects.filter(entry_id__gte=lo, entry_id__lte=hi).order_by().values_list("entry_id").annotate(n=Count("pk")))
    pingbacks = dict(Pingback.objects.filter(target_id__gte=lo, target_id__lte=hi).order_by().values_list("target_id").annotate(n=Count("pk")))
    return rows, comments, pingbacks


def chunk_read_bulk_update(base: QuerySet, after: int, size: int, dry_run: bool) -> ChunkResult | None:
    """Range-aggregate read, then ``bulk_update`` of the drifted rows with the values read."""
    rows, comments, pingbacks = _range_read(base, after, size)
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


def chunk_range_aggregate(base: QuerySet, after: int, size: int, dry_run: bool) -> ChunkResult | None:
    """Range-aggregate read, then one UPDATE of just the drifted rows whose values are correlated
    counts, taken at write time: a comment committed between the read and the write is counted."""
    rows, comments, pingbacks = _range_read(base, after, size)
    if not rows:
        return None
    drifted = [pk for pk, stored_c, stored_p in rows if stored_c != comments.get(pk, 0) or stored_p != pingbacks.get(pk, 0)]
    if drifted and not dry_run:
        _set_counts(drifted)
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


def chunk_annotated_read(base: QuerySet, after: int, size: int, dry_run: bool) -> ChunkResult | None:
    """One keyset read returns each entry's stored and true counts; one UPDATE of the drifted rows
    recomputes them at write time, so a comment committed in between is not lost."""
    rows = list(
        _keyset(base, after, size)
        .annotate(c=_count_of(Comment, "entry"), p=_count_of(Pingback, "target"))
        .values_list("pk", "number_of_comments", "number_of_pingbacks", "c", "p")[:size]
    )
    if not rows:
        return None
    drifted = [pk for pk, stored_c, stored_p, c, p in rows if stored_c != c or stored_p != p]
    if drifted and not dry_run:
        _set_counts(drifted)
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


STRATEGIES = {
    "update_subquery": chunk_update_subquery,
    "read_bulk_update": chunk_read_bulk_update,
    "annotated_read": chunk_annotated_read,
    "range_aggregate": chunk_range_aggregate,
}
STRATEGY = "range_aggregate"


def chunk_reconcile(base: QuerySet, *, after: int, size: int, dry_run: bool = False, strategy: str | None = None) -> ChunkResult | None:
    """Reconcile the next chunk after ``after``; None when the walk is over.

    The chunk's transaction commits asynchronously on PostgreSQL (see ``commit_asynchronously``):
    a commit lost in a crash leaves counters that the next run recomputes.
    """
    if not dry_run:
        commit_asynchronously()
    return STRATEGIES[strategy or STRATEGY](base, after, size, dry_run)


def counters_refresh(entry_ids: Sequence[int]) -> int:
    """Set the counters of these entries from their rows (used by ingest inside its transaction)."""
    ids = sorted(set(entry_ids))
    return sum(_set_counts(ids[start : start + MAX_CHUNK]) for start in range(0, len(ids), MAX_CHUNK))
