"""Cross-references between stored entries, recorded as ``Pingback`` rows. ORM reads; rows written
through ``ingest.db.rows_insert``.

An entry's body linking to the link of another stored entry is a pingback from the first to the
second. Links are compared by ``link_key`` (sha256 of the normalized URL: scheme and host case,
default port, trailing slash and fragment do not matter). Each created or updated entry's outbound
links are kept as ``EntryLink`` rows, so the pingback is found whichever entry is ingested first:
outbound (the new body links to stored entries) and inbound (stored bodies link to the new entry).
A link to itself or to an unknown URL records nothing. Existing pingbacks are never deleted: a
pingback is an event, and an edited post does not un-send it. A pingback is one per target and
source key (``ingest.identity.url_key`` of its source URL): of two source URLs that normalize to
the same URL, the one that sorts first is stored.

Duplicates across feeds (``Entry.duplicate_of``): a pingback targets the canonical entry of the
linked article, never one of its copies in other feeds, and a copy linking to its own article
records nothing. Pingbacks recorded before an entry became a duplicate stay where they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence

from django.utils import timezone

from ingest.counters import counters_refresh
from ingest.db import chunked, in_batch_size, rows_insert
from ingest.identity import url_key
from ingest.models import Entry, EntryLink, Pingback
from ingest.links import link_key
from ingest.types import ParsedEntry


def pingbacks_record(*, touched: Sequence[tuple[int, ParsedEntry]], canonical_of: Mapping[int, int] | None = None,
                     new_ids: Collection[int] = ()) -> int:
    """Store outbound links of the touched entries and record the pingbacks they imply.

    Runs inside the caller's transaction; returns the number of pingbacks created. Counters of the
    targets are refreshed in the same transaction. ``canonical_of`` maps the touched entries that
    are duplicates to their canonical entries (``services.duplicates.duplicates_mark``).
    ``new_ids``: the touched entries created in this transaction, which can have neither stored
    links nor pingbacks yet: none are read for them.
    """
    if not touched:
        return 0
    canonical_of = canonical_of or {}
    new_ids = set(new_ids)
    out = {entry_id: set(entry.link_keys) for entry_id, entry in touched}
    _links_replace(out, new_ids)

    touched_ids = set(out)
    own_link = {entry_id: entry.link for entry_id, entry in touched}
    candidates: set[tuple[str, int, int]] = set()  # (source_url, target_id, source_entry_id)

    # Outbound: bodies just stored link to entries we hold.
    all_keys = sorted(set().union(*out.values()))
    targets: dict[str, list[int]] = defaultdict(list)
    for batch in chunked(all_keys, in_batch_size()):
        for pk, key, canonical in Entry.objects.filter(link_key__in=batch).values_list("pk", "link_key", "duplicate_of"):
            targets[key].append(canonical or pk)
    for source_id, keys in out.items():
        if not own_link[source_id]:
            continue
        mine = {source_id, canonical_of.get(source_id, source_id)}
        for key in keys:
            candidates.update((own_link[source_id], t, source_id) for t in dict.fromkeys(targets.get(key, ())) if t not in mine)

    # Inbound: entries stored earlier link to the entries just stored.
    new_keys = {entry.link_key or link_key(entry.link): canonical_of.get(entry_id, entry_id)
                for entry_id, entry in touched if entry.link}
    keys = sorted(new_keys)
    sources: dict[int, list[str]] = defaultdict(list)
    for batch in chunked(keys, in_batch_size()):
        # Filtered here, not with exclude(entry_id__in=...): a long id list would make mssql-django
        # spill the parameters into a temporary table inside the transaction.
        for entry_id, key in EntryLink.objects.filter(link_key__in=batch).values_list("entry_id", "link_key"):
            if entry_id not in touched_ids:
                sources[entry_id].append(key)
    if sources:
        ids = sorted(sources)
        for batch in chunked(ids, in_batch_size()):
            for pk, link, own_key in Entry.objects.filter(pk__in=batch).exclude(link="").values_list("pk", "link", "link_key"):
                # a copy of the article linking to the article itself is no pingback
                candidates.update((link, new_keys[key], pk) for key in sources[pk] if new_keys[key] != pk and key != own_key)
    return _insert_new(candidates, new_ids)


def _links_replace(out: dict[int, set[str]], new_ids: set[int]) -> None:
    """Make the stored links of each entry of ``out`` equal its set: stale ones deleted by primary
    key, missing ones inserted (``rows_insert``); the links of ``new_ids`` are all missing, unread."""
    ids = sorted(entry_id for entry_id in out if entry_id not in new_ids)
    have: dict[int, dict[str, int]] = defaultdict(dict)
    for batch in chunked(ids, in_batch_size()):
        for pk, entry_id, key in EntryLink.objects.filter(entry_id__in=batch).values_list("pk", "entry_id", "link_key"):
            have[entry_id][key] = pk
    stale = [pk for entry_id, keys in have.items() for key, pk in keys.items() if key not in out[entry_id]]
    for batch in chunked(stale, in_batch_size()):
        EntryLink.objects.filter(pk__in=batch).delete()
    rows_insert(EntryLink, ("entry", "link_key"),
                [(entry_id, key) for entry_id, keys in out.items() for key in sorted(keys) if key not in have.get(entry_id, ())])


def _insert_new(candidates: set[tuple[str, int, int]], new_ids: set[int]) -> int:
    """Insert the candidates (source URL, target, source entry) not stored yet; targets created in
    this transaction have no stored pingbacks, and none are read for them."""
    if not candidates:
        return 0
    max_url = Pingback._meta.get_field("source_url").max_length
    candidates = {c for c in candidates if len(c[0]) <= max_url}
    target_ids = sorted({target for _, target, _ in candidates if target not in new_ids})
    seen: set[tuple[str, int]] = set()  # (source key, target): those stored, then those added
    for batch in chunked(target_ids, in_batch_size()):
        seen.update(Pingback.objects.filter(target_id__in=batch).values_list("source_key", "target_id"))
    rows = []
    now = timezone.now()  # created_at, the field's default
    for source_url, target, source_entry in sorted(candidates):
        key = url_key(source_url)
        if (key, target) in seen:
            continue
        seen.add((key, target))
        rows.append((target, source_url, key, source_entry, now))
    rows_insert(Pingback, ("target", "source_url", "source_key", "source_entry", "created_at"), rows)
    counters_refresh([target for target, *_ in rows])
    return len(rows)
