"""Denormalized counters: ``Entry.number_of_comments`` / ``number_of_pingbacks`` from their rows.

ORM only. Two ways to reconcile one chunk of entries, both touching only entries whose stored
counter differs:

* ``chunk_update_subquery``: one UPDATE with correlated ``Subquery(Count)`` expressions;
* ``chunk_read_bulk_update``: an aggregate read of the chunk's counts, then ``bulk_update`` of
  the drifted rows only.

``bench/recount.py`` measures both on PostgreSQL; ``STRATEGY`` names the one kept and
docs/benchmarks.md has the numbers. Chunks carry at most ``MAX_CHUNK`` ids (an IN list stays far
below SQL Server's 2,100 parameters, and an UPDATE below its ~5,000-lock escalation threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from ingest.models import Comment, Entry, Pingback

MAX_CHUNK = 2000


@dataclass(frozen=True)
class ChunkResult:
    scanned: int
    changed: int


def _count_of(model, fk: str) -> Coalesce:
    counted = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def chunk_update_subquery(ids: Sequence[int], *, dry_run: bool = False) -> ChunkResult:
    comments, pingbacks = _count_of(Comment, "entry"), _count_of(Pingback, "target")
    drifted = (
        Entry.objects.filter(pk__in=ids)
        .alias(c=comments, p=pingbacks)
        .filter(~Q(number_of_comments=F("c")) | ~Q(number_of_pingbacks=F("p")))
    )
    if dry_run:
        return ChunkResult(len(ids), drifted.count())
    changed = drifted.update(number_of_comments=comments, number_of_pingbacks=pingbacks)
    return ChunkResult(len(ids), changed)


def chunk_counts(ids: Sequence[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Comment and pingback counts for the entries of one chunk (ids sorted ascending)."""
    lo, hi = ids[0], ids[-1]
    comments = dict(
        Comment.objects.filter(entry_id__gte=lo, entry_id__lte=hi).order_by().values_list("entry_id").annotate(n=Count("pk"))
    )
    pingbacks = dict(
        Pingback.objects.filter(target_id__gte=lo, target_id__lte=hi).order_by().values_list("target_id").annotate(n=Count("pk"))
    )
    return comments, pingbacks


def chunk_read_bulk_update(rows: Sequence[tuple[int, int, int]], *, dry_run: bool = False) -> ChunkResult:
    """``rows`` are (id, number_of_comments, number_of_pingbacks) as read in the chunk walk."""
    comments, pingbacks = chunk_counts([row[0] for row in rows])
    drifted = [
        Entry(pk=pk, number_of_comments=comments.get(pk, 0), number_of_pingbacks=pingbacks.get(pk, 0))
        for pk, stored_c, stored_p in rows
        if stored_c != comments.get(pk, 0) or stored_p != pingbacks.get(pk, 0)
    ]
    if drifted and not dry_run:
        Entry.objects.bulk_update(drifted, ["number_of_comments", "number_of_pingbacks"], batch_size=len(drifted))
    return ChunkResult(len(rows), len(drifted))


STRATEGY = "read_bulk_update"


def chunk_reconcile(rows: Sequence[tuple[int, int, int]], *, dry_run: bool = False, strategy: str = STRATEGY) -> ChunkResult:
    if strategy == "update_subquery":
        return chunk_update_subquery([row[0] for row in rows], dry_run=dry_run)
    return chunk_read_bulk_update(rows, dry_run=dry_run)


def next_chunk(base: QuerySet, *, after: int, size: int) -> list[tuple[int, int, int]]:
    """Keyset pagination: the next ``size`` entries with a primary key above ``after`` (no OFFSET)."""
    return list(
        base.filter(pk__gt=after).order_by("pk").values_list("pk", "number_of_comments", "number_of_pingbacks")[:size]
    )


def counters_refresh(entry_ids: Sequence[int]) -> int:
    """Set the counters of these entries from their rows (used by ingest inside its transaction)."""
    ids = sorted(set(entry_ids))
    changed = 0
    for start in range(0, len(ids), MAX_CHUNK):
        changed += chunk_update_subquery(ids[start : start + MAX_CHUNK]).changed
    return changed
