"""Duplicates across feeds: ``Entry.duplicate_of``, kept by the rule ``ingest.decide.duplicates_resolve``.

The same article from several sources (entries of different sources with one non-empty
``link_key``) is one group; every copy points at the group's canonical entry, the earliest
ingested one, which points nowhere. Three writers keep the marks, each inside its caller's
transaction and each resolving whole groups (so a group left half-marked by a race is mended by
whichever writer meets it next):

* ``duplicates_mark``: the per-source store transaction, after the entries are written and before
  the pingbacks: the groups of the entries just created or changed, and of the entries that pointed
  at a changed one;
* ``promote_duplicates``: before a chunk of entries is deleted (``services.delete``): the groups of
  the canonicals about to go; the oldest remaining copy becomes canonical, the others re-point to it;
* ``duplicates_repair``: ``recompute_counts --dedup``, a keyset walk over the entries.

Statements are bounded: one read per IN-batch of ids (``ingest.db.in_batch_size``), one per
IN-batch of link keys, one ``bulk_update`` per ``write_batch_size`` rows, and the counters of the
canonicals whose group changed are refreshed (``ingest.counters``: a canonical's
``number_of_comments`` counts its duplicates' comments too). Nothing is read or written when no
entry was touched, or when ``INGEST_CROSS_FEED_DEDUP`` is off (marks already written then stay as
they are until ``recompute_counts --dedup`` clears them).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ingest.counters import counters_refresh
from ingest.db import chunked, in_batch_size, write_batch_size
from ingest.decide import DuplicateRow, duplicates_resolve
from ingest.models import Entry

_COLUMNS = ("pk", "technical_article_id", "link_key", "ingested_at", "duplicate_of_id")


def dedup_enabled() -> bool:
    return bool(settings.INGEST_CROSS_FEED_DEDUP)


def _rows(query) -> list[DuplicateRow]:
    return [DuplicateRow(*values) for values in query.values_list(*_COLUMNS)]


def _groups_load(keys: Iterable[str]) -> dict[int, DuplicateRow]:
    """Every entry holding one of these link keys, by id."""
    found: dict[int, DuplicateRow] = {}
    for batch in chunked(sorted({key for key in keys if key}), in_batch_size()):
        found.update((row.id, row) for row in _rows(Entry.objects.filter(link_key__in=batch)))
    return found


def _apply(rows: dict[int, DuplicateRow], *, new: Collection[int] = (), gone: Collection[int] = (),
           wanted: dict[int, int | None] | None = None) -> int:
    """Write what the rule wants for ``rows`` (changed rows only; ``wanted``: the rule's answer when
    the caller has it) and refresh the counters of every entry whose group changed. Returns the
    number of entries whose mark changed."""
    if wanted is None:
        wanted = duplicates_resolve(rows.values(), new=new, gone=gone)
    now = timezone.now()
    changed = [Entry(pk=pk, duplicate_of_id=target, updated_at=now)
               for pk, target in wanted.items() if rows[pk].duplicate_of != target]
    if not changed:
        return 0
    Entry.objects.bulk_update(changed, ["duplicate_of", "updated_at"],
                              batch_size=write_batch_size(("id", "duplicate_of", "updated_at"), changed))
    moved = {row.pk for row in changed}
    moved |= {rows[pk].duplicate_of for pk in moved if rows[pk].duplicate_of is not None}
    moved |= {row.duplicate_of_id for row in changed if row.duplicate_of_id is not None}
    counters_refresh(sorted(moved - set(gone)))
    return len(changed)


def duplicates_mark(*, entry_ids: Sequence[int], new_ids: Collection[int] = ()) -> dict[int, int]:
    """Mark the groups of these just-written entries (``new_ids``: those just created). Runs inside
    the store transaction; returns {entry id: canonical id} for those of ``entry_ids`` that are
    duplicates now (the pingbacks they imply go to the canonical)."""
    if not entry_ids or not dedup_enabled():
        return {}
    ids = sorted(set(entry_ids))
    rows: dict[int, DuplicateRow] = {}
    for batch in chunked(ids, max(1, in_batch_size() // 2)):
        # The entries themselves, and those that pointed at one of them (a canonical whose link changed).
        rows.update((row.id, row) for row in _rows(Entry.objects.filter(Q(pk__in=batch) | Q(duplicate_of__in=batch))))
    groups = _groups_load(row.link_key for row in rows.values())
    rows.update(groups)
    wanted = duplicates_resolve(rows.values(), new=new_ids)
    _apply(rows, wanted=wanted)
    return {pk: wanted[pk] for pk in ids if wanted.get(pk) is not None}


def promote_duplicates(entry_ids: Sequence[int]) -> int:
    """Before these entries are deleted (inside the same transaction): the entries that point at one
    of them re-point to the oldest remaining entry of their group, which becomes canonical. Returns
    the number of entries whose mark changed; one read when none of these entries is a canonical."""
    gone = set(entry_ids)
    pointing: list[DuplicateRow] = []
    for batch in chunked(sorted(gone), in_batch_size()):
        pointing += [row for row in _rows(Entry.objects.filter(duplicate_of__in=batch)) if row.id not in gone]
    if not pointing:
        return 0
    rows = _groups_load(row.link_key for row in pointing)
    rows.update((row.id, row) for row in pointing)
    return _apply(rows, gone=gone)


def duplicates_repair(*, base, after: int, size: int) -> tuple[int, int, int] | None:
    """One chunk of ``recompute_counts --dedup``: the ``size`` entries of ``base`` after primary key
    ``after``, and their groups, marked as the rule says (with the switch off: their marks cleared).
    Returns (entries scanned, marks changed, last primary key), or None when the walk is over."""
    chunk = _rows(base.filter(pk__gt=after).order_by("pk")[:size])
    if not chunk:
        return None
    rows = {row.id: row for row in chunk}
    if dedup_enabled():
        rows.update(_groups_load(row.link_key for row in chunk))
        rows.update((row.id, row) for row in chunk)
        changed = _apply(rows)
    else:
        marked = [row for row in chunk if row.duplicate_of is not None]
        now = timezone.now()
        cleared = [Entry(pk=row.id, duplicate_of_id=None, updated_at=now) for row in marked]
        if cleared:
            Entry.objects.bulk_update(cleared, ["duplicate_of", "updated_at"],
                                      batch_size=write_batch_size(("id", "duplicate_of", "updated_at"), cleared))
            counters_refresh(sorted({row.duplicate_of for row in marked}))
        changed = len(cleared)
    return len(chunk), changed, chunk[-1].id
