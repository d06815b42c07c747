"""SQL Server errors as the real Microsoft ODBC Driver 18 delivers them, and how ingest.retry reads them.

A loopback TDS responder (``tests/mssql/tds.py``) plays the server: it logs the driver in and answers
a statement carrying ``tds:error=<N>`` with SQL Server's error N. The client side is real: the
driver inside the mssql-python-odbc wheel, driven through pyodbc, through mssql-python, and through
Django's ``mssql`` backend on each of them. For every error number the retry table knows, and a few
it must not retry, the tables below pin the exception class and fields the driver really produces
and the classification ``is_transient`` gives it. No SQL Server needed: only unixODBC's
libodbc.so.2 (``apt-get install unixodbc``) besides the wheels; without it these tests skip, and
fail under REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import ctypes
import glob
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from django import db
from django.db import connections

from ingest.retry import MSSQL_TRANSIENT, RetryStats, is_transient, run_atomic
from tests.mssql.tds import ServerError, TdsResponder

DRIVER = "ODBC Driver 18 for SQL Server"
PYODBC_PREFIX = f"[Microsoft][{DRIVER}][SQL Server]"
MSSQL_PYTHON_PREFIX = "[Microsoft][SQL Server]"  # mssql-python cuts the driver's name out


@dataclass(frozen=True)
class Case:
    number: int
    message: str
    state: int
    severity: int
    pyodbc: tuple[str, str]  # exception class, SQLSTATE (args[0])
    mssql_python: tuple[str, str]  # exception class, driver_error
    transient: bool
    also: str = ""  # more messages in the same answer, as SQL Server sends them: "+3621"

    def __str__(self) -> str:
        return str(self.number)

    def error(self) -> ServerError:
        return ServerError(self.number, self.message, self.state, self.severity)


GENERAL = ("OperationalError", "General error")  # mssql-python's class and phrase for HY000
SYNTAX = ("ProgrammingError", "Syntax error or access violation")  # ... for 42000

CASES = [
    # Locks.
    Case(1204, "The instance of the SQL Server Database Engine cannot obtain a LOCK resource at this time. Rerun "
         "your statement when there are fewer active users. Ask the database administrator to check the lock and "
         "memory configuration for this instance, or to check for long-running transactions.", 4, 19,
         ("Error", "HY000"), GENERAL, True),
    Case(1205, "Transaction (Process ID 57) was deadlocked on lock resources with another process and has been "
         "chosen as the deadlock victim. Rerun the transaction.", 51, 13,
         ("Error", "40001"), ("OperationalError", "Serialization failure"), True),
    Case(1222, "Lock request time out period exceeded.", 56, 16, ("ProgrammingError", "42000"), SYNTAX, True),
    # Azure SQL: the database moving, restarting, throttled.
    Case(4060, 'Cannot open database "pipeline" requested by the login. The login failed.', 1, 11,
         ("ProgrammingError", "42000"), SYNTAX, True),
    Case(4221, "Login to read-secondary failed due to long wait on 'HADR_DATABASE_WAIT_FOR_TRANSITION_TO_VERSIONING'. "
         "The replica is not available for login because row versions are missing for transactions that were "
         "in-flight when the replica was recycled.", 1, 16, ("ProgrammingError", "42000"), SYNTAX, True),
    Case(10928, "Resource ID : 1. The request limit for the database is 60 and has been reached. See "
         "'http://go.microsoft.com/fwlink/?LinkId=267637' for assistance.", 1, 20, ("Error", "HY000"), GENERAL, True),
    Case(10929, "Resource ID : 1. The request minimum guarantee is 0, maximum limit is 60 and the current usage for "
         "the database is 60. However, the server is currently too busy to support requests greater than 60 for "
         "this database.", 1, 20, ("Error", "HY000"), GENERAL, True),
    Case(40143, "The service has encountered an error processing your request. Please try again.", 1, 16,
         ("ProgrammingError", "42000"), SYNTAX, True),
    Case(40197, "The service has encountered an error processing your request. Please try again. Error code 4815.",
         1, 20, ("Error", "HY000"), GENERAL, True),
    Case(40501, "The service is currently busy. Retry the request after 10 seconds. Incident ID: "
         "{5EB2A5C4-0D80-4A41-8A28-1C1D3F0A3F11}. Code: 1048577.", 1, 20, ("Error", "HY000"), GENERAL, True),
    Case(40540, "The service has encountered an error processing your request. Please try again.", 1, 16,
         ("ProgrammingError", "42000"), SYNTAX, True),
    Case(40613, "Database 'pipeline' on server 'sql-prod' is not currently available. Please retry the connection "
         "later. If the problem persists, contact customer support, and provide them the session tracing ID of "
         "'{8C6C5C5E-1A3B-4E55-9D0E-2B1F9C1D7A10}'.", 4, 17, ("ProgrammingError", "42000"), SYNTAX, True),
    Case(42108, "Can not connect to the SQL pool since it is paused. Please resume the SQL pool and try again.", 1, 16,
         ("ProgrammingError", "42000"), SYNTAX, True),
    Case(42109, "The SQL pool is warming up. Please try again.", 1, 16, ("ProgrammingError", "42000"), SYNTAX, True),
    Case(49918, "Cannot process request. Not enough resources to process request. The service is currently busy. "
         "Please retry the request later.", 1, 16, ("ProgrammingError", "42000"), SYNTAX, True),
    Case(49919, 'Cannot process create or update request. Too many create or update operations in progress for '
         'subscription "1".', 1, 16, ("ProgrammingError", "42000"), SYNTAX, True),
    Case(49920, 'Cannot process request. Too many operations in progress for subscription "1".', 1, 16,
         ("ProgrammingError", "42000"), SYNTAX, True),
    # Transport errors: raised by the client's network layer, here sent by the server with their own text
    # (test_a_dropped_connection... shows the real thing). 233 arrives as IntegrityError (SQLSTATE 23000).
    Case(10053, "A transport-level error has occurred when receiving results from the server. (provider: TCP "
         "Provider, error: 0 - An established connection was aborted by the software in your host machine.)", 1, 20,
         ("Error", "HY000"), GENERAL, True),
    Case(10054, "A transport-level error has occurred when sending the request to the server. (provider: TCP "
         "Provider, error: 0 - An existing connection was forcibly closed by the remote host.)", 1, 20,
         ("Error", "HY000"), GENERAL, True),
    Case(64, "A connection was successfully established with the server, but then an error occurred during the "
         "login process. (provider: TCP Provider, error: 0 - The specified network name is no longer available.)",
         1, 20, ("Error", "HY000"), GENERAL, True),
    Case(233, "A connection was successfully established with the server, but then an error occurred during the "
         "login process. (provider: Shared Memory Provider, error: 0 - No process is on the other end of the pipe.)",
         1, 20, ("IntegrityError", "23000"), ("IntegrityError", "Integrity constraint violation"), True),
    # Not transient: about the data or the code. Numbers in their text are data, never the error's.
    Case(2627, "Violation of UNIQUE KEY constraint 'ingest_entry_article_guid_uniq'. Cannot insert duplicate key in "
         "object 'dbo.ingest_entry'. The duplicate key value is (233).", 1, 14,
         ("IntegrityError", "23000"), ("IntegrityError", "Integrity constraint violation"), False, also="+3621"),
    Case(547, 'The INSERT statement conflicted with the FOREIGN KEY constraint "ingest_entry_article_id_fk". The '
         'conflict occurred in database "pipeline", table "dbo.ingest_technicalarticle", column \'id\'.', 0, 16,
         ("IntegrityError", "23000"), ("IntegrityError", "Integrity constraint violation"), False, also="+3621"),
    Case(8152, "String or binary data would be truncated.", 30, 16,
         ("DataError", "22001"), ("DataError", "String data, right-truncated"), False, also="+3621"),
    Case(2628, "String or binary data would be truncated in table 'pipeline.dbo.ingest_entry', column 'title'. "
         "Truncated value: 'Deadlock victims (1205)'.", 1, 16, ("ProgrammingError", "42000"), SYNTAX, False,
         also="+3621"),
    Case(208, "Invalid object name 'ingest_entry'.", 1, 16,
         ("ProgrammingError", "42S02"), ("ProgrammingError", "Base table or view not found"), False),
]
MORE = [
    ServerError(3621, "The statement has been terminated.", 0, 0),
    ServerError(18456, "Login failed for user 'pipeline'.", 1, 14),
]


# --- The driver, the responder, connections ------------------------------------------------------


def _driver_library() -> str:
    """The libmsodbcsql-18 shipped in the mssql-python-odbc wheel, for this Linux and machine."""
    import mssql_python_odbc

    machine = {"aarch64": "arm64"}.get(platform.machine(), platform.machine())
    release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    ids = " ".join(line.split("=", 1)[1].strip('"') for line in release.splitlines()
                   if line.startswith(("ID=", "ID_LIKE=")))
    distro = next((folder for names, folder in [(("debian", "ubuntu"), "debian_ubuntu"), (("rhel", "fedora", "centos"), "rhel"),
                                                 (("suse",), "suse"), (("alpine",), "alpine")]
                   if any(name in ids for name in names)), "*")
    for pattern in (f"linux/{distro}/{machine}/lib/libmsodbcsql-18*.so*", f"linux/*/{machine}/lib/libmsodbcsql-18*.so*"):
        found = sorted(glob.glob(os.path.join(mssql_python_odbc.get_libs_dir(), pattern)))
        if found:
            return found[0]
    raise FileNotFoundError(f"no libmsodbcsql-18 for {distro}/{machine} in {mssql_python_odbc.get_libs_dir()}")


def _unavailable() -> str:
    """Why the real driver cannot run here, or ""."""
    try:
        ctypes.CDLL("libodbc.so.2")
    except OSError:
        return "unixODBC's libodbc.so.2 is not installed (apt-get install unixodbc), so pyodbc cannot load"
    try:
        ctypes.CDLL(_driver_library())
        import mssql_python  # noqa: F401
        import pyodbc  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"the ODBC Driver 18 from mssql-python-odbc cannot load: {exc}"
    return ""


@pytest.fixture(scope="module")
def server():
    """One responder for the module; the driver registered for unixODBC under its usual name."""
    reason = _unavailable()
    if reason:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(f"{reason}; REQUIRE_SERVICES=1 makes this a failure", pytrace=False)
        pytest.skip(reason)
    saved = os.environ.get("ODBCSYSINI")
    with tempfile.TemporaryDirectory() as ini_dir:
        Path(ini_dir, "odbcinst.ini").write_text(f"[{DRIVER}]\nDescription=from mssql-python-odbc\nDriver={_driver_library()}\n")
        os.environ["ODBCSYSINI"] = ini_dir
        try:
            with TdsResponder({case.number: case.error() for case in CASES} | {e.number: e for e in MORE}) as responder:
                yield responder
        finally:
            if saved is None:
                os.environ.pop("ODBCSYSINI", None)
            else:
                os.environ["ODBCSYSINI"] = saved


def _connection_string(server, database="pipeline", *, driver=True) -> str:
    return (f"DRIVER={{{DRIVER}}};" if driver else "") + (
        f"SERVER=127.0.0.1,{server.port};UID=pipeline;PWD=secret;DATABASE={database};Encrypt=no")


@pytest.fixture(scope="module")
def pyodbc_connection(server):
    import pyodbc

    connection = pyodbc.connect(_connection_string(server), autocommit=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def mssql_python_connection(server):
    import mssql_python

    connection = mssql_python.connect(_connection_string(server, driver=False), autocommit=True)
    yield connection
    connection.close()


def _django_settings(server, python_driver: str, database: str = "pipeline") -> dict:
    options = {"driver": DRIVER, "extra_params": "Encrypt=no", "connection_retries": 0}
    if python_driver == "mssql_python":
        options["python_driver"] = "mssql_python"
    return {
        "ENGINE": "mssql", "NAME": database, "USER": "pipeline", "PASSWORD": "secret", "HOST": "127.0.0.1",
        "PORT": str(server.port), "OPTIONS": options, "ATOMIC_REQUESTS": False, "AUTOCOMMIT": True,
        "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False, "TIME_ZONE": None, "TEST": {},
    }


@pytest.fixture(scope="module", params=["pyodbc", "mssql_python"])
def django_connection(request, server, django_db_blocker):
    """A Django connection (ENGINE "mssql") to the responder, registered as connections["tds"]."""
    from mssql.base import DatabaseWrapper

    alias = f"tds_{request.param}"
    wrapper = DatabaseWrapper(_django_settings(server, request.param), alias=alias)
    with django_db_blocker.unblock():
        connections[alias] = wrapper
        try:
            yield wrapper
        finally:
            wrapper.close()
            del connections[alias]


def _raised(call):
    try:
        call()
    except Exception as exc:  # the subject under test
        return exc
    pytest.fail("no error raised")


def _sql(case: Case, parameter: str = "") -> str:
    return f"SELECT {parameter or 1} -- tds:error={case.number}{case.also}"


# --- The tables ----------------------------------------------------------------------------------


def test_the_table_covers_every_transient_number():
    assert {case.number for case in CASES if case.transient} == MSSQL_TRANSIENT


@pytest.mark.parametrize("case", CASES, ids=str)
def test_pyodbc(case, pyodbc_connection):
    import pyodbc

    cursor = pyodbc_connection.cursor()
    for run in (lambda: cursor.execute(_sql(case)), lambda: cursor.execute(_sql(case, "?"), 7)):  # batch, then RPC
        exc = _raised(run)
        cls, sqlstate = case.pyodbc
        assert type(exc) is getattr(pyodbc, cls)
        assert exc.args[0] == sqlstate
        # The native number sits at a fixed place: after the message, before the ODBC function.
        assert exc.args[1] == f"[{sqlstate}] {PYODBC_PREFIX}{case.message} ({case.number}) (SQLExecDirectW)"
        assert is_transient(exc, "microsoft") is case.transient


@pytest.mark.parametrize("case", CASES, ids=str)
def test_mssql_python(case, mssql_python_connection):
    import mssql_python

    cursor = mssql_python_connection.cursor()
    for run in (lambda: cursor.execute(_sql(case)), lambda: cursor.execute(_sql(case, "?"), (7,))):
        exc = _raised(run)
        cls, driver_error = case.mssql_python
        assert type(exc) is getattr(mssql_python, cls)
        # No native number and no SQLSTATE anywhere: only the SQLSTATE's phrase and the message.
        assert (exc.driver_error, exc.ddbc_error) == (driver_error, f"{MSSQL_PYTHON_PREFIX}{case.message}")
        assert exc.args == (f"Driver Error: {driver_error}; DDBC Error: {MSSQL_PYTHON_PREFIX}{case.message}",)
        assert is_transient(exc, "microsoft") is case.transient


@pytest.mark.parametrize("case", CASES, ids=str)
def test_django(case, django_connection):
    driver = django_connection.settings_dict["OPTIONS"].get("python_driver", "pyodbc")
    cls = (case.pyodbc if driver == "pyodbc" else case.mssql_python)[0]
    for sql, params in ((_sql(case), None), (_sql(case, "%s"), [7])):
        with django_connection.cursor() as cursor:
            exc = _raised(lambda: cursor.execute(sql, params))
        # Django re-raises the driver's class under the same name, caused by the driver's error.
        assert type(exc) is getattr(db, cls)
        assert type(exc.__cause__).__module__.split(".")[0] == driver
        assert exc.args == exc.__cause__.args
        assert is_transient(exc, "microsoft") is case.transient
        # What handlers must catch: a deadlock through pyodbc is not a DatabaseError.
        assert isinstance(exc, db.Error)
        assert isinstance(exc, db.DatabaseError) is (cls != "Error")


# --- Connecting and losing the connection --------------------------------------------------------


@pytest.mark.parametrize("python_driver", ["pyodbc", "mssql_python"])
def test_what_django_sends_on_connect(server, python_driver, django_db_blocker):
    # What the responder must answer for a Django connection to open (a new alias: mssql-django
    # caches the server's version per alias, for the life of the process).
    from mssql.base import DatabaseWrapper

    wrapper = DatabaseWrapper(_django_settings(server, python_driver), alias=f"tds_connect_{python_driver}")
    before = len(server.log)
    with django_db_blocker.unblock():
        wrapper.ensure_connection()
        wrapper.close()
    batches = [text for kind, text in server.log[before:] if kind == "batch"]
    assert batches == [
        "SELECT @@TRANCOUNT",  # mssql-django setting autocommit
        "SET DATEFORMAT ymd; SET DATEFIRST 7",
        "SELECT CAST(SERVERPROPERTY('ProductVersion') AS varchar), CAST(SERVERPROPERTY('EngineEdition') AS integer)",
        "SELECT SYSDATETIME()",
    ]

LOGIN_CASES = [
    # database (tds_error_<numbers> fails the login), pyodbc (class, SQLSTATE), mssql-python class, transient
    ("tds_error_40613", ("ProgrammingError", "42000"), "ProgrammingError", (True, True)),
    # Azure follows 4060 with 18456 "Login failed": pyodbc reports the first, mssql-python the last.
    ("tds_error_4060+18456", ("ProgrammingError", "42000"), "OperationalError", (True, False)),
    ("tds_error_18456", ("InterfaceError", "28000"), "OperationalError", (False, False)),
]


@pytest.mark.parametrize("database, pyodbc_error, mssql_python_error, transient", LOGIN_CASES)
def test_a_login_refused(server, database, pyodbc_error, mssql_python_error, transient, django_db_blocker):
    import mssql_python
    import pyodbc
    from mssql.base import DatabaseWrapper

    exc = _raised(lambda: pyodbc.connect(_connection_string(server, database)))
    assert (type(exc), exc.args[0]) == (getattr(pyodbc, pyodbc_error[0]), pyodbc_error[1])
    assert exc.args[1].endswith(") (SQLDriverConnect)")
    assert is_transient(exc, "microsoft") is transient[0]

    exc = _raised(lambda: mssql_python.connect(_connection_string(server, database, driver=False)))
    assert type(exc) is getattr(mssql_python, mssql_python_error)
    assert is_transient(exc, "microsoft") is transient[1]

    for python_driver, cls, expected in (("pyodbc", pyodbc_error[0], transient[0]),
                                         ("mssql_python", mssql_python_error, transient[1])):
        wrapper = DatabaseWrapper(_django_settings(server, python_driver, database), alias=f"tds_login_{python_driver}")
        with django_db_blocker.unblock():
            exc = _raised(wrapper.ensure_connection)
        assert type(exc) is getattr(db, cls)
        assert is_transient(exc, "microsoft") is expected


def test_a_dropped_connection(server):
    import mssql_python
    import pyodbc

    connection = pyodbc.connect(_connection_string(server), autocommit=True)
    exc = _raised(lambda: connection.cursor().execute("SELECT 1 -- tds:drop"))
    assert type(exc) is pyodbc.OperationalError
    assert exc.args == ("08S01", f"[08S01] [Microsoft][{DRIVER}]TCP Provider: Error code 0x2746 (10054) (SQLExecDirectW)")
    assert is_transient(exc, "microsoft")

    connection = mssql_python.connect(_connection_string(server, driver=False), autocommit=True)
    exc = _raised(lambda: connection.cursor().execute("SELECT 1 -- tds:drop"))
    assert type(exc) is mssql_python.OperationalError
    assert (exc.driver_error, exc.ddbc_error) == ("Communication link failure", "[Microsoft]TCP Provider: Error code 0x2746")
    assert is_transient(exc, "microsoft")


# --- The retrying atomic block on a real driver --------------------------------------------------


def test_run_atomic_retries_a_deadlock_and_a_dropped_connection(server, django_connection):
    alias = django_connection.alias
    for fault in ("tds:error=1205", "tds:error=1222", "tds:error=40613", "tds:drop"):
        calls, stats = [], RetryStats()

        def work():
            calls.append(1)
            with connections[alias].cursor() as cursor:
                cursor.execute(f"SELECT 1 -- {fault}" if len(calls) == 1 else "SELECT 1")
                return cursor.fetchone()[0]

        assert run_atomic(work, using=alias, stats=stats, base_delay=0, max_delay=0) == 1, fault
        assert (len(calls), stats.retries) == (2, 1), fault


def test_run_atomic_keeps_the_error_when_closing_the_broken_connection_fails(server, django_connection, monkeypatch):
    alias = django_connection.alias
    closes = []

    def failing_close():
        closes.append(1)
        raise db.InterfaceError("closing failed too")

    def work():
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1 -- tds:error=1205")

    monkeypatch.setattr(django_connection, "close", failing_close)
    exc = _raised(lambda: run_atomic(work, using=alias, attempts=3, base_delay=0, max_delay=0))
    assert closes == [1, 1]  # after each of the first two attempts; the third raises
    assert "deadlock victim" in str(exc) and is_transient(exc, "microsoft")


# --- What the handlers make of it ----------------------------------------------------------------


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.fixture(scope="module")
def django_errors(server, django_db_blocker):
    """``{number: error}`` as Django hands them over through pyodbc, the production path."""
    from mssql.base import DatabaseWrapper

    wrapper = DatabaseWrapper(_django_settings(server, "pyodbc"), alias="tds_handlers")
    errors = {}
    with django_db_blocker.unblock():
        for number in (1205, 2627):
            with wrapper.cursor() as cursor:
                errors[number] = _raised(lambda: cursor.execute(_sql(next(c for c in CASES if c.number == number))))
        wrapper.close()
    assert type(errors[1205]) is db.Error  # neither DatabaseError nor OperationalError
    return errors


def test_healthz_answers_503_on_a_deadlock(django_errors, monkeypatch, rf):
    from ingest import selectors, views

    monkeypatch.setattr(selectors, "database_ping", _raise(django_errors[1205]))
    response = views.healthz(rf.get("/healthz"))
    assert response.status_code == 503
    assert b"deadlock" not in response.content  # the body names no error text


def test_pipeline_status_reports_a_deadlock_as_unhealthy(django_errors, monkeypatch):
    import json
    from io import StringIO

    from django.core.management import CommandError, call_command

    from ingest import selectors

    monkeypatch.setattr(selectors, "runs_recent", _raise(django_errors[1205]))
    out = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("pipeline_status", "--json", "--no-celery", stdout=out)
    assert caught.value.returncode == 3
    report = json.loads(out.getvalue())
    assert report["database"] == "unreachable" and "deadlock victim" in report["problems"][0]


def test_a_command_ends_a_deadlock_with_one_sentence(django_errors):
    from io import StringIO

    from ingest import cli

    class Command(cli.PipelineCommand):
        def handle(self, *args, **options):
            raise django_errors[1205]

    stderr = StringIO()
    with pytest.raises(SystemExit) as caught:
        Command(stdout=StringIO(), stderr=stderr).run_from_argv(["manage.py", "ingest_feeds"])
    assert caught.value.code == cli.EXIT_RUN_FAILED
    assert stderr.getvalue().startswith("CommandError: The database refused the work: [40001] ")
    assert "Traceback" not in stderr.getvalue()


def test_celery_retries_a_deadlock_and_fails_a_duplicate_key_at_once(django_errors, monkeypatch):
    from ingest import tasks

    calls = []

    def recompute(**kwargs):
        calls.append(1)
        raise django_errors[1205]

    monkeypatch.setattr(tasks, "counts_recompute", recompute)
    result = tasks.recompute_counts.apply()
    assert isinstance(result.result, tasks.DatabaseBusy) and "deadlock victim" in str(result.result)
    assert len(calls) == tasks.recompute_counts.max_retries + 1

    calls.clear()
    monkeypatch.setattr(tasks, "counts_recompute", lambda **kwargs: calls.append(1) or _raise(django_errors[2627])())
    result = tasks.recompute_counts.apply()
    assert result.result is django_errors[2627] and len(calls) == 1
