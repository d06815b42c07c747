"""Bench-only experiments: proposed product changes, measured before anyone makes them.

Nothing in the product imports this module, and nothing here changes the product: each experiment
is a function of its own, built from the product's public pieces, that a benchmark runs beside the
product as a separate, clearly labelled contender. Each keeps the product's contract (same rows,
same ids, same counts, same transaction), so the benchmark's checks still hold; only the way rows
reach the database changes.

``feed_upsert(..., experiments=...)`` is ``ingest.upsert.feed_upsert`` with the named steps
replaced; ``bench/upsert.py`` runs it as its ``experiment`` contender (``--experiments``):

* ``lean_existing``: the existing-entries read takes (guid, id, hash) only; the stored
  ``published_at`` is read afterwards for just the changed entries whose feed gives no date (the
  only ones needing it).
* ``executemany_writes``: new entries are INSERTed and changed ones UPDATEd with one
  ``cursor.executemany`` of a parameterized statement through Django's cursor (values computed
  once, no model instances, no per-field compilation, no CASE WHEN); ids of new rows are read back
  by guid, as the product already does on SQL Server.

``chunk_range_sql`` is a ``reconcile`` for ``counts_recompute(reconcile=...)``: the hand-written
UPDATE run per keyset chunk; ``python -m bench.experiments recount`` measures it beside the
strategies of ``bench/recount_strategies.py``.

Caveat for SQL Server: pyodbc sends ``executemany`` row by row unless ``fast_executemany`` is on;
there the product's multi-row statements should stay (or turn ``fast_executemany`` on).
"""

from __future__ import annotations

from dataclasses import replace

EXPERIMENTS = ("lean_existing", "executemany_writes")


def names_parse(text: str) -> tuple[str, ...]:
    """The experiments named in ``text`` (comma-separated); SystemExit on an unknown one."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(sorted(unknown))}; choose among {', '.join(EXPERIMENTS)}")
    return names


def feed_upsert(*, article_id, feed, fetched_at, experiments):
    """``ingest.upsert.feed_upsert`` with the named experiments in place of the product's steps."""
    from django.db import IntegrityError

    from ingest.db import WriteConflict, commit_asynchronously
    from ingest.decide import entries_decide
    from ingest.upsert import entries_apply, existing_load

    commit_asynchronously()
    load = lean_existing_load if "lean_existing" in experiments else existing_load
    existing = load(article_id=article_id, guids=[e.guid for e in feed.entries])
    plan = entries_decide(feed.entries, existing)
    if "lean_existing" in experiments:
        plan = _published_filled(plan)
    if "executemany_writes" not in experiments:
        return entries_apply(article_id=article_id, plan=plan, fetched_at=fetched_at)
    try:
        return executemany_apply(article_id, plan, fetched_at, load=load)
    except IntegrityError as exc:  # as ``entries_apply`` does
        raise WriteConflict(str(exc)) from exc


# --- lean_existing ------------------------------------------------------------------------------


def lean_existing_load(*, article_id, guids):
    """``ingest.upsert.existing_load`` without ``published_at`` (left None)."""
    from ingest.db import chunked, in_batch_size
    from ingest.identity import guid_key
    from ingest.models import Entry
    from ingest.types import ExistingEntry

    found = {}
    for batch in chunked(list(dict.fromkeys(guid_key(guid) for guid in guids)), in_batch_size()):
        for key, pk, content_hash in Entry.objects.filter(technical_article_id=article_id, guid_key__in=batch).values_list(
                "guid_key", "id", "content_hash"):
            found[key] = ExistingEntry(pk, content_hash, None)
    return found


def _published_filled(plan):
    """The plan with the stored ``published_at`` of the changed entries whose feed gives no date."""
    from ingest.db import chunked, in_batch_size
    from ingest.models import Entry

    undated = sorted({current.id for entry, current in plan.changed if entry.published_at is None})
    if not undated:
        return plan
    published = {}
    for batch in chunked(undated, in_batch_size()):
        published.update(Entry.objects.filter(pk__in=batch).values_list("id", "published_at"))
    changed = tuple((entry, current if entry.published_at else replace(current, published_at=published[current.id]))
                    for entry, current in plan.changed)
    return replace(plan, changed=changed)


# --- executemany_writes -------------------------------------------------------------------------


def _entry_values(article_id, parsed, published_at, fetched_at, ops):
    from ingest.identity import guid_key
    from ingest.links import link_key
    from ingest.upsert import local_date

    return {
        "technical_article_id": article_id, "guid": parsed.guid, "guid_key": guid_key(parsed.guid), "headline": parsed.headline, "body_text": parsed.body_text,
        "link": parsed.link, "link_key": getattr(parsed, "link_key", "") or link_key(parsed.link), "published_at": ops.adapt_datetimefield_value(published_at),
        "pub_date": ops.adapt_datefield_value(local_date(published_at)),
        "mod_date": ops.adapt_datefield_value(local_date(parsed.updated_at or fetched_at)),
        "content_hash": parsed.content_hash, "comments_feed_url": parsed.comments_feed_url,
        "reported_comments": parsed.reported_comments, "ingested_at": ops.adapt_datetimefield_value(fetched_at),
        "updated_at": ops.adapt_datetimefield_value(fetched_at),
    }


def executemany_apply(article_id, plan, fetched_at, *, load):
    """What ``ingest.upsert.entries_apply`` writes, the entry rows by ``executemany`` (authors unchanged);
    ``load`` reads the ids of the new rows back by guid."""
    from django.db import connection

    from ingest.db import MAX_ROWS_PER_STATEMENT
    from ingest.models import Entry
    from ingest.types import UpsertCounts
    from ingest.upsert import UPDATE_FIELDS, author_pairs, authors_relink, authors_resolve

    ops, quote = connection.ops, connection.ops.quote_name
    through = Entry.authors.through
    pairs = {pair for entry in plan.new for pair in author_pairs(entry)}
    pairs |= {pair for entry, _ in plan.changed for pair in author_pairs(entry)}
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
            new_ids = load(article_id=article_id, guids=[e.guid for e in plan.new])  # by guid key
            new_ids = {row["guid"]: new_ids[row["guid_key"]].id for row in rows}
            for entry in plan.new:
                touched.append((new_ids[entry.guid], entry))
                for pair in dict.fromkeys(author_pairs(entry)):
                    links.append(through(entry_id=new_ids[entry.guid], author_id=author_ids[pair]))
        if plan.changed:
            params = []
            for entry, current in plan.changed:
                values = _entry_values(article_id, entry, entry.published_at or current.published_at, fetched_at, ops)
                params.append([values[f] for f in UPDATE_FIELDS] + [current.id])
                touched.append((current.id, entry))
            cursor.executemany(
                f"UPDATE {quote(Entry._meta.db_table)} SET {', '.join(f'{quote(f)} = %s' for f in UPDATE_FIELDS)} WHERE {quote('id')} = %s",
                params)
            links += authors_relink(plan.changed, author_ids)
    if links:
        through.objects.bulk_create(links, batch_size=MAX_ROWS_PER_STATEMENT, ignore_conflicts=connection.features.supports_ignore_conflicts)
    return UpsertCounts(created=len(plan.new), updated=len(plan.changed), unchanged=plan.unchanged, touched=tuple(touched))


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


def chunk_range_sql(base, *, after, size, dry_run=False):
    """The hand-written UPDATE restricted to one keyset chunk: what chunking itself costs.
    (PostgreSQL SQL, whole table only: it ignores the scope filters of ``base``.)"""
    from django.db import connection

    from ingest.counters import ChunkResult
    from ingest.db import commit_asynchronously

    if not dry_run:
        commit_asynchronously()  # as every strategy does
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
    """``bench.recount`` with the experimental strategy measured beside the product's and its alternatives."""
    from bench import recount

    return recount.main(argv, extra={"range_sql_experiment": chunk_range_sql})


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["recount"]:
        recount_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.experiments recount [bench.recount arguments]")
