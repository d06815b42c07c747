"""The bottom of the ORM tier: how much one statement may carry, and how a write transaction commits.

Owns the database facts every writer shares, so that no writer imports another for them:

* statement limits: ``MAX_ROWS_PER_STATEMENT`` (rows one INSERT/UPDATE/DELETE may touch: below SQL
  Server's lock escalation threshold, about 5,000 locks per statement), ``MAX_IN_LIST`` (values in
  one ``IN (...)``) and ``SQL_SERVER_MAX_PARAMS`` (2,100 parameters per statement);
* batching: ``chunked``, and the batch sizes ``in_batch_size`` / ``write_batch_size`` that respect
  those limits on the current connection;
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
