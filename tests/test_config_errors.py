"""Bad configuration, bad arguments and a database that never answers, as a user meets them.

Configuration errors run the real ``manage.py`` (and ``celery``, the Azure runner, the WSGI module)
in their own process with the real settings module: each must end with one sentence naming the
variable and exit status 2, before anything touches the database. Those processes get a database
URL whose port is closed, so a check that came after the first query would exit 1 instead.
Arguments are checked through ``call_command`` in tests that may not touch the database at all
(pytest-django refuses the query), and a hung database is a real loopback socket that accepts
connections and never sends a byte.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from ingest.models import TechnicalArticle
from tests.config_process import ID_MAX, _run, assert_configuration_error, explain, manage, one_line
from tests.helpers import database_url
from tests.reliability.runner import observe

# --- Configuration errors: one sentence, exit 2, before the database ---------------------------

# (environment, command line, what the sentence must say)
CONFIGURATION_ERRORS: list[tuple[dict[str, str], tuple[str, ...], str]] = [
    # Checked only at the first fetch before, after the run had started in the database.
    ({"INGEST_ALLOWED_NETWORKS": "not-a-cidr"}, ("ingest_feeds",), "INGEST_ALLOWED_NETWORKS contains 'not-a-cidr'"),
    ({"INGEST_ALLOWED_NETWORKS": "127.0.0.0/8, 10.0.0.1/8"}, ("add_source", "http://127.0.0.2/feed.xml"),
     "INGEST_ALLOWED_NETWORKS contains '10.0.0.1/8'"),
    ({"INGEST_DEADLINE": "abc"}, ("ingest_feeds",), "INGEST_DEADLINE must be a number, not 'abc'."),
    # nan passed every "< minimum" check, and inf every maximum.
    ({"INGEST_DEADLINE": "nan"}, ("ingest_feeds", "--json"), "INGEST_DEADLINE must be a finite number, not 'nan'."),
    ({"INGEST_READ_TIMEOUT": "inf"}, ("ingest_feeds",), "INGEST_READ_TIMEOUT must be a finite number"),
    ({"DB_RETRY_MAX_DELAY": "-inf"}, ("recompute_counts",), "DB_RETRY_MAX_DELAY must be a finite number"),
    ({"INGEST_DEADLINE": "0"}, ("ingest_feeds",), "INGEST_DEADLINE must be greater than 0, not '0'."),
    ({"INGEST_CONNECT_TIMEOUT": "0"}, ("ingest_feeds",), "INGEST_CONNECT_TIMEOUT must be greater than 0"),
    ({"INGEST_READ_TIMEOUT": "-1"}, ("ingest_feeds",), "INGEST_READ_TIMEOUT must be greater than 0"),
    ({"INGEST_WORKERS": "0"}, ("ingest_feeds",), "INGEST_WORKERS must be greater than 0"),
    ({"INGEST_WORKERS": "65"}, ("ingest_feeds",), "INGEST_WORKERS must be at most 64"),
    ({"INGEST_WORKERS": "2.5"}, ("ingest_feeds",), "INGEST_WORKERS must be a whole number, not '2.5'."),
    ({"INGEST_HOST_CONCURRENCY": "0"}, ("ingest_feeds",), "INGEST_HOST_CONCURRENCY must be greater than 0"),
    ({"INGEST_HOST_SPACING": "-1"}, ("ingest_feeds",), "INGEST_HOST_SPACING must be at least 0"),
    ({"INGEST_RETRY_AFTER_SCOPE": "site"}, ("ingest_feeds",), "INGEST_RETRY_AFTER_SCOPE must be source or host, not 'site'."),
    ({"INGEST_LEASE_SECONDS": "0"}, ("ingest_feeds",), "INGEST_LEASE_SECONDS must be greater than 0"),
    ({"INGEST_PARSER": "lxml"}, ("ingest_feeds",), "INGEST_PARSER must be auto or feedparser, not 'lxml'."),
    ({"INGEST_LEASE_SECONDS": "9" * 30}, ("ingest_feeds",), "INGEST_LEASE_SECONDS must be at most"),
    ({"INGEST_DEFAULT_INTERVAL": "-60"}, ("add_source", "http://127.0.0.2/f.xml"), "INGEST_DEFAULT_INTERVAL must be greater than 0"),
    ({"INGEST_BACKOFF_BASE": "0"}, ("ingest_feeds",), "INGEST_BACKOFF_BASE must be greater than 0"),
    ({"INGEST_MIN_INTERVAL": "0"}, ("ingest_feeds",), "INGEST_MIN_INTERVAL must be greater than 0"),
    ({"INGEST_MIN_INTERVAL": "7200", "INGEST_MAX_INTERVAL": "3600"}, ("ingest_feeds",),
     "INGEST_MIN_INTERVAL (7200) must not be above INGEST_MAX_INTERVAL (3600)."),
    ({"INGEST_JITTER": "1.5"}, ("ingest_feeds",), "INGEST_JITTER must be at most 1"),
    ({"INGEST_MAX_BYTES": "0"}, ("ingest_feeds",), "INGEST_MAX_BYTES must be greater than 0"),
    ({"INGEST_BOT_WALL_BACKOFF": "6h"}, ("ingest_feeds",), "INGEST_BOT_WALL_BACKOFF must be a whole number, not '6h'."),
    ({"INGEST_MAX_INTERVAL": "0"}, ("ingest_feeds",), "INGEST_MAX_INTERVAL must be greater than 0"),
    ({"INGEST_WEBSUB_CALLBACK_URL": "feeds.example.org"}, ("ingest_feeds",),
     "INGEST_WEBSUB_CALLBACK_URL must be an http(s) URL with a host and no query, not 'feeds.example.org'."),
    ({"INGEST_WEBSUB_CALLBACK_URL": "https://feeds.example.org/?x=1"}, ("ingest_feeds",), "INGEST_WEBSUB_CALLBACK_URL must be"),
    ({"INGEST_WEBSUB_LEASE_SECONDS": "10"}, ("ingest_feeds",), "INGEST_WEBSUB_LEASE_SECONDS must be at least 60"),
    ({"INGEST_SCHEDULE_SECONDS": "0"}, ("pipeline_status",), "INGEST_SCHEDULE_SECONDS must be greater than 0"),
    ({"PIPELINE_HEALTH_MAX_AGE": "0"}, ("pipeline_status",), "PIPELINE_HEALTH_MAX_AGE must be greater than 0"),
    # The ping URL's path is the check's key: the sentence does not quote it.
    ({"PIPELINE_HEARTBEAT_URL": "hc-ping.com/0f1e"}, ("ingest_feeds",),
     "PIPELINE_HEARTBEAT_URL must be an http:// or https:// URL with a host (and no user or password)."),
    ({"PIPELINE_HEARTBEAT_FAIL_URL": "ftp://hc.example/x/fail"}, ("ingest_feeds",), "PIPELINE_HEARTBEAT_FAIL_URL must be"),
    ({"PIPELINE_HEARTBEAT_TIMEOUT": "0"}, ("ingest_feeds",), "PIPELINE_HEARTBEAT_TIMEOUT must be greater than 0"),
    ({"SENTRY_TRACES_SAMPLE_RATE": "2"}, ("ingest_feeds",), "SENTRY_TRACES_SAMPLE_RATE must be at most 1"),
    ({"PIPELINE_HEALTH_TOLERANCE": "2"}, ("pipeline_status",), "PIPELINE_HEALTH_TOLERANCE must be at most 1"),
    ({"INGEST_HEALTH_FAILING_AFTER": "0"}, ("ingest_feeds",), "INGEST_HEALTH_FAILING_AFTER must be greater than 0"),
    ({"INGEST_HEALTH_STALE_FACTOR": "0.5"}, ("ingest_feeds",), "INGEST_HEALTH_STALE_FACTOR must be at least 1"),
    ({"DB_CONNECT_TIMEOUT": "0"}, ("list_entries",), "DB_CONNECT_TIMEOUT must be greater than 0"),
    ({"DB_CONNECT_TIMEOUT": "nan"}, ("list_entries",), "DB_CONNECT_TIMEOUT must be a whole number"),
    ({"DB_RETRY_ATTEMPTS": "0"}, ("recompute_counts",), "DB_RETRY_ATTEMPTS must be greater than 0"),
    ({"DATABASE_URL": "postgres://u@h/"}, ("ingest_feeds",), "DATABASE_URL for postgres must name a database"),
    ({"DATABASE_URL": "oracle://u@h/db"}, ("list_entries",), "DATABASE_URL scheme 'oracle' is not supported"),
    ({"DATABASE_URL": "postgres://u:pw-s3cr3t@127.0.0.1:99999/db"}, ("ingest_feeds",), "DATABASE_URL has the port '99999'"),
    ({"DATABASE_URL": "mysql://root@127.0.0.1:1/db?connect_timeout=soon"}, ("ingest_feeds",),
     "DATABASE_URL option connect_timeout must be a whole number above 0, not 'soon'."),
    ({"LOG_FORMAT": "xml"}, ("import_opml", "-"), "LOG_FORMAT must be text or json, not 'xml'."),
    ({"LOG_LEVEL": "chatty"}, ("ingest_feeds",), "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ({"TIME_ZONE": "Mars/Olympus_Mons"}, ("ingest_feeds",), "TIME_ZONE must be an IANA time zone"),
    ({"DJANGO_DEBUG": "0"}, ("ingest_feeds",), "DJANGO_SECRET_KEY is not set"),
    ({"DJANGO_DEBUG": "maybe"}, ("ingest_feeds",), "DJANGO_DEBUG must be true or false, not 'maybe'."),
    ({"CELERY_TASK_SOFT_TIME_LIMIT": "400"}, ("ingest_feeds",), "CELERY_TASK_SOFT_TIME_LIMIT (400) must be below"),
    ({"DJANGO_SETTINGS_MODULE": "pipeline.setings"}, ("ingest_feeds",), "DJANGO_SETTINGS_MODULE is 'pipeline.setings'"),
    ({"METRICS_TOKEN": "short"}, ("pipeline_status",), "METRICS_TOKEN must be at least 16 printable characters"),
    ({"METRICS_ALLOWED_NETWORKS": "10.0.0.0/8, prometheus"}, ("pipeline_status",),
     "METRICS_ALLOWED_NETWORKS contains 'prometheus'"),
    ({"METRICS_BROKER_TIMEOUT": "0"}, ("pipeline_status",), "METRICS_BROKER_TIMEOUT must be greater than 0"),
]
PIPELINE_COMMANDS = [("ingest_feeds",), ("recompute_counts",), ("add_source", "http://127.0.0.2/feed.xml"),
                     ("import_opml", "-"), ("list_entries",), ("pipeline_status",)]


@pytest.mark.nodb
def test_every_configuration_error_is_one_sentence_and_exit_2_before_the_database():
    jobs = CONFIGURATION_ERRORS + [({"INGEST_DEADLINE": "abc"}, args, "INGEST_DEADLINE") for args in PIPELINE_COMMANDS]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: manage(*job[1], env=job[0]), jobs))
    wrong = []
    for (env, args, expected), result in zip(jobs, results):
        try:
            assert_configuration_error(result, expected)
        except AssertionError as exc:
            wrong.append(f"{env} manage.py {' '.join(args)}:\n{exc}")
    assert wrong == [], "\n\n".join(wrong)
    observe("containment-configuration",
            f"{len(jobs)} bad settings (a CIDR that is none, 'abc', nan, inf, 0, a negative, an over-large number, a "
            f"DATABASE_URL without a database or with port 99999, an unknown time zone, ...) across the 6 commands: "
            f"every one exit 2 with one sentence naming the variable (e.g. {one_line(results[0].stderr)!r}), "
            f"no traceback, nothing on stdout, the closed database port never reached")


@pytest.mark.nodb
@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_stops_with_the_sentence(command):
    result = _run([sys.executable, "-m", "celery", "-A", "pipeline", command, "--loglevel=WARNING"],
                  {"INGEST_DEADLINE": "abc"})
    assert_configuration_error(result, "INGEST_DEADLINE must be a number, not 'abc'.", program="celery")


@pytest.mark.nodb
def test_azure_functions_invocation_fails_with_the_sentence():
    script = ("from functions_app.runner import RunFailed, command_run\n"
              "try:\n    command_run('ingest_feeds', None)\n"
              "except RunFailed as exc:\n    print('RunFailed:', exc)\n")
    result = _run([sys.executable, "-c", script], {"INGEST_ALLOWED_NETWORKS": "10.0.0.0/33"})
    assert result.returncode == 0, explain(result)
    assert "Traceback" not in result.stderr, explain(result)
    assert result.stdout.startswith("RunFailed: configuration error: INGEST_ALLOWED_NETWORKS contains '10.0.0.0/33'")


@pytest.mark.nodb
def test_wsgi_names_the_variable_before_the_servers_traceback():
    result = _run([sys.executable, "-c", "import pipeline.wsgi"], {"LOG_FORMAT": "xml"})
    assert result.returncode != 0
    first = result.stderr.splitlines()[0]
    assert first == "pipeline.wsgi: configuration error: LOG_FORMAT must be text or json, not 'xml'.", explain(result)


# --- Arguments: every integer option range-checked, for call_command too --------------------------

# Each would have reached the database (an overflow there, or a query for nothing): in these tests
# any query fails the test, since they do not have the django_db mark.
OUT_OF_RANGE = [
    ("recompute_counts", (), {"entry": [2**63]}, "--entry takes positive entry ids"),
    ("recompute_counts", (), {"entry": [5, -1]}, "--entry takes positive entry ids"),
    ("recompute_counts", (), {"chunk_size": 10**20}, "--chunk-size must be between 1 and 2000"),
    ("recompute_counts", (), {"chunk_size": "many"}, "--chunk-size must be a whole number, not 'many'."),
    ("recompute_counts", (), {"source": [str(2**64)]}, "--source takes a source id from 1 to"),
    ("list_entries", (), {"limit": 10**20}, "--limit must be between 1 and 10000"),
    ("list_entries", (), {"limit": 0}, "--limit must be between 1 and 10000, not 0."),
    ("list_entries", (), {"source": ["0"]}, "--source takes a source id"),
    ("ingest_feeds", (), {"workers": 65}, "--workers must be between 1 and 64, not 65."),
    ("ingest_feeds", (), {"source": ["99999999999999999999"]}, "--source takes a source id"),
    ("pipeline_status", (), {"runs": 101}, "--runs must be between 1 and 100"),
    ("pipeline_status", (), {"max_age": 10**20}, "--max-age must be between 1 and"),
    ("pipeline_status", (), {"timeout": "soon"}, "--timeout must be a number of seconds, not 'soon'."),
    ("pipeline_status", (), {"timeout": "nan"}, "--timeout must be between 0 and 30 seconds"),
    ("pipeline_status", (), {"timeout": 0}, "--timeout must be between 0 and 30 seconds, not 0."),
    ("add_source", ("http://exa mple.com/feed.xml",), {}, "contains a space at position 10"),
    ("add_source", ("http://127.0.0.1:65536/feed.xml",), {}, "has the port 65536"),
    ("add_source", ("http://127.0.0.1:0/feed.xml",), {}, "has the port 0"),
    ("add_source", ("http://feeds\x00.example/",), {}, "contains the character '\\x00'"),
    ("add_source", ("http://feeds_.example/" + "x" * 2000,), {}, "longer than 700 characters"),
]


@pytest.mark.nodb
@pytest.mark.parametrize("command, args, options, expected", OUT_OF_RANGE,
                         ids=[f"{c}-{next(iter(o), 'url')}-{i}" for i, (c, _, o, _) in enumerate(OUT_OF_RANGE)])
def test_call_command_refuses_an_out_of_range_option_before_the_database(command, args, options, expected):
    with pytest.raises(CommandError) as info:
        call_command(command, *args, stdout=StringIO(), stderr=StringIO(), **options)
    assert info.value.returncode == 2
    assert expected in str(info.value)


@pytest.mark.django_db(transaction=True)
def test_call_command_accepts_every_option_at_its_limits(tmp_path):
    source = TechnicalArticle.objects.create(name="s", feed_url="http://127.0.0.2:9/feed.xml")

    def run(command, *args, **options) -> dict:
        out = StringIO()
        call_command(command, *args, json=True, stdout=out, stderr=StringIO(), **options)
        return json.loads(out.getvalue())

    report = run("ingest_feeds", source=[str(source.pk)], all=True, dry_run=True, workers=64, trigger="cron")
    assert report["dry_run"] and report["totals"]["sources"] == 1
    # The largest id the database holds is a valid (unknown) entry, not an overflow.
    report = run("recompute_counts", source=[source.feed_url], entry=[1, ID_MAX], since="2026-01-01",
                 chunk_size=2000, dry_run=True, trigger="cron")
    assert report["scanned"] == 0
    assert run("list_entries", source=[str(source.pk)], with_activity=True, limit=10_000) == {"entries": []}
    added = run("add_source", "http://127.0.0.2:65535/other.xml", name="Other", fetch_comments=True)
    assert added["created"] and added["url"] == "http://127.0.0.2:65535/other.xml"
    opml = tmp_path / "feeds.opml"
    opml.write_text('<?xml version="1.0"?><opml version="2.0"><head/><body>'
                    '<outline text="a" xmlUrl="http://127.0.0.2:1/a.xml"/>'
                    '<outline text="b" xmlUrl="http://127.0.0.2:99999/b.xml"/></body></opml>')
    imported = run("import_opml", str(opml))
    assert [a["url"] for a in imported["added"]] == ["http://127.0.0.2:1/a.xml"]
    assert [r["url"] for r in imported["rejected"]] == ["http://127.0.0.2:99999/b.xml"]
    assert "port 99999" in imported["rejected"][0]["error"]
    with pytest.raises(CommandError) as info:  # unhealthy (no run has completed), after printing its report
        run("pipeline_status", runs=100, max_age=10 * 365 * 86400, celery=False, timeout=30)
    assert info.value.returncode == 3


# --- Database connect timeout ----------------------------------------------------------------------


class HungServer:
    """Accepts every TCP connection on 127.0.0.1 and never sends a byte (a wedged database)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="HungServer", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self.listener.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in [self.listener, *self.accepted]:
            sock.close()


@pytest.fixture
def hung_server():
    server = HungServer()
    yield server
    server.close()


HUNG_URLS = {
    "postgresql": ("postgres://postgres@127.0.0.1:{port}/pipeline", "connect_timeout"),
    "mariadb": ("mysql://root@127.0.0.1:{port}/pipeline", "connect_timeout"),
    # mssql-django's own driver (no ODBC installation needed); the ODBC path gets the same option.
    "sqlserver": ("mssql://sa:x@127.0.0.1:{port}/pipeline?python_driver=mssql_python&TrustServerCertificate=yes",
                  "connection_timeout"),
}


@pytest.mark.nodb
@pytest.mark.parametrize("given_in", ["setting", "url"])
@pytest.mark.parametrize("kind", list(HUNG_URLS))
def test_a_database_that_accepts_and_never_answers_fails_like_an_unreachable_one(kind, given_in, hung_server):
    if kind == "sqlserver":
        pytest.importorskip("mssql_python")
    url, key = HUNG_URLS[kind]
    url = url.format(port=hung_server.port)
    if given_in == "setting":
        env = {"DATABASE_URL": url, "DB_CONNECT_TIMEOUT": "2"}
    else:  # the URL's own value wins over the setting
        env = {"DATABASE_URL": url + ("&" if "?" in url else "?") + f"{key}=2", "DB_CONNECT_TIMEOUT": "3600"}
    started = time.monotonic()
    result = manage("ingest_feeds", env=env, timeout=40)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, explain(result)
    assert "Traceback" not in result.stderr, explain(result)
    assert one_line(result.stderr).startswith("CommandError: The database is unreachable"), explain(result)
    assert hung_server.accepted, "the command never connected to the server"
    assert elapsed < 15, f"took {elapsed:.1f}s\n{explain(result)}"
    observe(f"containment-hung-db-{kind}-{given_in}",
            f"{kind}, timeout of 2 s from the {'URL' if given_in == 'url' else 'DB_CONNECT_TIMEOUT setting'}: exit 1 "
            f"in {elapsed:.1f}s, stderr: {one_line(result.stderr)[:110]!r}")


@pytest.mark.django_db
def test_a_statement_may_take_longer_than_the_connect_timeout():
    # PyMySQL reads the handshake with its read timeout; that bound must end with the handshake.
    statement = {"mysql": "SELECT SLEEP(2)", "postgresql": "SELECT pg_sleep(2)"}.get(connection.vendor)
    if statement is None:
        pytest.skip(f"{connection.vendor} has no connect timeout")
    script = (f"from django.db import connection\nwith connection.cursor() as cursor:\n"
              f"    cursor.execute({statement!r})\n    print('done', cursor.fetchone())")
    result = manage("shell", "-c", script, env={"DATABASE_URL": database_url(), "DB_CONNECT_TIMEOUT": "1"})
    assert result.returncode == 0, explain(result)
    assert result.stdout.splitlines()[-1].startswith("done"), explain(result)


@pytest.mark.nodb
def test_db_connect_timeout_becomes_each_drivers_option():
    script = ("import json; from django.conf import settings; "
              "print(json.dumps(settings.DATABASES['default']['OPTIONS'], default=str))")

    def options(url: str, **env) -> dict:
        result = _run([sys.executable, "-c", script], {"DATABASE_URL": url, **env})
        assert result.returncode == 0, explain(result)
        return json.loads(result.stdout)

    jobs = [("postgres://u@h/db", {}), ("postgres://u@h/db?connect_timeout=3", {}),
            ("mysql://u@h/db", {"DB_CONNECT_TIMEOUT": "7"}), ("mysql://u@h/db?read_timeout=600", {}),
            ("mssql://u:p@h/db?Encrypt=yes", {"DB_CONNECT_TIMEOUT": "4"}), ("mssql://u:p@h/db?connection_timeout=9", {}),
            ("", {})]
    with ThreadPoolExecutor(max_workers=4) as pool:
        pg, pg_url, my, my_url, ms, ms_url, sqlite = pool.map(lambda job: options(job[0], **job[1]), jobs)
    assert pg["connect_timeout"] == 10 and pg_url["connect_timeout"] == 3
    # The handshake's reads are bounded by the connect timeout, unless the URL sets a read timeout.
    assert (my["connect_timeout"], my["read_timeout"]) == (7, 7)
    assert (my_url["connect_timeout"], my_url["read_timeout"]) == (10, 600)
    assert ms["connection_timeout"] == 4 and ms["extra_params"] == "Encrypt=yes"
    assert ms_url["connection_timeout"] == 9 and "extra_params" not in ms_url
    assert sqlite["timeout"] == 20 and "connect_timeout" not in sqlite  # SQLite keeps its lock timeout
