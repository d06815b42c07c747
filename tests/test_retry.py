"""The retrying atomic helper: classification per backend, and real faults on PostgreSQL."""

import sqlite3
import threading

import psycopg
import pymysql
import pytest
from django.db import connection, connections, transaction
from django.db import utils as db_utils

from ingest.errors import NestedAtomicError
from ingest.models import TechnicalArticle
from ingest.retry import RetryStats, WriteConflict, is_transient, retrying_atomic, run_atomic


def wrapped(driver_exc: Exception, cls=db_utils.OperationalError) -> Exception:
    """Shape an error as Django hands it over: a django.db.utils error caused by the driver's."""
    try:
        raise cls(str(driver_exc)) from driver_exc
    except cls as exc:
        return exc


@pytest.mark.nodb
@pytest.mark.parametrize("exc, expected", [
    (psycopg.errors.DeadlockDetected("deadlock detected"), True),
    (psycopg.errors.SerializationFailure("could not serialize"), True),
    (psycopg.errors.LockNotAvailable("could not obtain lock"), True),
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg.OperationalError("server closed the connection unexpectedly"), True),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (psycopg.errors.UndefinedTable("relation does not exist"), False),
    (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), True),
    (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), True),
    (pymysql.err.OperationalError(2006, "MySQL server has gone away"), True),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
    (pymysql.err.IntegrityError(1062, "Duplicate entry"), False),
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("no such table: x"), False),
])
def test_classification_by_driver_error(exc, expected):
    assert is_transient(wrapped(exc)) is expected


class FakeOdbcError(Exception):
    """Shaped like pyodbc.Error: args = (sqlstate, message with the native number in parentheses)."""

    __module__ = "pyodbc"


@pytest.mark.nodb
@pytest.mark.parametrize("args, expected", [
    (("40001", "[40001] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Transaction (Process ID 57) was "
      "deadlocked on lock resources with another process and has been chosen as the deadlock victim. "
      "Rerun the transaction. (1205) (SQLExecDirectW)"), True),
    (("HY000", "[HY000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Lock request time out period exceeded. (1222)"), True),
    (("42000", "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Resource ID : 1. The request limit for the database is 60 and has been reached. (10928)"), True),
    (("08S01", "[08S01] [Microsoft][ODBC Driver 18 for SQL Server]TCP Provider: An existing connection was forcibly closed by the remote host. (10054)"), True),
    (("42000", "[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Database 'x' on server 'y' is not currently available. (40613)"), True),
    (("23000", "[23000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]Violation of UNIQUE KEY constraint. (2627)"), False),
])
def test_sql_server_errors_classified_by_number_even_as_plain_django_error(args, expected):
    # Through pyodbc a deadlock reaches Django as django.db.utils.Error, not OperationalError.
    assert is_transient(wrapped(FakeOdbcError(*args), cls=db_utils.Error)) is expected


@pytest.mark.nodb
def test_write_conflict_is_transient():
    assert is_transient(WriteConflict("duplicate key"))


@pytest.mark.django_db(transaction=True)
def test_refuses_to_run_inside_an_outer_atomic_block():
    with transaction.atomic():
        with pytest.raises(NestedAtomicError, match="outer atomic block"):
            run_atomic(lambda: None)


@pytest.mark.django_db(transaction=True)
def test_transient_error_is_retried_and_the_failed_attempt_leaves_nothing():
    stats = RetryStats()
    attempts = []

    def work():
        attempts.append(1)
        TechnicalArticle.objects.create(name=f"try {len(attempts)}", feed_url=f"https://e.example/{len(attempts)}")
        if len(attempts) < 3:
            raise wrapped(sqlite3.OperationalError("database is locked"))
        return "done"

    assert run_atomic(work, stats=stats) == "done"
    assert stats.retries == 2
    assert list(TechnicalArticle.objects.values_list("name", flat=True)) == ["try 3"]


@pytest.mark.django_db(transaction=True)
def test_permanent_error_is_not_retried():
    calls = []

    @retrying_atomic()
    def work():
        calls.append(1)
        raise wrapped(sqlite3.OperationalError("no such table: nope"))

    with pytest.raises(db_utils.OperationalError):
        work()
    assert len(calls) == 1


@pytest.mark.django_db(transaction=True)
def test_gives_up_after_the_bounded_number_of_attempts(settings):
    settings.DB_RETRY_ATTEMPTS = 3
    calls = []

    def work():
        calls.append(1)
        raise wrapped(sqlite3.OperationalError("database is locked"))

    with pytest.raises(db_utils.OperationalError):
        run_atomic(work)
    assert len(calls) == 3


# --- Real faults on PostgreSQL ---------------------------------------------------------------------

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a real PostgreSQL")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_real_deadlock_between_two_connections_is_retried():
    a = TechnicalArticle.objects.create(name="a", feed_url="https://a.example/feed")
    b = TechnicalArticle.objects.create(name="b", feed_url="https://b.example/feed")
    both_locked_first = threading.Barrier(2, timeout=10)
    stats = RetryStats()
    errors = []

    def worker(first, second):
        attempt = {"n": 0}

        def work():
            attempt["n"] += 1
            TechnicalArticle.objects.filter(pk=first.pk).update(consecutive_failures=F("consecutive_failures") + 1)
            if attempt["n"] == 1:
                both_locked_first.wait()  # each holds one row; the second UPDATE deadlocks
            TechnicalArticle.objects.filter(pk=second.pk).update(consecutive_failures=F("consecutive_failures") + 1)

        try:
            run_atomic(work, stats=stats)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    from django.db.models import F

    threads = [threading.Thread(target=worker, args=(a, b)), threading.Thread(target=worker, args=(b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert stats.retries >= 1  # PostgreSQL chose a victim, which was retried
    # Both transactions committed exactly once: each row was incremented by both workers.
    assert sorted(TechnicalArticle.objects.values_list("consecutive_failures", flat=True)) == [2, 2]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_connection_killed_mid_transaction_is_retried_and_nothing_is_half_written():
    stats = RetryStats()
    attempts = []

    def work():
        attempts.append(1)
        TechnicalArticle.objects.create(name="first half", feed_url=f"https://half.example/{len(attempts)}")
        if len(attempts) == 1:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid = cursor.fetchone()[0]
            with psycopg.connect(_dsn(), autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", [pid])
        TechnicalArticle.objects.create(name="second half", feed_url=f"https://half.example/b{len(attempts)}")

    run_atomic(work, stats=stats)
    assert stats.retries == 1
    assert sorted(TechnicalArticle.objects.values_list("feed_url", flat=True)) == [
        "https://half.example/2", "https://half.example/b2"]


def _dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST']} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"
