"""ParsedFeed -> rows: read the existing state, decide, and write in bulk. Database only, no HTTP.

Per source, inside the caller's retry-wrapped atomic block:

1. ``existing_load``: one query per IN-batch loads (id, hash) for the feed's guid keys.
2. ``ingest.decide.entries_decide`` (pure): new, changed (hash differs) or unchanged.
3. ``entries_apply``: insert the new entries, update the changed ones (only the fields that
   changed; counters and rating belong to other writers), resolve authors and link them through
   the M2M's through model in bulk, and write their enclosures (``Enclosure`` rows: inserted for a
   new entry; for a changed one, its set replaced when it differs from the stored one, stale rows
   deleted by primary key). Unchanged entries cause no write.

The hot rows go through the DB-API cursor (``ingest.db.rows_insert`` / ``rows_update`` /
``rows_select``), not through model instances: values as the ORM would store them, identity keys
computed here as ``Keyed`` would. Changed entries are updated with ``bulk_update`` on SQL Server,
where an ``executemany`` is a round trip per row.

Rows are matched by their identity keys (``ingest.identity``: ``Entry.guid_key``,
``Author.identity_key``), never by text: a text comparison in Python is byte-exact while the
database's may ignore case, accents or trailing spaces, and then a key the code calls new is a
duplicate to the database. Two parsed values with one key are one row: the first one in the feed
is written.

The number of statements grows with the number of batches, never with the number of entries.
Batch sizes come from ``ingest.db`` (the connection's parameter limit; SQL Server allows 2,100
parameters per statement), capped so that no statement touches more than
``MAX_ROWS_PER_STATEMENT`` rows, below SQL Server's lock escalation threshold (~5,000 locks).

SQL Server returns no primary keys from a multi-row INSERT and has no ``ignore_conflicts``: ids of
new rows are read back by guid key unless the backend returns them, and a unique-key collision becomes
``WriteConflict``. The retry helper retries a collision once (a concurrent writer's rows then
exist and take the update path); one that repeats is about the data and fails this source alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime

from django.db import IntegrityError, connection
from django.utils import timezone

from ingest.db import (
    MAX_ROWS_PER_STATEMENT, WriteConflict, chunked, commit_asynchronously, in_batch_size, rows_insert, rows_select, rows_update,
    write_batch_size,
)
from ingest.identity import author_key, guid_key, url_key
from ingest.models import Author, Enclosure, Entry, EntryTombstone
from ingest.links import link_key
from ingest.decide import entries_decide
from ingest.types import ExistingEntry, ParsedEntry, ParsedFeed, Plan, UpsertCounts

UPDATE_FIELDS = (
    "headline", "body_text", "link", "link_key", "published_at", "pub_date", "mod_date",
    "content_hash", "comments_feed_url", "reported_comments",
)


def existing_load(*, article_id: int, guids: Sequence[str]) -> dict[str, ExistingEntry]:
    """The stored entries of these guids, by guid key (``ingest.identity.guid_key``): id and content
    hash, one SELECT per IN-batch through the cursor (``published_at`` is left None: the write reads
    it with the other stored values of the changed entries, the only ones that need it)."""
    keys = list(dict.fromkeys(guid_key(guid) for guid in guids))
    rows = rows_select(Entry, ("guid_key", "id", "content_hash"), column="guid_key", values=keys,
                       where={"technical_article_id": article_id})
    return {key: ExistingEntry(pk, content_hash, None) for key, pk, content_hash in rows}


def local_date(moment: datetime) -> date:
    """The calendar date of ``moment`` in the project's time zone (``pub_date``, ``mod_date``)."""
    return timezone.localtime(moment).date()


def _entry_values(article_id: int, parsed: ParsedEntry, *, published_at: datetime, fetched_at: datetime,
                  written_at: datetime) -> dict:
    """The entry's written fields, by field name, as ``Entry`` holds them."""
    return {
        "technical_article_id": article_id,
        "guid": parsed.guid,
        "guid_key": guid_key(parsed.guid),
        "headline": parsed.headline,
        "body_text": parsed.body_text,
        "link": parsed.link,
        "link_key": parsed.link_key or link_key(parsed.link),
        "published_at": published_at,
        "pub_date": local_date(published_at),
        "mod_date": local_date(parsed.updated_at or fetched_at),
        "content_hash": parsed.content_hash,
        "comments_feed_url": parsed.comments_feed_url,
        "reported_comments": parsed.reported_comments,
        "ingested_at": fetched_at,
        # the write's own time, not the fetch's: as close to the commit as a client syncing by
        # updated_since can get (docs/api.md, "Syncing without gaps")
        "updated_at": written_at,
    }


# Every column of a new entry, in ``Entry``'s field order, by field name ("technical_article" for
# technical_article_id): what ``bulk_create`` would insert, defaults included.
INSERT_FIELDS = tuple(f.name for f in Entry._meta.concrete_fields if not f.primary_key)
_INSERT_DEFAULTS = {f.name: f.get_default() for f in Entry._meta.concrete_fields
                    if f.name in ("number_of_comments", "number_of_pingbacks", "rating", "duplicate_of")}


def _insert_row(values: dict) -> list:
    values = {**_INSERT_DEFAULTS, **values, "technical_article": values["technical_article_id"]}
    return [values[name] for name in INSERT_FIELDS]


def authors_resolve(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids for (name, email) pairs, creating the missing authors in bulk.

    Pairs with one identity key (``ingest.identity.author_key``) get one id; a new author is
    stored as the first of its pairs in ``pairs``' order (the feed's order, for the callers here).
    """
    first: dict[str, tuple[str, str]] = {}
    key_of: dict[tuple[str, str], str] = {}
    for pair in pairs:
        if pair not in key_of:
            key_of[pair] = key = author_key(*pair)
            first.setdefault(key, pair)
    if not first:
        return {}

    def lookup(keys) -> dict[str, int]:
        ids: dict[str, int] = {}
        for batch in chunked(sorted(keys), in_batch_size()):
            ids.update(Author.objects.filter(identity_key__in=batch).values_list("identity_key", "id"))
        return ids

    ids = lookup(first)
    missing = [(name, email, key) for key, (name, email) in first.items() if key not in ids]
    if missing:
        rows_insert(Author, ("name", "email", "identity_key"), missing,
                    ignore_conflicts=connection.features.supports_ignore_conflicts)
        ids.update(lookup([key for _, _, key in missing]))
    return {pair: ids[key] for pair, key in key_of.items()}


def author_pairs(entry: ParsedEntry) -> list[tuple[str, str]]:
    """The entry's authors as the (name, email) pairs ``authors_resolve`` takes."""
    return [(author.name, author.email) for author in entry.authors]


def entries_apply(*, article_id: int, plan: Plan, fetched_at: datetime) -> UpsertCounts:
    """Write the plan. Must run inside an atomic block (the caller's retry wrapper)."""
    try:
        return _apply(article_id, plan, fetched_at)
    except IntegrityError as exc:
        # A concurrent writer inserted the same natural key first (an expired lease, or an author
        # shared by two feeds on a backend without ignore_conflicts): retrying once sees its rows.
        raise WriteConflict(str(exc)) from exc


def _apply(article_id: int, plan: Plan, fetched_at: datetime) -> UpsertCounts:
    pairs = [pair for entry in plan.new for pair in author_pairs(entry)]
    pairs += [pair for entry, _ in plan.changed for pair in author_pairs(entry)]
    author_ids = authors_resolve(pairs)
    links: list[tuple[int, int]] = []  # (entry id, author id)
    enclosures: list[list] = []
    touched: list[tuple[int, ParsedEntry]] = []
    written_at = timezone.now()  # one time for the rows of one write (``updated_at``)

    if plan.new:
        values = [_entry_values(article_id, e, published_at=e.published_at or fetched_at, fetched_at=fetched_at,
                                written_at=written_at) for e in plan.new]
        ids = rows_insert(Entry, INSERT_FIELDS, [_insert_row(v) for v in values], returning=True)
        if not ids:  # PostgreSQL, SQL Server, MariaDB < 10.5: read back by guid key
            by_key = existing_load(article_id=article_id, guids=[e.guid for e in plan.new])
            ids = [by_key[v["guid_key"]].id for v in values]
        for entry, entry_id in zip(plan.new, ids):
            touched.append((entry_id, entry))
            enclosures += enclosure_rows(entry_id, entry)
            links += [(entry_id, author_id) for author_id in dict.fromkeys(author_ids[pair] for pair in author_pairs(entry))]

    if plan.changed:
        stored = _stored_values([current.id for _, current in plan.changed])
        rows = []
        for entry, current in plan.changed:
            published_at = entry.published_at or current.published_at or stored[current.id][_PUBLISHED]
            rows.append((current.id, _entry_values(
                article_id, entry, published_at=published_at, fetched_at=fetched_at, written_at=written_at)))
            touched.append((current.id, entry))
        _update_changed_fields(rows, stored)
        links += authors_relink(plan.changed, author_ids)
        enclosures += enclosures_replace(plan.changed)

    if links:
        rows_insert(Entry.authors.through, ("entry", "author"), links,
                    ignore_conflicts=connection.features.supports_ignore_conflicts)
    rows_insert(Enclosure, ENCLOSURE_FIELDS, enclosures)
    return UpsertCounts(created=len(plan.new), updated=len(plan.changed), unchanged=plan.unchanged, touched=tuple(touched))


_PUBLISHED = UPDATE_FIELDS.index("published_at")


def _stored_values(ids: list[int]) -> dict[int, tuple]:
    """The stored UPDATE_FIELDS of these entries, by id (one read per IN-batch)."""
    stored: dict[int, tuple] = {}
    for batch in chunked(ids, in_batch_size()):
        for pk, *values in Entry.objects.filter(pk__in=batch).values_list("pk", *UPDATE_FIELDS):
            stored[pk] = tuple(values)
    return stored


def _update_changed_fields(rows: list[tuple[int, dict]], stored: dict[int, tuple]) -> None:
    """Write each (id, values) row's changed fields only: rows are grouped by the set of fields that
    differ from the ``stored`` values, one UPDATE per group (an edited body is typically body_text,
    content_hash and mod_date: three columns instead of ten). ``rows_update`` (``executemany`` by
    primary key), but on SQL Server, where that is a round trip per row: ``bulk_update`` there."""
    groups: dict[tuple[str, ...], list[tuple[int, dict]]] = {}
    for pk, values in rows:
        old = stored.get(pk)
        fields = UPDATE_FIELDS if old is None else tuple(
            name for name, value in zip(UPDATE_FIELDS, old) if values[name] != value
        )
        if fields:
            groups.setdefault(fields, []).append((pk, values))
    for fields, group in groups.items():
        fields += ("updated_at",)  # a change the API's updated_since must show
        if connection.vendor == "microsoft":
            objs = [Entry(pk=pk, **values) for pk, values in group]
            Entry.objects.bulk_update(objs, fields, batch_size=write_batch_size(("id",) + fields, objs))
        else:
            rows_update(Entry, fields, [(pk, *(values[name] for name in fields)) for pk, values in group])


def authors_relink(changed, author_ids: dict[tuple[str, str], int]) -> list:
    """Make each changed entry's author links equal the feed's; returns the links to insert, as
    (entry id, author id)."""
    through = Entry.authors.through
    entry_ids = [current.id for _, current in changed]
    have: dict[int, dict[int, int]] = {}
    for pk, entry_id, author_id in rows_select(through, ("id", "entry_id", "author_id"), column="entry_id", values=entry_ids):
        have.setdefault(entry_id, {})[author_id] = pk
    stale: list[int] = []
    add: list = []
    for entry, current in changed:
        want = {author_ids[pair] for pair in author_pairs(entry)}
        links = have.get(current.id, {})
        stale += [pk for author_id, pk in links.items() if author_id not in want]
        add += [(current.id, a) for a in sorted(want - links.keys())]
    for batch in chunked(stale, in_batch_size()):
        through.objects.filter(id__in=batch).delete()
    return add


ENCLOSURE_VALUES = ("url", "type", "length", "kind")  # what makes two stored sets of enclosures the same


def enclosures_wanted(entry: ParsedEntry) -> list[tuple]:
    """The entry's enclosures as rows hold them (ENCLOSURE_VALUES), in order, one per (kind, URL key)
    (the parser already drops repeats; a parser that did not must not make the insert collide)."""
    seen: set[tuple[str, str]] = set()
    wanted = []
    for enclosure in entry.enclosures:
        key = (enclosure.kind, url_key(enclosure.url))
        if key not in seen:
            seen.add(key)
            wanted.append((enclosure.url, enclosure.type, enclosure.length, enclosure.kind))
    return wanted


ENCLOSURE_FIELDS = ("entry", "url", "url_key", "type", "length", "kind", "position")  # as enclosure_rows gives them


def enclosure_rows(entry_id: int, entry: ParsedEntry) -> list[list]:
    """The entry's enclosure rows (ENCLOSURE_FIELDS, ``url_key`` as ``Enclosure.keys_fill`` derives it)."""
    return [
        [entry_id, url, url_key(url), type_, length, kind, position]
        for position, (url, type_, length, kind) in enumerate(enclosures_wanted(entry))
    ]


def enclosures_replace(changed) -> list[list]:
    """Each changed entry whose stored enclosures differ from the feed's loses them (deleted by
    primary key, in batches); returns the rows to insert in their place. One read per IN-batch."""
    entry_ids = [current.id for _, current in changed]
    have: dict[int, list[tuple]] = {}
    pks: dict[int, list[int]] = {}
    rows = rows_select(Enclosure, ("id", "entry_id", *ENCLOSURE_VALUES), column="entry_id", values=entry_ids,
                       order=("entry_id", "position", "id"))
    for pk, entry_id, *values in rows:
        have.setdefault(entry_id, []).append(tuple(values))
        pks.setdefault(entry_id, []).append(pk)
    stale: list[int] = []
    add: list[Enclosure] = []
    for entry, current in changed:
        if enclosures_wanted(entry) != have.get(current.id, []):
            stale += pks.get(current.id, [])
            add += enclosure_rows(current.id, entry)
    for batch in chunked(stale, in_batch_size()):
        Enclosure.objects.filter(pk__in=batch).delete()
    return add


def tombstones_sieve(*, article_id: int, entries: Sequence[ParsedEntry], whole_document: bool = True) -> list[ParsedEntry]:
    """The entries that are not tombstoned for this source (``prune_entries`` deleted them; see
    ``EntryTombstone``); with ``whole_document`` (a polled feed, not a pushed body), also delete the
    source's tombstones whose guid the document no longer carries, by primary key in batches.

    One SELECT of the source's tombstones (no IN list: the unique key's index on the source); the
    deletes happen only when the feed dropped tombstoned guids. Inside the caller's transaction.
    """
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote('guid_key')}, {quote('id')} FROM {quote(EntryTombstone._meta.db_table)} "
                       f"WHERE {quote('source_id')} = %s", [article_id])
        tombstones = dict(cursor.fetchall())
    if not tombstones:
        return list(entries)
    keys = [guid_key(entry.guid) for entry in entries]
    kept = [entry for entry, key in zip(entries, keys) if key not in tombstones]
    if whole_document:
        carried = set(keys)
        gone = sorted(pk for key, pk in tombstones.items() if key not in carried)
        for batch in chunked(gone, min(MAX_ROWS_PER_STATEMENT, in_batch_size())):
            EntryTombstone.objects.filter(pk__in=batch)._raw_delete(EntryTombstone.objects.db)
    return kept


def feed_upsert(*, article_id: int, feed: ParsedFeed, fetched_at: datetime, whole_document: bool = True) -> UpsertCounts:
    """Read, decide and write one parsed feed's entries, but those ``prune_entries`` deleted
    (``tombstones_sieve``; ``whole_document``: the feed as polled, whose absent guids' tombstones go)."""
    commit_asynchronously()
    entries = tombstones_sieve(article_id=article_id, entries=feed.entries, whole_document=whole_document)
    existing = existing_load(article_id=article_id, guids=[e.guid for e in entries])
    plan = entries_decide(entries, existing)
    return entries_apply(article_id=article_id, plan=plan, fetched_at=fetched_at)
