"""Bench-only experiments: proposed product changes, measured before anyone makes them.

Nothing in the product imports this module. A benchmark child whose environment names experiments
in ``BENCH_EXPERIMENTS`` (comma-separated) calls ``apply_from_env()`` before it runs the product,
which swaps the named functions of ``ingest.upsert`` / ``ingest.pingbacks`` for the versions below,
in that child only. Each version keeps the product's contract (same rows, same ids, same counts,
same transaction), so the benchmark's checks still hold; only the way rows reach the database
changes. The ingest and upsert parts report them as separate, clearly labelled contenders.

* ``lean_existing``: ``existing_load`` reads (guid, id, hash) only; the stored ``published_at`` is
  read afterwards for just the changed entries whose feed gives no date (the only ones needing it).
* ``executemany_writes``: new entries are INSERTed and changed ones UPDATEd with one
  ``cursor.executemany`` of a parameterized statement through Django's cursor (values computed
  once, no model instances, no per-field compilation, no CASE WHEN); ids of new rows are read back
  by guid, as the product already does on SQL Server.
* ``executemany_links``: the outbound links (``EntryLink``) of touched entries are inserted with
  ``executemany`` instead of ``bulk_create``, and the read of the existing links is skipped for
  entries created in this transaction (they cannot have any yet).

Caveat for SQL Server: pyodbc sends ``executemany`` row by row unless ``fast_executemany`` is on;
there the product's multi-row statements should stay (or turn ``fast_executemany`` on).
"""

from __future__ import annotations

import os
from collections import defaultdict

EXPERIMENTS = ("lean_existing", "executemany_writes", "executemany_links")
_created_ids: set[int] = set()  # entries created in the current transaction (executemany_links)


def apply_from_env() -> list[str]:
    names = [n.strip() for n in os.environ.get("BENCH_EXPERIMENTS", "").split(",") if n.strip()]
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(sorted(unknown))}; choose among {', '.join(EXPERIMENTS)}")
    from ingest import pingbacks, upsert

    if "lean_existing" in names:
        upsert.existing_load = lean_existing_load
    if "executemany_writes" in names:
        upsert._apply = executemany_apply
    if "executemany_links" in names:
        pingbacks._links_replace = executemany_links_replace
    return names


# --- lean_existing ------------------------------------------------------------------------------


def lean_existing_load(*, article_id, guids):
    from ingest.identity import guid_key
    from ingest.db import chunked, in_batch_size
    from ingest.models import Entry
    from ingest.upsert import ExistingEntry

    found = {}
    for batch in chunked(list(dict.fromkeys(guid_key(guid) for guid in guids)), in_batch_size()):
        for key, pk, content_hash in Entry.objects.filter(technical_article_id=article_id, guid_key__in=batch).values_list(
                "guid_key", "id", "content_hash"):
            found[key] = ExistingEntry(pk, content_hash, None)
    return found


def _published_of(ids):
    from ingest.db import chunked, in_batch_size
    from ingest.models import Entry

    found = {}
    for batch in chunked(sorted(ids), in_batch_size()):
        found.update(Entry.objects.filter(pk__in=batch).values_list("id", "published_at"))
    return found


# --- executemany_writes -------------------------------------------------------------------------


def _entry_values(article_id, parsed, published_at, fetched_at, ops):
    from ingest.identity import guid_key
    from ingest.parse import link_key
    from ingest.upsert import _local_date

    return {
        "technical_article_id": article_id, "guid": parsed.guid, "guid_key": guid_key(parsed.guid), "headline": parsed.headline, "body_text": parsed.body_text,
        "link": parsed.link, "link_key": getattr(parsed, "link_key", "") or link_key(parsed.link), "published_at": ops.adapt_datetimefield_value(published_at),
        "pub_date": ops.adapt_datefield_value(_local_date(published_at)),
        "mod_date": ops.adapt_datefield_value(_local_date(parsed.updated_at or fetched_at)),
        "content_hash": parsed.content_hash, "comments_feed_url": parsed.comments_feed_url,
        "reported_comments": parsed.reported_comments, "ingested_at": ops.adapt_datetimefield_value(fetched_at),
    }


def executemany_apply(article_id, plan, fetched_at):
    """``ingest.upsert._apply`` with the entry rows written by ``executemany`` (authors unchanged)."""
    from django.db import connection

    from ingest.db import MAX_ROWS_PER_STATEMENT
    from ingest.models import Entry
    from ingest.types import UpsertCounts
    from ingest.upsert import UPDATE_FIELDS, _author_pairs, _relink_authors, authors_resolve, existing_load

    ops, quote = connection.ops, connection.ops.quote_name
    through = Entry.authors.through
    pairs = {pair for entry in plan.new for pair in _author_pairs(entry)}
    pairs |= {pair for entry, _ in plan.changed for pair in _author_pairs(entry)}
    author_ids = authors_resolve(pairs)
    links, touched = [], []
    with connection.cursor() as cursor:
        if plan.new:
            defaults = {name: Entry._meta.get_field(name).get_default() for name in ("number_of_comments", "number_of_pingbacks", "rating")}
            rows = [{**_entry_values(article_id, e, e.published_at or fetched_at, fetched_at, ops), **defaults} for e in plan.new]
            columns = list(rows[0])
            cursor.executemany(
                f"INSERT INTO {quote(Entry._meta.db_table)} ({', '.join(quote(c) for c in columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                [[row[c] for c in columns] for row in rows])
            new_ids = existing_load(article_id=article_id, guids=[e.guid for e in plan.new])  # by guid key
            new_ids = {row["guid"]: new_ids[row["guid_key"]].id for row in rows}
            _created_ids.update(new_ids.values())
            for entry in plan.new:
                touched.append((new_ids[entry.guid], entry))
                for pair in dict.fromkeys(_author_pairs(entry)):
                    links.append(through(entry_id=new_ids[entry.guid], author_id=author_ids[pair]))
        if plan.changed:
            undated = {current.id for entry, current in plan.changed if entry.published_at is None and current.published_at is None}
            published = _published_of(undated) if undated else {}
            params = []
            for entry, current in plan.changed:
                values = _entry_values(article_id, entry, entry.published_at or current.published_at or published[current.id],
                                       fetched_at, ops)
                params.append([values[f] for f in UPDATE_FIELDS] + [current.id])
                touched.append((current.id, entry))
            cursor.executemany(
                f"UPDATE {quote(Entry._meta.db_table)} SET {', '.join(f'{quote(f)} = %s' for f in UPDATE_FIELDS)} WHERE {quote('id')} = %s",
                params)
            links += _relink_authors(plan.changed, author_ids)
    if links:
        through.objects.bulk_create(links, batch_size=MAX_ROWS_PER_STATEMENT, ignore_conflicts=connection.features.supports_ignore_conflicts)
    return UpsertCounts(created=len(plan.new), updated=len(plan.changed), unchanged=plan.unchanged, touched=tuple(touched))


# --- executemany_links --------------------------------------------------------------------------


def executemany_links_replace(out):
    """``ingest.pingbacks._links_replace``: same result, executemany INSERT, no read for new entries."""
    from django.db import connection

    from ingest.db import chunked, in_batch_size
    from ingest.models import EntryLink

    ids = sorted(entry_id for entry_id in out if entry_id not in _created_ids)
    have = defaultdict(dict)
    for batch in chunked(ids, in_batch_size()):
        for pk, entry_id, key in EntryLink.objects.filter(entry_id__in=batch).values_list("pk", "entry_id", "link_key"):
            have[entry_id][key] = pk
    stale = [pk for entry_id, keys in have.items() for key, pk in keys.items() if key not in out[entry_id]]
    for batch in chunked(stale, in_batch_size()):
        EntryLink.objects.filter(pk__in=batch).delete()
    new = [(entry_id, key) for entry_id, keys in out.items() for key in sorted(keys) if key not in have[entry_id]]
    if new:
        quote = connection.ops.quote_name
        with connection.cursor() as cursor:
            cursor.executemany(f"INSERT INTO {quote(EntryLink._meta.db_table)} ({quote('entry_id')}, {quote('link_key')}) VALUES (%s, %s)", new)
    _created_ids.clear()


# --- recount: one set-based UPDATE per chunk (PostgreSQL) ----------------------------------------

RANGE_SQL = """
WITH c AS (SELECT entry_id, COUNT(*) AS n FROM ingest_comment WHERE entry_id > %(lo)s AND entry_id <= %(hi)s GROUP BY entry_id),
     p AS (SELECT target_id, COUNT(*) AS n FROM ingest_pingback WHERE target_id > %(lo)s AND target_id <= %(hi)s GROUP BY target_id),
     want AS (
        SELECT e.id, COALESCE(c.n, 0) AS nc, COALESCE(p.n, 0) AS np
        FROM ingest_entry e LEFT JOIN c ON c.entry_id = e.id LEFT JOIN p ON p.target_id = e.id
        WHERE e.id > %(lo)s AND e.id <= %(hi)s)
UPDATE ingest_entry e SET number_of_comments = want.nc, number_of_pingbacks = want.np
FROM want WHERE want.id = e.id AND (e.number_of_comments <> want.nc OR e.number_of_pingbacks <> want.np)
"""


def chunk_range_sql(base, after, size, dry_run):
    """The hand-written UPDATE restricted to one keyset chunk: what chunking itself costs.
    (PostgreSQL SQL, whole table only: it ignores the scope filters of ``base``.)"""
    from django.db import connection

    from ingest.counters import ChunkResult

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), MAX(id) FROM (SELECT id FROM ingest_entry WHERE id > %s ORDER BY id LIMIT %s) s", [after, size])
        scanned, hi = cursor.fetchone()
        if not scanned:
            return None
        if dry_run:
            return ChunkResult(scanned, 0, hi)
        cursor.execute(RANGE_SQL, {"lo": after, "hi": hi})
        return ChunkResult(scanned, cursor.rowcount, hi)


def recount_main(argv=None):
    """``bench.recount`` with the experimental strategy registered beside the product's."""
    from bench import recount

    original = recount.django_setup

    def setup(url):
        original(url)
        from ingest import counters

        counters.STRATEGIES["range_sql_experiment"] = chunk_range_sql

    recount.django_setup = setup
    try:
        return recount.main(argv)
    finally:
        recount.django_setup = original


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["recount"]:
        recount_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.experiments recount [bench.recount arguments]")
