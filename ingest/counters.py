"""Denormalized counters: ``Entry.number_of_comments`` / ``number_of_pingbacks`` from their rows.

ORM only. ``chunk_reconcile`` reconciles one keyset chunk of entries: a range-aggregate read of
the chunk's stored and true counts (one index range scan per counted table rather than one probe
per entry), then one UPDATE of just the drifted rows, whose values are correlated counts taken at
write time, so that a comment committed between the read and the write is counted. Nothing is
written when nothing drifted. ``counters_refresh`` sets the counters of given entries (ingest,
inside its transaction), and of their canonical entries.

Duplicates across feeds (``Entry.duplicate_of``): a canonical entry's ``number_of_comments`` counts
its own comments and those of every entry that points at it; a duplicate's counts its own.
``number_of_pingbacks`` counts the pingbacks whose target is the entry (new pingbacks target the
canonical, ``ingest.pingbacks``). Reconciliation and the incremental refresh count the same way.

This is the one strategy the product uses (``STRATEGY`` names it). The alternatives it was chosen
from live in ``bench/recount_strategies.py``, are measured by ``bench/recount.py`` on PostgreSQL
(docs/benchmarks.md has the numbers) and plug in through ``counts_recompute(reconcile=...)``; they
are built from the public helpers here (``count_of``, ``keyset``, ``range_read``, ``counts_set``).
Chunks carry at most ``MAX_CHUNK`` ids (an IN list stays far below SQL Server's 2,100 parameters,
and an UPDATE below its ~5,000-lock escalation threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from ingest.db import MAX_IN_LIST, chunked, commit_asynchronously
from ingest.models import Comment, Entry, Pingback

MAX_CHUNK = MAX_IN_LIST  # entries per chunk: their ids make one IN list
STRATEGY = "range_aggregate"


@dataclass(frozen=True)
class ChunkResult:
    scanned: int
    changed: int
    last_pk: int  # the keyset cursor: the next chunk starts after it


def count_of(model, fk: str) -> Coalesce:
    """The number of ``model`` rows whose foreign key ``fk`` points at the outer entry (0 for none)."""
    counted = model.objects.filter(**{fk: OuterRef("pk")}).order_by().values(fk).annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def keyset(base: QuerySet, after: int, size: int) -> QuerySet:
    """Keyset pagination: the next ``size`` entries with a primary key above ``after`` (no OFFSET)."""
    return base.filter(pk__gt=after).order_by("pk")


def counts_set(ids: Sequence[int]) -> int:
    """Set the counters of these entries (at most ``MAX_CHUNK``) from their rows, in one UPDATE."""
    return Entry.objects.filter(pk__in=ids).update(
        number_of_comments=count_of(Comment, "entry") + count_of(Comment, "entry__duplicate_of"),
        number_of_pingbacks=count_of(Pingback, "target"),
        updated_at=timezone.now(),  # the API's updated_since shows a counter that changed
    )


def range_read(base: QuerySet, after: int, size: int) -> tuple[list[tuple[int, int, int]], dict[int, int], dict[int, int]]:
    """The chunk's (id, stored comments, stored pingbacks) and its true counts from two range
    aggregates (one index range scan each, rather than one probe per entry)."""
    rows = list(keyset(base, after, size).values_list("pk", "number_of_comments", "number_of_pingbacks")[:size])
    if not rows:
        return rows, {}, {}
    lo, hi = rows[0][0], rows[-1][0]
    comments: dict[int, int] = {}
    # One aggregate for both: a comment counts for its entry and for that entry's canonical.
    own = Q(entry_id__gte=lo, entry_id__lte=hi)
    theirs = Q(entry__duplicate_of__gte=lo, entry__duplicate_of__lte=hi)
    for entry_id, canonical, n in (Comment.objects.filter(own | theirs).order_by()
                                   .values_list("entry_id", "entry__duplicate_of").annotate(n=Count("pk"))):
        if lo <= entry_id <= hi:
            comments[entry_id] = comments.get(entry_id, 0) + n
        if canonical is not None and lo <= canonical <= hi:
            comments[canonical] = comments.get(canonical, 0) + n
    pingbacks = dict(Pingback.objects.filter(target_id__gte=lo, target_id__lte=hi).order_by().values_list("target_id").annotate(n=Count("pk")))
    return rows, comments, pingbacks


def chunk_reconcile(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Reconcile the ``size`` entries of ``base`` after the primary key ``after``; None when the walk
    is over. With ``dry_run``, count the drifted entries and write nothing.

    The chunk's transaction commits asynchronously on PostgreSQL (see ``commit_asynchronously``):
    a commit lost in a crash leaves counters that the next run recomputes.
    """
    if not dry_run:
        commit_asynchronously()
    rows, comments, pingbacks = range_read(base, after, size)
    if not rows:
        return None
    drifted = [pk for pk, stored_c, stored_p in rows if stored_c != comments.get(pk, 0) or stored_p != pingbacks.get(pk, 0)]
    if drifted and not dry_run:
        counts_set(drifted)
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


def counters_refresh(entry_ids: Sequence[int]) -> int:
    """Set the counters of these entries and of their canonical entries from their rows (used by
    ingest inside its transaction)."""
    ids = set(entry_ids)
    for batch in chunked(sorted(ids), MAX_CHUNK):
        ids.update(Entry.objects.filter(pk__in=batch, duplicate_of__isnull=False).values_list("duplicate_of", flat=True))
    ids = sorted(ids)
    return sum(counts_set(batch) for batch in chunked(ids, MAX_CHUNK))
