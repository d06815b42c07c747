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
from ingest.db import WriteConflict
from ingest.retry import RetryStats, is_transient, retrying_atomic, run_atomic


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


_ODBC18 = "[Microsoft][ODBC Driver 18 for SQL Server][SQL Server]"


@pytest.mark.nodb
@pytest.mark.parametrize("args, expected", [
    # Only the number pyodbc puts before the ODBC function is the error's; others are data.
    (("23000", f"[23000] {_ODBC18}Violation of UNIQUE KEY constraint 'uq'. Cannot insert duplicate key in object "
      "'dbo.ingest_entry'. The duplicate key value is (233). (2627) (SQLExecDirectW)"), False),
    (("42000", f"[42000] {_ODBC18}String or binary data would be truncated in table 'e', column 'title'. Truncated "
      "value: 'Deadlock (1205)'. (2628) (SQLExecDirectW)"), False),
    (("23000", f"[23000] {_ODBC18}Violation of PRIMARY KEY constraint 'pk'. The duplicate key value is (1205). "
      f"(2627); [01000] {_ODBC18}The statement has been terminated. (3621) (SQLExecute)"), False),
    (("42000", f"[42000] {_ODBC18}The SQL pool is warming up. Please try again. (42109) (SQLExecDirectW)"), True),
    (("HY000", f"[HY000] {_ODBC18}The instance of the SQL Server Database Engine cannot obtain a LOCK resource at "
      "this time. (1204) (SQLExecDirectW)"), True),
    (("42000", f"[42000] {_ODBC18}Database 'p' on server 's' is not currently available. (40613) (SQLDriverConnect)"), True),
])
def test_sql_server_native_number_is_read_from_its_place_only(args, expected):
    assert is_transient(wrapped(FakeOdbcError(*args), cls=db_utils.Error), "microsoft") is expected


class FakeMssqlPythonError(Exception):
    """Shaped like an mssql-python error: no native number, no SQLSTATE; its phrase and the text."""

    __module__ = "mssql_python.exceptions"

    def __init__(self, driver_error, ddbc_error):
        self.driver_error, self.ddbc_error = driver_error, ddbc_error
        super().__init__(f"Driver Error: {driver_error}; DDBC Error: {ddbc_error}")


@pytest.mark.nodb
@pytest.mark.parametrize("driver_error, ddbc_error, expected", [
    ("Serialization failure", "[Microsoft][SQL Server]Transaction (Process ID 57) was deadlocked on lock resources "
     "with another process and has been chosen as the deadlock victim. Rerun the transaction.", True),
    ("Communication link failure", "[Microsoft]TCP Provider: Error code 0x2746", True),
    ("Syntax error or access violation", "[Microsoft][SQL Server]Lock request time out period exceeded.", True),
    ("General error", "[Microsoft][SQL Server]Resource ID : 1. The request limit for the database is 60 and has "
     "been reached.", True),
    ("Integrity constraint violation", "[Microsoft][SQL Server]Violation of UNIQUE KEY constraint 'uq'. Cannot insert "
     "duplicate key in object 'dbo.e'. The duplicate key value is (Lock request time out period exceeded).", False),
    ("Syntax error or access violation", "[Microsoft][SQL Server]Incorrect syntax near 'SELEC'.", False),
])
def test_mssql_python_errors_classified_by_sqlstate_phrase_or_message(driver_error, ddbc_error, expected):
    exc = FakeMssqlPythonError(driver_error, ddbc_error)
    assert is_transient(exc, "microsoft") is expected
    assert is_transient(wrapped(exc, cls=db_utils.ProgrammingError), "microsoft") is expected
    # Django's copy alone (the cause lost, e.g. re-raised by message) still reads the same.
    assert is_transient(db_utils.ProgrammingError(*exc.args), "microsoft") is expected


@pytest.mark.nodb
def test_a_unique_key_collision_is_not_a_database_outage():
    # Transient means "the database is failing"; a collision is about the rows (see run_atomic).
    assert not is_transient(WriteConflict("duplicate key"))


@pytest.mark.django_db(transaction=True)
def test_a_unique_key_collision_is_retried_once_then_raised():
    calls = []

    def work():
        calls.append(1)
        TechnicalArticle.objects.create(name="dup", feed_url="https://e.example/dup")
        TechnicalArticle.objects.create(name="dup again", feed_url="https://e.example/dup")

    with pytest.raises(db_utils.IntegrityError):
        run_atomic(work, attempts=5)
    assert len(calls) == 2  # once more for a concurrent writer, never five times
    assert not TechnicalArticle.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_collision_with_a_concurrent_writer_succeeds_on_the_retry():
    calls = []

    def work():
        calls.append(1)
        if len(calls) == 1:
            raise WriteConflict("duplicate key value violates unique constraint \"entry_article_guid_uniq\"")
        return "stored"

    assert run_atomic(work) == "stored"
    assert len(calls) == 2


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
