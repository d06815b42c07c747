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
pyodbc and ODBC Driver 18 a SQL Server deadlock (1205) arrives as ``django.db.utils.Error`` and a
lock timeout (1222) or Azure SQL's 40613 as ``ProgrammingError``. So code that turns a database
failure into a message or a retry catches ``django.db.Error``, the base, not ``DatabaseError``.
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

from ingest.errors import NestedAtomicError, first_line

log = logging.getLogger("ingest.retry")
T = TypeVar("T")

# SQL Server / Azure SQL native error numbers worth a retry.
MSSQL_TRANSIENT = frozenset(
    {
        4060, 40197, 40501, 40613, 49918, 49919, 49920,  # Azure SQL: database unavailable, throttled, reconfiguring
        40143, 40540,  # Azure SQL: "The service has encountered an error processing your request. Please try again."
        42108, 42109,  # Azure Synapse SQL pool paused / warming up
        4221,  # login timeout during secondary catch-up
        10928, 10929,  # resource limits reached
        10053, 10054, 64, 233,  # transport-level errors: connection dropped
        1204,  # the engine cannot obtain a LOCK resource at this time (lock memory exhausted)
        1205,  # deadlock victim
        1222,  # lock request timeout
    }
)
MSSQL_TRANSIENT_SQLSTATES = frozenset({"40001", "08S01", "08001", "HYT00"})
PG_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03"})
MYSQL_TRANSIENT = frozenset({1213, 1205, 2006, 2013})
SQLITE_TRANSIENT = ("database is locked", "database table is locked", "database schema has changed")

# pyodbc ends each diagnostic record with " (<native number>)", records are joined by "; ", and the
# whole message ends with " (<ODBC function>)": "[40001] [Microsoft]...[SQL Server]Transaction ...
# Rerun the transaction. (1205) (SQLExecDirectW)". Only that position holds the error number; a
# "(233)" elsewhere is data ("The duplicate key value is (233).").
_NATIVE_NUMBER = re.compile(r"\((\d{1,6})\)(?=; \[[0-9A-Z]{5}\] |\s\(SQL\w+\)\s*$|\s*$)")
_SQLSTATE_PREFIX = re.compile(r"^\[?([0-9A-Z]{5})\]?")

# mssql-python keeps neither the native number nor the SQLSTATE: its exception has ``driver_error``,
# a fixed phrase per SQLSTATE ("Serialization failure" for 40001), and ``ddbc_error``, the driver's
# text with the server's message ("[Microsoft][SQL Server]Lock request time out period exceeded.").
# So the server's transient errors are known here by the (us_english) start of their message; under
# another login language only those with a transient SQLSTATE (deadlock, lost connection, timeout)
# are recognised. tests/test_mssql_driver.py checks each one through the real driver.
MSSQL_TRANSIENT_MESSAGES = {
    1204: r"The instance of the SQL Server Database Engine cannot obtain a LOCK resource at this time",
    1205: r"Transaction \(Process ID \d+\) was deadlocked on .* resources with another process",
    1222: r"Lock request time out period exceeded",
    4060: r'Cannot open database ".*" requested by the login',
    4221: r"Login to read-secondary failed due to long wait on",
    10928: r"Resource ID ?: ?-?\d+\. The .* limit for the database is \d+ and has been reached",
    10929: r"Resource ID ?: ?-?\d+\. The .* minimum guarantee is \d+, maximum limit is \d+",
    10053: r"A transport-level error has occurred",  # also 10054: the same words, another provider text
    64: r"A connection was successfully established with the server, but then an error occurred",  # also 233
    40143: r"The service has encountered an error processing your request",  # also 40197, 40540
    40501: r"The service is currently busy",
    40613: r"Database '.*' on server '.*' is not currently available",
    42108: r"Can not connect to the SQL pool since it is paused",
    42109: r"The SQL pool is warming up",
    49918: r"Cannot process request\. Not enough resources to process request",
    49919: r"Cannot process create or update request\. Too many create or update operations in progress",
    49920: r"Cannot process request\. Too many operations in progress for subscription",
}
_TRANSIENT_MESSAGE = re.compile("|".join(f"(?:{p})" for p in MSSQL_TRANSIENT_MESSAGES.values()))
_DRIVER_PREFIX = re.compile(r"^(?:\[[^\]]*\])*")  # "[Microsoft][SQL Server]" before the server's text
_MSSQL_PYTHON_TEXT = re.compile(r"^Driver Error: (.*?)(?:; DDBC Error: (.*))?$", re.S)


def _chain(exc: BaseException):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _mssql_transient(exc: BaseException) -> bool:
    """pyodbc (and Django's copy of its error) carries (sqlstate, "[...][SQL Server]message (1205)
    (SQLExecDirectW)") in args: classify on the native number or the SQLSTATE. mssql-python (and
    Django's copy, "Driver Error: ...; DDBC Error: ...") on its SQLSTATE phrase or the message."""
    args = [str(a) for a in getattr(exc, "args", ())]
    numbers = {int(n) for a in args for n in _NATIVE_NUMBER.findall(a.strip())}
    if numbers & MSSQL_TRANSIENT:
        return True
    states = {m.group(1) for a in args if (m := _SQLSTATE_PREFIX.match(a.strip()))}
    if states & MSSQL_TRANSIENT_SQLSTATES:
        return True
    driver_error, ddbc_error = getattr(exc, "driver_error", None), getattr(exc, "ddbc_error", None)
    if driver_error is None and args and (m := _MSSQL_PYTHON_TEXT.match(args[0])):
        driver_error, ddbc_error = m.groups()
    if driver_error is None:
        return False
    if _mssql_python_sqlstates().get(driver_error) in MSSQL_TRANSIENT_SQLSTATES:
        return True
    server_text = _DRIVER_PREFIX.sub("", str(ddbc_error or ""), count=1)
    return bool(_TRANSIENT_MESSAGE.match(server_text))


@functools.cache
def _mssql_python_sqlstates() -> dict[str, str]:
    """mssql-python's phrase for each transient SQLSTATE, read from its own table: {phrase: sqlstate}."""
    try:
        from mssql_python.exceptions import sqlstate_to_exception
    except Exception:  # not installed or not loadable: no exception of its can reach us either
        return {}
    phrases = {}
    for state in MSSQL_TRANSIENT_SQLSTATES:
        exc = sqlstate_to_exception(state, "")
        if exc is not None:
            phrases[exc.driver_error] = state
    return phrases


# The driver manager's words when the ODBC driver named in the connection string cannot be loaded
# (unixODBC: not registered, or its library missing; Windows: IM002). pyodbc raises them at connect.
_MISSING_DRIVER = re.compile(r"Can't open lib '([^']*)'|Data source name not found and no default driver specified"
                             r"|specified driver could not be loaded", re.I)


def missing_odbc_driver(exc: BaseException) -> str | None:
    """The driver named in an error saying the ODBC driver cannot be loaded ("" when unnamed), or None."""
    for err in _chain(exc):
        match = _MISSING_DRIVER.search(" ".join(str(a) for a in getattr(err, "args", ())) or str(err))
        if match:
            return match.group(1) or ""
    return None


def is_transient(exc: BaseException, vendor: str | None = None) -> bool:
    """True when retrying the whole transaction may succeed."""
    for err in _chain(exc):
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
    collided = False
    for attempt in range(attempts):
        try:
            with transaction.atomic(using=using, durable=True):
                return fn()
        except db_utils.Error as exc:
            # A unique key taken by a concurrent writer is worth one more try: the retry reads the
            # rows that writer committed and takes the update path. A collision that repeats is
            # about the data itself (e.g. two keys a case-insensitive collation calls equal), which
            # no retry fixes: the caller turns it into that source's failure.
            conflict = isinstance(exc, db_utils.IntegrityError) and not collided
            collided = collided or conflict
            if attempt + 1 >= attempts or not (conflict or is_transient(exc, connection.vendor)):
                raise
            if not connection.in_atomic_block:
                # A lost or deadlocked connection may be unusable; the next attempt reconnects.
                # Closing a broken connection can fail too: that must not replace the error at hand.
                try:
                    connection.close()
                except Exception as close_error:
                    log.debug("closing the connection after a transient error failed", exc_info=close_error)
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
                    "error": first_line(exc, 300),
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


_CONSTRAINT = (
    re.compile(r'unique constraint "([^"]+)"'),  # PostgreSQL
    re.compile(r"for key '([^']+)'"),  # MariaDB / MySQL
    re.compile(r"UNIQUE constraint failed: ([\w., ]+)"),  # SQLite: the columns
    re.compile(r"(?:constraint|unique index) '([^']+)'"),  # SQL Server
)


def constraint_named(exc: BaseException) -> str:
    """The unique constraint (or, on SQLite, its columns) an IntegrityError names, or ""."""
    for err in _chain(exc):
        text = str(err)
        for pattern in _CONSTRAINT:
            if match := pattern.search(text):
                return match.group(1).strip()
    return ""

