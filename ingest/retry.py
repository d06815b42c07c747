"""Transient-error classification per backend, and the retrying atomic helper every write uses.

``run_atomic(fn)`` / ``@retrying_atomic()`` run the work in ``transaction.atomic()``. On a transient
database error (deadlock victim, lock timeout, serialization failure, lost connection, Azure SQL
throttling, SQLite "database is locked") the transaction has rolled back; the helper closes the
connection (it may be broken), sleeps with capped exponential backoff and full jitter, and runs the
work again, at most ``attempts`` times. Any other error re-raises at once.

The helper refuses to run inside an outer atomic block: the rollback would only undo a savepoint,
and re-running the work could not restart the outer transaction. ``atomic(durable=True)`` enforces
that for us (and knows the atomic blocks Django's test cases open).

Classification is by error number / SQLSTATE, walking the exception chain, not by class: through
pyodbc a SQL Server deadlock (1205) arrives as ``django.db.utils.Error``, not ``OperationalError``.
"""

from __future__ import annotations

import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db import utils as db_utils

from ingest.errors import NestedAtomicError

log = logging.getLogger("ingest.retry")
T = TypeVar("T")

# SQL Server / Azure SQL native error numbers worth a retry.
MSSQL_TRANSIENT = frozenset(
    {
        4060, 40197, 40501, 40613, 49918, 49919, 49920,  # Azure SQL: database unavailable, throttled, reconfiguring
        4221,  # login timeout during secondary catch-up
        10928, 10929,  # resource limits reached
        10053, 10054, 64, 233,  # transport-level errors: connection dropped
        1205,  # deadlock victim
        1222,  # lock request timeout
    }
)
MSSQL_TRANSIENT_SQLSTATES = frozenset({"40001", "08S01", "08001", "HYT00"})
PG_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
MYSQL_TRANSIENT = frozenset({1213, 1205, 2006, 2013})
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database schema has changed")

_NATIVE_NUMBER = re.compile(r"\((\d{1,6})\)")
_SQLSTATE_PREFIX = re.compile(r"^\[?([0-9A-Z]{5})\]?")


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _mssql_transient(exc: BaseException) -> bool:
    """pyodbc puts (sqlstate, "[...][SQL Server]message (1205) (SQLExecDirectW)") in args;
    mssql-python exposes the same text. Classify on the native number or the SQLSTATE."""
    args = [str(a) for a in getattr(exc, "args", ())]
    text = " ".join(args)
    numbers = {int(n) for n in _NATIVE_NUMBER.findall(text)}
    if numbers & MSSQL_TRANSIENT:
        return True
    states = {m.group(1) for a in args if (m := _SQLSTATE_PREFIX.match(a.strip()))}
    return bool(states & MSSQL_TRANSIENT_SQLSTATES)


def is_transient(exc: BaseException, vendor: str | None = None) -> bool:
    """True when retrying the whole transaction may succeed."""
    for err in _chain(exc):
        if isinstance(err, WriteConflict):
            return True
        module = type(err).__module__ or ""
        sqlstate = getattr(err, "sqlstate", None)
        if module.startswith("psycopg") or vendor == "postgresql" and sqlstate is not None:
            if sqlstate is None:
                # psycopg raises OperationalError without a SQLSTATE when the connection is lost.
                if type(err).__name__ in ("OperationalError", "InterfaceError"):
                    return True
                continue
            if sqlstate in PG_TRANSIENT_SQLSTATES or sqlstate.startswith("08"):
                return True
            continue
        if module.startswith(("pymysql", "MySQLdb")):
            code = err.args[0] if err.args and isinstance(err.args[0], int) else None
            if code in MYSQL_TRANSIENT:
                return True
            continue
        if module.startswith(("pyodbc", "mssql_python")):
            if _mssql_transient(err):
                return True
            continue
        if module == "sqlite3":
            if any(marker in str(err).lower() for marker in SQLITE_TRANSIENT):
                return True
            continue
        if isinstance(err, db_utils.InterfaceError) and "closed" in str(err).lower():
            # Django raises this on a connection that died between two statements.
            return True
        if vendor == "microsoft" and isinstance(err, db_utils.Error) and _mssql_transient(err):
            return True
    return False


@dataclass
class RetryStats:
    """Counts retries across calls; pass one to report how many a job needed."""

    retries: int = 0


def _delay(attempt: int, base: float, cap: float) -> float:
    # Full jitter (AWS architecture blog): spreads competing retries apart better than equal jitter.
    return random.uniform(0, min(cap, base * (2 ** attempt)))


def run_atomic(
    fn: Callable[[], T],
    *,
    using: str = DEFAULT_DB_ALIAS,
    attempts: int | None = None,
    base_delay: float | None = None,
    max_delay: float | None = None,
    stats: RetryStats | None = None,
    label: str = "",
) -> T:
    """Run ``fn()`` in ``transaction.atomic(using)``, retrying the whole block on transient errors."""
    connection = connections[using]
    if connection.in_atomic_block and not getattr(connection.atomic_blocks[-1], "_from_testcase", False):
        raise NestedAtomicError(
            "run_atomic() cannot run inside an outer atomic block: a retry could not restart the outer "
            "transaction. Call it outside transaction.atomic()."
        )
    attempts = attempts or settings.DB_RETRY_ATTEMPTS
    base = settings.DB_RETRY_BASE_DELAY if base_delay is None else base_delay
    cap = settings.DB_RETRY_MAX_DELAY if max_delay is None else max_delay
    for attempt in range(attempts):
        try:
            with transaction.atomic(using=using, durable=True):
                return fn()
        except db_utils.Error as exc:
            if attempt + 1 >= attempts or not is_transient(exc, connection.vendor):
                raise
            if not connection.in_atomic_block:
                # A lost or deadlocked connection may be unusable; the next attempt reconnects.
                connection.close()
            wait = _delay(attempt, base, cap)
            if stats is not None:
                stats.retries += 1
            log.warning(
                "transient database error, retrying",
                extra={
                    "work": label or getattr(fn, "__name__", "work"),
                    "attempt": attempt + 1,
                    "max_attempts": attempts,
                    "wait_s": round(wait, 3),
                    "error": str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__,
                },
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop either returns or raises


def retrying_atomic(**options) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator form of ``run_atomic``: ``@retrying_atomic(using="default")``."""

    def decorate(func: Callable[..., T]) -> Callable[..., T]:
        call_options = {"label": func.__qualname__, **options}

        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> T:
            return run_atomic(lambda: func(*args, **kwargs), **call_options)

        return wrapper

    return decorate


class WriteConflict(db_utils.OperationalError):
    """A unique key was taken by a concurrent writer; retrying the transaction resolves it."""

