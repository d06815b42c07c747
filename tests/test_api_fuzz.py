"""The REST API fuzzed against its own schema, and the committed schema kept current.

schemathesis (the real CLI, as a process) reads the committed openapi.yml and sends what the schema
allows and what it does not, with a staff user's token, to a real gunicorn in production mode on
this run's test database, seeded with rows of every kind. Every response must be what the schema
promises a client: no 5xx, a documented status code, content type and headers, a body that fits.
A finding fails the test with schemathesis's own report (the request that reproduces it included).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from ingest.models import Author, Comment, Entry, Pingback, TechnicalArticle
from ingest.services.tokens import token_issue
from tests.helpers import ROOT, database_url

SCHEMA = ROOT / "openapi.yml"
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance")
# What the test process's environment sets for the test settings; the server starts from a clean one.
_OURS = ("DJANGO_", "DATABASE_URL", "INGEST_", "DB_", "LOG_", "TIME_ZONE", "CONN_", "PIPELINE_", "CELERY_", "API_")


def seed() -> None:
    """Rows of every kind, with the values real feeds give: an author without an email, an entry
    without a link or authors, links that are IRIs, an article that failed its last fetch, a
    pingback from outside (no source entry) and one from another entry."""
    when = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
    ada = Author.objects.create(name="Ada", email="ada@example.com")
    bob = Author.objects.create(name="Bób Ünïcode", email="")
    healthy = TechnicalArticle.objects.create(name="Blog", feed_url="http://127.0.0.1:9/feed.xml",
                                              site_url="http://127.0.0.1:9/", fetch_interval=3600,
                                              last_fetched_at=when, last_success_at=when, last_status=200)
    failing = TechnicalArticle.objects.create(name="Broken", feed_url="http://127.0.0.1:9/broken.xml",
                                              site_url="http://例え.jp/", last_fetched_at=when, last_status=503,
                                              consecutive_failures=3, last_error="HTTP 503 from the feed",
                                              next_fetch_at=when)
    rows = [(healthy, "http://127.0.0.1:9/1", [ada, bob]), (healthy, "", []),
            (failing, "http://例え.jp/記事", [bob])]
    entries = []
    for n, (article, link, authors) in enumerate(rows):
        entry = Entry.objects.create(technical_article=article, guid=f"post-{n}", headline=f"Post {n}",
                                     body_text="<p>Body</p>", link=link, published_at=when,
                                     pub_date=date(2026, 10, 1), content_hash="0" * 64)
        entry.authors.set(authors)
        entries.append(entry)
    first, _, third = entries
    Comment.objects.create(entry=first, author_name="Reader", body="First!")
    Comment.objects.create(entry=first, author_name="", body="")
    Pingback.objects.create(target=first, source_url="http://elsewhere.example/post")
    Pingback.objects.create(target=first, source_url=third.link, source_entry=third)
    Entry.objects.filter(pk=first.pk).update(number_of_comments=2, number_of_pingbacks=2)


def _get(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@contextmanager
def gunicorn(log: Path):
    """gunicorn in production mode (DJANGO_DEBUG unset, a real secret key) on this run's test
    database, two workers on a loopback socket bound here (no port race); yields its base URL.

    Database connections are kept as docker-compose.yml keeps the web's (a new one per request
    costs MariaDB 50 ms here). The fuzzer's feed hosts do not exist: a resolver that retries a lost
    answer for 5 s (glibc's default) would only slow the run, so lookups give up after one second."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(_OURS)},
           "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_ALLOWED_HOSTS": "127.0.0.1", "DATABASE_URL": database_url(), "CONN_MAX_AGE": "60",
           "CONN_HEALTH_CHECKS": "1", "RES_OPTIONS": "timeout:1 attempts:1", "PYTHONUNBUFFERED": "1",
           "XDG_RUNTIME_DIR": str(log.parent)}  # gunicorn's control socket: one per run, not one per user
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "pipeline.wsgi:application", "--bind", f"fd://{listener.fileno()}",
             "--workers", "2", "--graceful-timeout", "5", "--config", "python:pipeline.gunicorn_conf"],
            cwd=ROOT, env=env, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT)
    listener.close()
    try:
        deadline = time.monotonic() + 60
        while _get(f"{base}/healthz") is None:
            assert process.poll() is None, f"gunicorn exited {process.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"gunicorn did not answer within 60 s:\n{log.read_text()}"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow  # some 1,200 requests: 30 to 45 s on two busy cores
@pytest.mark.django_db(transaction=True)
def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(tmp_path):
    seed()
    get_user_model().objects.create_user("fuzzer", password=secrets.token_urlsafe(16), is_staff=True)
    key = token_issue(username="fuzzer").key
    server_log = tmp_path / "gunicorn.log"
    with gunicorn(server_log) as base:
        assert _get(f"{base}/api/articles/") == 401  # the token below is what lets the fuzzer in
        result = subprocess.run(
            [str(SCHEMATHESIS), "run", str(SCHEMA), "--url", base, "--header", f"Authorization: Token {key}",
             "--checks", CHECKS, "--max-examples", "15", "--seed", "20261001", "--workers", "2",
             "--generation-database", "none", "--request-timeout", "10", "--no-color", "--output-truncate", "false"],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (f"schemathesis exited {result.returncode}\n{result.stdout}\n{result.stderr}"
                                    f"\n--- gunicorn\n{server_log.read_text()[-8000:]}")
    # Every operation in the schema was tested, and with cases: a run that skipped them proves nothing.
    operations = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", result.stdout)
    assert operations and len(set(operations.groups())) == 1, result.stdout
    cases = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert cases and int(cases[1]) == int(cases[2]) > 500, result.stdout


def _cursor(query: str) -> str:
    """A hand-made cursor (DRF's are base64 of ``o=..&r=..&p=<position>``)."""
    return quote(base64.b64encode(query.encode()).decode())


# Values a fixed fuzzing budget rarely draws, each once a 500: the edges of the time range (year
# 10000 once in UTC, which SQLite and MariaDB cannot hold), a NUL (PostgreSQL refuses it), a cursor
# whose position is not a value of its column. What comes back is a documented refusal.
OUT_OF_RANGE, NUL = ["This time is out of range in UTC."], ["Null characters are not allowed."]
EDGES = [
    ("/api/entries/?published_after=9999-12-31T23:59:59-14:00", 400, {"published_after": OUT_OF_RANGE}),
    ("/api/entries/?published_before=0001-01-01T00:00:00%2B14:00", 400, {"published_before": OUT_OF_RANGE}),
    ("/api/entries/?updated_since=9999-12-31T23:00:00-01:00", 400, {"updated_since": OUT_OF_RANGE}),
    ("/api/articles/?search=a%00b", 400, {"search": NUL}),
    ("/api/entries/?search=%00", 400, {"search": NUL}),
    (f"/api/entries/?cursor={_cursor('p=not a time')}", 404, {"detail": "Invalid cursor"}),
    (f"/api/articles/?cursor={_cursor('p=7.5')}", 404, {"detail": "Invalid cursor"}),
    (f"/api/authors/?ordering=name&cursor={_cursor('p=a%00b')}", 404, {"detail": "Invalid cursor"}),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "status", "body"), EDGES, ids=[path for path, _, _ in EDGES])
def test_the_edges_of_the_value_space_are_refused_as_documented(client, path, status, body):
    get_user_model().objects.create_user("reader")
    response = client.get(path, HTTP_AUTHORIZATION=f"Token {token_issue(username='reader').key}")
    assert (response.status_code, response.json()) == (status, body)


@pytest.mark.django_db
def test_a_cursor_past_year_9999_in_utc_is_not_one_of_ours_where_the_database_cannot_hold_it(client):
    seed()
    get_user_model().objects.create_user("reader")
    cursor = _cursor("p=9999-12-31 23:59:59-14:00")
    key = token_issue(username="reader").key
    response = client.get(f"/api/entries/?cursor={cursor}", HTTP_AUTHORIZATION=f"Token {key}")
    if connection.vendor in ("sqlite", "mysql"):  # stored as UTC text or DATETIME: year 10000 has no place
        assert response.status_code == 404, response.content
    else:  # PostgreSQL's timestamptz holds it: the page after it, newest first, is every entry
        assert response.status_code == 200, response.content
        assert len(response.json()["results"]) == Entry.objects.count()


@pytest.mark.nodb
def test_the_committed_openapi_yml_is_what_the_code_generates(tmp_path):
    generated = tmp_path / "openapi.yml"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1"}
    result = subprocess.run([sys.executable, "manage.py", "spectacular", "--file", str(generated), "--validate"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert generated.read_text() == SCHEMA.read_text(), (
        "openapi.yml is stale: regenerate it with DJANGO_DEBUG=1 python manage.py spectacular --file openapi.yml "
        "--validate")
