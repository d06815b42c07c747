"""Denormalized counters: ``Entry.number_of_comments`` / ``number_of_pingbacks`` from their rows.

``chunk_reconcile`` reconciles one keyset chunk of entries (``STRATEGY``, "set_based"): a read of
the chunk's bounds (how many entries, the last primary key), then ONE set-based statement,
``UPDATE entry ... FROM (SELECT ... COUNT(*) ... GROUP BY)`` in the connection's dialect, that
counts the chunk's comments and pingbacks by index range scans and writes only the rows whose
stored counter differs (``set_based``). Counting and writing are one statement, so a comment
committed before it starts is counted. Nothing is written when nothing drifted (the UPDATE
matches no row); ``dry_run`` runs the same join as a ``SELECT COUNT(*)``. The dialects:

* PostgreSQL and SQLite 3.33 or later: ``UPDATE t SET ... FROM (...) s WHERE t.id = s.id AND ...``;
* MariaDB / MySQL: ``UPDATE t JOIN (...) s ON t.id = s.id SET ... WHERE ...``;
* SQL Server (mssql-django, vendor "microsoft"): ``UPDATE t SET ... FROM t JOIN (...) s ON ...``.

Any other database, and SQLite before 3.33 (no ``UPDATE ... FROM``), falls back to
``range_aggregate``: a range-aggregate read of the chunk's stored and true counts into Python (one
index range scan per counted table rather than one probe per entry), then one UPDATE of just the
drifted rows whose values are correlated counts taken at write time. The statements are written
around SQL that the ORM compiles (the chunk's keyset read and the three GROUP BY counts, with
their parameters); table, column and alias names go through the backend's ``quote_name``.
``counters_refresh`` sets the counters of given entries (ingest, inside its transaction), and of
their canonical entries.

Duplicates across feeds (``Entry.duplicate_of``): a canonical entry's ``number_of_comments`` counts
its own comments and those of every entry that points at it; a duplicate's counts its own.
``number_of_pingbacks`` counts the pingbacks whose target is the entry (new pingbacks target the
canonical, ``ingest.pingbacks``). Reconciliation and the incremental refresh count the same way.

The product uses ``chunk_reconcile`` (``STRATEGY`` names it). The alternatives it was chosen from
live in ``bench/recount_strategies.py`` (``range_aggregate`` among them), are measured by
``bench/recount.py`` on PostgreSQL (docs/benchmarks.md has the numbers) and plug in through
``counts_recompute(reconcile=...)``; they are built from the public helpers here (``count_of``,
``keyset``, ``range_read``, ``counts_set``). Chunks carry at most ``MAX_CHUNK`` entries (an IN
list stays far below SQL Server's 2,100 parameters, and an UPDATE below its ~5,000-lock
escalation threshold).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connections
from django.utils import timezone
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from ingest.db import MAX_IN_LIST, chunked, commit_asynchronously
from ingest.models import Comment, Entry, Pingback

MAX_CHUNK = MAX_IN_LIST  # entries per chunk: their ids make one IN list
STRATEGY = "set_based"
SQLITE_UPDATE_FROM = (3, 33, 0)  # the first SQLite with UPDATE ... FROM


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


def range_aggregate(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Reconcile the ``size`` entries of ``base`` after the primary key ``after`` by a range read
    into Python, then an UPDATE of the drifted rows (the fallback of ``chunk_reconcile``); None
    when the walk is over. With ``dry_run``, count the drifted entries and write nothing."""
    if not dry_run:
        commit_asynchronously()
    rows, comments, pingbacks = range_read(base, after, size)
    if not rows:
        return None
    drifted = [pk for pk, stored_c, stored_p in rows if stored_c != comments.get(pk, 0) or stored_p != pingbacks.get(pk, 0)]
    if drifted and not dry_run:
        counts_set(drifted)
    return ChunkResult(len(rows), len(drifted), rows[-1][0])


def set_based_supported(connection) -> bool:
    """Whether ``set_based`` has a statement for this connection's database."""
    if connection.vendor == "sqlite":
        return sqlite3.sqlite_version_info >= SQLITE_UPDATE_FROM
    return connection.vendor in ("postgresql", "mysql", "microsoft")


def _compiled(query: QuerySet, connection) -> tuple[str, list]:
    sql, params = query.query.get_compiler(connection=connection).as_sql()
    return sql, list(params)


def _counts_sql(base: QuerySet, connection, *, after: int, hi: int, size: int) -> tuple[str, list]:
    """The chunk's true counts, one row per entry of the chunk: ``(id, nc, np)``.

    The chunk is the keyset read (``pk > after``, ``LIMIT size``); each count is a GROUP BY over an
    index range ``(after, hi]`` of its foreign key (``hi``: the chunk's last primary key)."""
    qn = connection.ops.quote_name
    chunk = _compiled(keyset(base, after, size).values(k=F("pk"))[:size], connection)
    own = Comment.objects.filter(entry_id__gt=after, entry_id__lte=hi)
    theirs = Comment.objects.filter(entry__duplicate_of__gt=after, entry__duplicate_of__lte=hi)
    pings = Pingback.objects.filter(target_id__gt=after, target_id__lte=hi)
    parts = [chunk] + [
        _compiled(query.order_by().values(k=F(key)).annotate(n=Count("*")), connection)
        for query, key in ((own, "entry_id"), (theirs, "entry__duplicate_of"), (pings, "target_id"))
    ]
    e, c, d, p, k, n = (qn(name) for name in ("e", "c", "d", "p", "k", "n"))
    sql = (f"SELECT {e}.{k} AS {qn('id')}, COALESCE({c}.{n}, 0) + COALESCE({d}.{n}, 0) AS {qn('nc')}, "
           f"COALESCE({p}.{n}, 0) AS {qn('np')} FROM ({parts[0][0]}) {e} "
           f"LEFT JOIN ({parts[1][0]}) {c} ON {c}.{k} = {e}.{k} "
           f"LEFT JOIN ({parts[2][0]}) {d} ON {d}.{k} = {e}.{k} "
           f"LEFT JOIN ({parts[3][0]}) {p} ON {p}.{k} = {e}.{k}")
    return sql, [param for _, params in parts for param in params]


def set_based_sql(base: QuerySet, connection, *, after: int, hi: int, size: int, dry_run: bool = False) -> tuple[str, list]:
    """The one statement that reconciles a chunk in this connection's dialect: an UPDATE of the
    drifted rows, or with ``dry_run`` a ``SELECT COUNT(*)`` of them."""
    qn = connection.ops.quote_name
    meta = Entry._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    comments, pingbacks, updated = (qn(meta.get_field(name).column)
                                    for name in ("number_of_comments", "number_of_pingbacks", "updated_at"))
    s, sid, nc, np = qn("s"), qn("id"), qn("nc"), qn("np")
    want, params = _counts_sql(base, connection, after=after, hi=hi, size=size)
    drift = f"({table}.{comments} <> {s}.{nc} OR {table}.{pingbacks} <> {s}.{np})"
    if dry_run:
        return f"SELECT COUNT(*) FROM {table} INNER JOIN ({want}) {s} ON {table}.{pk} = {s}.{sid} WHERE {drift}", params
    # The API's updated_since shows a counter that changed.
    now = meta.get_field("updated_at").get_db_prep_value(timezone.now(), connection)
    if connection.vendor == "mysql":
        return (f"UPDATE {table} INNER JOIN ({want}) {s} ON {table}.{pk} = {s}.{sid} "
                f"SET {table}.{comments} = {s}.{nc}, {table}.{pingbacks} = {s}.{np}, {table}.{updated} = %s "
                f"WHERE {drift}"), [*params, now]
    assignments = f"SET {comments} = {s}.{nc}, {pingbacks} = {s}.{np}, {updated} = %s"
    if connection.vendor == "microsoft":
        # NOCOUNT OFF, as mssql-django's own UPDATE: its INSERTs leave the session's NOCOUNT ON,
        # which would hide the row count.
        return (f"SET NOCOUNT OFF; UPDATE {table} {assignments} FROM {table} INNER JOIN ({want}) {s} "
                f"ON {table}.{pk} = {s}.{sid} WHERE {drift}"), [now, *params]
    return f"UPDATE {table} {assignments} FROM ({want}) {s} WHERE {table}.{pk} = {s}.{sid} AND {drift}", [now, *params]


def chunk_bounds(base: QuerySet, connection, *, after: int, size: int) -> tuple[int, int | None]:
    """(entries in the chunk, its last primary key): one aggregate over the keyset read."""
    qn = connection.ops.quote_name
    sql, params = _compiled(keyset(base, after, size).values(k=F("pk"))[:size], connection)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), MAX({qn('b')}.{qn('k')}) FROM ({sql}) {qn('b')}", params)
        scanned, hi = cursor.fetchone()
    return scanned, hi


def set_based(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Reconcile the ``size`` entries of ``base`` after the primary key ``after`` with one
    set-based statement (``set_based_sql``); None when the walk is over. With ``dry_run``, count
    the drifted entries and write nothing. Needs ``set_based_supported``."""
    connection = connections[base.db]
    if not dry_run:
        commit_asynchronously()
    scanned, hi = chunk_bounds(base, connection, after=after, size=size)
    if not scanned:
        return None
    sql, params = set_based_sql(base, connection, after=after, hi=hi, size=size, dry_run=dry_run)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        changed = cursor.fetchone()[0] if dry_run else cursor.rowcount
    return ChunkResult(scanned, changed, hi)


def chunk_reconcile(base: QuerySet, *, after: int, size: int, dry_run: bool = False) -> ChunkResult | None:
    """Reconcile the ``size`` entries of ``base`` after the primary key ``after``; None when the walk
    is over. With ``dry_run``, count the drifted entries and write nothing. ``set_based`` where the
    database has the statement, ``range_aggregate`` elsewhere.

    The chunk's transaction commits asynchronously on PostgreSQL (see ``commit_asynchronously``):
    a commit lost in a crash leaves counters that the next run recomputes.
    """
    if set_based_supported(connections[base.db]):
        return set_based(base, after=after, size=size, dry_run=dry_run)
    return range_aggregate(base, after=after, size=size, dry_run=dry_run)


def counters_refresh(entry_ids: Sequence[int]) -> int:
    """Set the counters of these entries and of their canonical entries from their rows (used by
    ingest inside its transaction)."""
    ids = set(entry_ids)
    for batch in chunked(sorted(ids), MAX_CHUNK):
        ids.update(Entry.objects.filter(pk__in=batch, duplicate_of__isnull=False).values_list("duplicate_of", flat=True))
    ids = sorted(ids)
    return sum(counts_set(batch) for batch in chunked(ids, MAX_CHUNK))
