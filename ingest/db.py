"""The bottom of the ORM tier: how much one statement may carry, and how a write transaction commits.

Owns the database facts every writer shares, so that no writer imports another for them:

* statement limits: ``MAX_ROWS_PER_STATEMENT`` (rows one INSERT/UPDATE/DELETE may touch: below SQL
  Server's lock escalation threshold, about 5,000 locks per statement), ``MAX_IN_LIST`` (values in
  one ``IN (...)``) and ``SQL_SERVER_MAX_PARAMS`` (2,100 parameters per statement);
* batching: ``chunked``, and the batch sizes ``in_batch_size`` / ``write_batch_size`` that respect
  those limits on the current connection;
* ``rows_insert`` / ``rows_update`` / ``rows_select``: the writers' rows through the DB-API cursor,
  without model instances or query compilation (the bulk writes of ingest: entries, authors and their links, entry links, pingbacks,
  enclosures);
* ``commit_asynchronously``: PostgreSQL's asynchronous commit for one transaction;
* ``WriteConflict``: a unique key taken while writing a batch;
* ``no_query_log``: no DEBUG query log for long-running work (an ingest run, a recount, a prune, a
  webhook delivery), which ``ingest.cli.PipelineCommand`` and every Celery task enter.

Imports Django only (``ingest.models``, ``ingest.types`` and ``ingest.errors`` are the most it may
ever import); no domain decisions (what to write, when to retry) live here. ``ingest.retry`` and the writers (``upsert``,
``counters``, ``comments``, ``pingbacks``, ``services_delete``) import from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from django.conf import settings
from django.db import connection, connections
from django.db import utils as db_utils
from django.db.models.constants import OnConflict

T = TypeVar("T")
MAX_ROWS_PER_STATEMENT = 1000
MAX_IN_LIST = 2000
SQL_SERVER_MAX_PARAMS = 2100


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def in_batch_size() -> int:
    """How many values one ``IN (...)`` may carry on this connection, leaving room for other params.

    SQLite reports its limit in ``features.max_query_params``; SQL Server's 2,100 is not in
    mssql-django's features, so it is named here; PostgreSQL and MariaDB have no practical limit.
    """
    limit = connection.features.max_query_params
    if connection.vendor == "microsoft":
        limit = SQL_SERVER_MAX_PARAMS
    return MAX_IN_LIST if limit is None else max(1, min(MAX_IN_LIST, limit - 10))


def write_batch_size(fields: Sequence[str], objs: Sequence) -> int:
    """Rows per ``bulk_create``/``bulk_update`` statement writing ``fields`` of ``objs`` (model
    instances of one model): the backend's parameter limit, capped at ``MAX_ROWS_PER_STATEMENT``."""
    if not objs:
        return MAX_ROWS_PER_STATEMENT
    model_fields = [type(objs[0])._meta.get_field(name) for name in fields]
    backend = connection.ops.bulk_batch_size(model_fields, objs) or MAX_ROWS_PER_STATEMENT
    return max(1, min(backend, MAX_ROWS_PER_STATEMENT))


# Columns whose values go to the driver as given (str, int or None, what the ORM's
# get_db_prep_save returns for such values unchanged); every other column is prepared by its field.
_AS_GIVEN = frozenset({"CharField", "TextField", "IntegerField", "BigIntegerField", "SmallIntegerField",
                       "PositiveIntegerField", "PositiveSmallIntegerField", "PositiveBigIntegerField", "ForeignKey"})


def _statement_rows(fields: Sequence) -> int:
    """Rows one multi-row ``VALUES`` statement may carry: the backend's parameter limit (SQLite's
    999, mssql-django's 2,050), at most ``MAX_ROWS_PER_STATEMENT`` (SQL Server's 1,000 rows)."""
    return max(1, min(connection.ops.bulk_batch_size(list(fields), [None] * MAX_ROWS_PER_STATEMENT)
                      or MAX_ROWS_PER_STATEMENT, MAX_ROWS_PER_STATEMENT))


def _prepared(model, names: Sequence[str], rows: Sequence[Sequence]) -> tuple[list, list[list]]:
    """The fields ``names`` and the rows' values as the driver takes them. A field's preparation of
    one value is done once per call (a feed's rows share their fetch time and most of their dates)."""
    fields = [model._meta.get_field(name) for name in names]
    prepared = [i for i, f in enumerate(fields) if f.get_internal_type() not in _AS_GIVEN]
    values = [list(row) for row in rows]
    for i in prepared:
        field, seen = fields[i], {}
        for row in values:
            value = row[i]
            try:
                row[i] = seen[value]
            except KeyError:
                row[i] = seen[value] = field.get_db_prep_save(value, connection)
            except TypeError:  # an unhashable value (a JSON field's dict)
                row[i] = field.get_db_prep_save(value, connection)
    return fields, values


def rows_insert(model, names: Sequence[str], rows: Sequence[Sequence], *, returning: bool = False,
                ignore_conflicts: bool = False) -> list[int]:
    """INSERT ``rows`` (values of the fields ``names``, in that order) into ``model``'s table, the
    values stored exactly as the ORM would (``get_db_prep_save`` per field; str and int columns as
    given). Key columns are the caller's: ``Keyed.keys_fill`` does not run here.

    With ``returning``, the new primary keys in row order where the backend returns them from a
    multi-row INSERT (SQLite >= 3.35, MariaDB >= 10.5: ``INSERT ... VALUES (...), ... RETURNING id``
    per chunk), else [] and the caller reads them back by natural key: on PostgreSQL too, where
    psycopg's pipelined ``executemany`` and one SELECT by key take half the time of the multi-row
    INSERT ... RETURNING (bench/upsert.py's rows). Otherwise one
    ``executemany`` per ``MAX_ROWS_PER_STATEMENT`` rows (psycopg pipelines it, PyMySQL makes it a
    multi-row INSERT), but on SQL Server: mssql-django hands pyodbc no ``fast_executemany``, so an
    ``executemany`` there is one round trip per row, and multi-row ``VALUES`` chunks are sent
    instead (at most 1,000 rows and 2,050 parameters each). ``ignore_conflicts`` skips rows whose
    unique key is taken (not on SQL Server, which has no such INSERT). Inside the caller's atomic block.
    """
    if not rows:
        return []
    quote = connection.ops.quote_name
    fields, values = _prepared(model, names, rows)
    conflict = OnConflict.IGNORE if ignore_conflicts else None
    head = (f"{connection.ops.insert_statement(on_conflict=conflict)} {quote(model._meta.db_table)} "
            f"({', '.join(quote(f.column) for f in fields)}) VALUES ")
    tail = connection.ops.on_conflict_suffix_sql(fields, conflict, None, None)
    row_sql = f"({', '.join(['%s'] * len(fields))})"
    returning = (returning and not ignore_conflicts and connection.vendor != "postgresql"
                 and connection.features.can_return_rows_from_bulk_insert)
    ids: list[int] = []
    with connection.cursor() as cursor:
        if returning or connection.vendor == "microsoft":
            back = connection.ops.return_insert_columns([model._meta.pk])[0] if returning else ""
            for batch in chunked(values, _statement_rows(fields)):
                sql = head + ", ".join([row_sql] * len(batch)) + (f" {tail}" if tail else "") + (f" {back}" if back else "")
                cursor.execute(sql, [v for row in batch for v in row])
                if returning:
                    ids += [row[0] for row in cursor.fetchall()]
        else:
            sql = head + row_sql + (f" {tail}" if tail else "")
            for batch in chunked(values, MAX_ROWS_PER_STATEMENT):
                cursor.executemany(sql, batch)
    return ids


def rows_select(model, names: Sequence[str], *, column: str, values: Sequence, where: dict | None = None,
                order: Sequence[str] = ()) -> list[tuple]:
    """The columns ``names`` of ``model``'s rows whose ``column`` is one of ``values`` (and whose
    ``where`` columns equal the given values): one SELECT per IN-batch through the cursor, without
    the ORM's query compilation. Values come back as the driver returns them, so only for text and
    integer columns (dates would need the ORM's converters)."""
    quote = connection.ops.quote_name
    where = where or {}
    head = (f"SELECT {', '.join(quote(name) for name in names)} FROM {quote(model._meta.db_table)} WHERE "
            + "".join(f"{quote(name)} = %s AND " for name in where) + f"{quote(column)} IN ")
    tail = f" ORDER BY {', '.join(quote(name) for name in order)}" if order else ""
    found: list[tuple] = []
    with connection.cursor() as cursor:
        for batch in chunked(values, max(1, in_batch_size() - len(where))):
            cursor.execute(f"{head}({', '.join(['%s'] * len(batch))}){tail}", [*where.values(), *batch])
            found += cursor.fetchall()
    return found


def rows_update(model, names: Sequence[str], rows: Sequence[Sequence]) -> None:
    """UPDATE the fields ``names`` of rows given as (primary key, values of ``names``...), by
    primary key: one ``executemany`` of ``UPDATE ... SET a = %s, ... WHERE id = %s`` per
    ``MAX_ROWS_PER_STATEMENT`` rows, values prepared as ``rows_insert`` does. Not on SQL Server
    (one round trip per row there: its writers use ``bulk_update``)."""
    if not rows:
        return
    quote = connection.ops.quote_name
    fields, values = _prepared(model, names, [row[1:] for row in rows])
    pk = model._meta.pk
    sql = (f"UPDATE {quote(model._meta.db_table)} SET {', '.join(f'{quote(f.column)} = %s' for f in fields)} "
           f"WHERE {quote(pk.column)} = %s")
    params = [[*vals, row[0]] for vals, row in zip(values, rows)]
    with connection.cursor() as cursor:
        for batch in chunked(params, MAX_ROWS_PER_STATEMENT):
            cursor.executemany(sql, batch)


def commit_asynchronously() -> None:
    """Let this transaction's COMMIT return before its WAL is flushed (PostgreSQL only).

    Safe for the writes that call it because each commits a unit that is done again when lost: a
    source's entries commit with its bookkeeping, a recount chunk recomputes. A crash can lose only
    the last fraction of a second of commits, entries and bookkeeping alike, which leaves those
    sources due: the next run fetches and writes them again. Never torn, never lost for good.
    Per-source commits otherwise wait on a disk flush each. INGEST_ASYNC_COMMIT=0 turns it off.
    """
    if connection.vendor == "postgresql" and settings.INGEST_ASYNC_COMMIT:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")


class WriteConflict(db_utils.IntegrityError):
    """A unique key was taken while writing a batch: by a concurrent writer (``run_atomic`` retries
    once, and the retry sees its rows) or by the data itself (it repeats, and fails the source)."""


@contextmanager
def no_query_log() -> Iterator[None]:
    """For the block, this thread's connections do not keep Django's DEBUG query log.

    With DJANGO_DEBUG=1 Django logs every statement's SQL, parameters interpolated, in
    ``connection.queries`` (up to 9,000 of them), which in a run of many feeds grows the process by
    tens of MB, with the time spent formatting them. Here a connection's cursor logs only when it is
    asked to explicitly (``force_debug_cursor``, which ``CaptureQueriesContext`` sets), never for
    DEBUG alone; ``connection.execute_wrapper`` is untouched. Nested blocks are fine. Covers every
    database alias of the calling thread, the one that writes (fetch threads never touch the ORM).
    """
    patched = []
    for wrapper in connections.all():
        if "make_debug_cursor" in vars(wrapper):
            continue  # an enclosing block already did it
        wrapper.make_debug_cursor = _quiet_debug_cursor(wrapper)
        patched.append(wrapper)
    try:
        yield
    finally:
        for wrapper in patched:
            del wrapper.make_debug_cursor


def _quiet_debug_cursor(wrapper):
    logged = type(wrapper).make_debug_cursor.__get__(wrapper)

    def make_debug_cursor(cursor):
        return logged(cursor) if wrapper.force_debug_cursor else wrapper.make_cursor(cursor)

    return make_debug_cursor
