"""The REST API at /api/ through Django's test client: who may read and write, what each endpoint
shows, pagination, filters, conditional requests, the number of queries per request, retried
writes and JSON errors. The same API on a real gunicorn, fuzzed against its schema, is
tests/test_api_fuzz.py."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.backends.signals import connection_created
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ingest.models import Author, Comment, Entry, Pingback, TechnicalArticle
from ingest.services.tokens import token_issue

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _entries(article, n, *, authors=(), start=0, hours=1):
    rows = Entry.objects.bulk_create([
        Entry(technical_article=article, headline=f"Headline {i}", body_text=f"<p>body {i}</p>", guid=f"g-{article.pk}-{i}",
              pub_date=date(2026, 1, 1), published_at=T0 + timedelta(hours=hours * i), content_hash="h",
              link=f"https://blog.example/{article.pk}/{i}")
        for i in range(start, start + n)])
    rows = list(Entry.objects.filter(technical_article=article, guid__in=[r.guid for r in rows]))
    through = Entry.authors.through
    through.objects.bulk_create([through(entry_id=e.pk, author_id=a.pk) for e in rows for a in authors])
    return rows


@pytest.fixture
def data():
    article = TechnicalArticle.objects.create(name="Blog", feed_url="https://blog.example/feed")
    other = TechnicalArticle.objects.create(name="Other", feed_url="https://other.example/feed")
    ada, bob = Author.objects.create(name="Ada"), Author.objects.create(name="Bob", email="bob@example.com")
    entries = _entries(article, 25, authors=(ada, bob))
    entries += _entries(other, 5, authors=(bob,), start=100)
    first = entries[0]
    Comment.objects.bulk_create([Comment(entry=first, guid=f"c{i}", author_name=f"reader {i}", body="hi") for i in range(12)])
    Pingback.objects.bulk_create([Pingback(target=first, source_url=f"https://x.example/{i}", source_entry=entries[i + 1])
                                  for i in range(12)])
    return {"article": article, "other": other, "ada": ada, "bob": bob, "entries": entries, "first": first}


def _client(*, staff: bool = False, name: str | None = None) -> Client:
    user = User.objects.create_user(name or ("staff" if staff else "reader"), password="pw", is_staff=staff)
    key = token_issue(username=user.username).key
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


@pytest.fixture
def reader():
    return _client()


@pytest.fixture
def staff():
    return _client(staff=True)


def _walk(client, url):
    """Every row of a list, following the cursor links; and the number of pages."""
    rows, pages = [], 0
    while url:
        body = client.get(url).json()
        rows += body["results"]
        pages += 1
        url = body["next"]
    return rows, pages


# --- who may do what ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/articles/", "/api/authors/", "/api/entries/"])
def test_the_tutorial_urls_answer_json_to_a_token_and_the_browsable_api_to_a_logged_in_user(data, reader, path):
    response = reader.get(path)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert len(response.json()["results"]) > 0
    assert "Authorization" in response["Vary"]  # a shared cache never serves it to another caller

    browser = Client()
    browser.force_login(User.objects.get(username="reader"))
    page = browser.get(path, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert b"Django REST framework" in page.content and b"&quot;results&quot;" in page.content


@pytest.mark.parametrize("path", ["/api/articles/", "/api/authors/", "/api/entries/", "/api/entries/1/",
                                  "/api/entries/1/comments/"])
def test_anonymous_requests_are_refused_unless_anonymous_reads_are_on(data, path, settings):
    response = Client().get(path)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert "credentials" in json.loads(response.content)["detail"]

    settings.API_ANONYMOUS_READ = True
    assert Client().get(path).status_code in (200, 404)
    refused = Client().patch(f"/api/entries/{data['first'].pk}/", {"rating": 1}, content_type="application/json")
    assert refused.status_code == 401
    assert Entry.objects.get(pk=data["first"].pk).rating == 5


def test_writes_need_staff(data, reader, staff):
    entry = data["first"]
    refused = reader.patch(f"/api/entries/{entry.pk}/", {"rating": 9}, content_type="application/json")
    assert refused.status_code == 403 and refused.json() == {"detail": "Changing this needs a staff user."}
    assert reader.post("/api/articles/", {"feed_url": "https://new.example/feed"},
                       content_type="application/json").status_code == 403
    assert reader.delete(f"/api/articles/{data['other'].pk}/").status_code == 403
    assert Entry.objects.get(pk=entry.pk).rating == 5 and TechnicalArticle.objects.count() == 2

    before = Entry.objects.get(pk=entry.pk).updated_at
    done = staff.patch(f"/api/entries/{entry.pk}/", {"rating": 9}, content_type="application/json")
    assert done.status_code == 200 and done.json()["rating"] == 9
    stored = Entry.objects.get(pk=entry.pk)
    assert stored.rating == 9 and stored.updated_at > before
    assert done.json()["updated"] == stored.updated_at.isoformat().replace("+00:00", "Z")


def test_an_inactive_users_token_and_a_revoked_token_are_refused(data):
    client = _client(name="leaver")
    assert client.get("/api/entries/").status_code == 200
    call_command("api_token", "leaver", "--revoke", stdout=_Sink(), stderr=_Sink())
    assert client.get("/api/entries/").status_code == 401


# --- what the endpoints show and accept ---------------------------------------------------------


def test_an_entry_shows_the_seed_fields_and_what_a_client_needs(data, reader):
    entry = data["first"]
    body = reader.get(f"/api/entries/{entry.pk}/").json()
    assert set(body) == {"id", "article", "article_name", "guid", "link", "headline", "body_text", "published_at",
                         "pub_date", "mod_date", "authors", "number_of_comments", "number_of_pingbacks", "rating",
                         "ingested_at", "updated", "enclosures", "duplicate_of"}
    assert body["article"] == data["article"].pk and body["article_name"] == "Blog"
    assert [a["name"] for a in body["authors"]] == ["Ada", "Bob"] and set(body["authors"][0]) == {"id", "name"}
    assert body["published_at"] == "2026-01-01T00:00:00Z" and body["guid"] == entry.guid


def test_the_counters_and_the_content_cannot_be_written(data, staff):
    entry = data["first"]
    for change in ({"number_of_comments": 99}, {"headline": "mine"}, {"rating": 3, "number_of_pingbacks": 4}):
        response = staff.patch(f"/api/entries/{entry.pk}/", change, content_type="application/json")
        assert response.status_code == 400, change
        assert all(field in response.json() for field in change if field != "rating")
    stored = Entry.objects.get(pk=entry.pk)
    assert (stored.number_of_comments, stored.headline, stored.rating) == (0, "Headline 0", 5)

    # A body read with GET and sent back with only the rating changed passes.
    body = staff.get(f"/api/entries/{entry.pk}/").json()
    body["rating"] = 2
    assert staff.put(f"/api/entries/{entry.pk}/", body, content_type="application/json").status_code == 200
    assert Entry.objects.get(pk=entry.pk).rating == 2
    for bad in (-1, 11, "x", None):
        assert staff.patch(f"/api/entries/{entry.pk}/", {"rating": bad}, content_type="application/json").status_code == 400
    assert staff.post("/api/entries/", {}, content_type="application/json").status_code == 405
    assert staff.delete(f"/api/entries/{entry.pk}/").status_code == 405


def test_staff_register_change_and_delete_articles(data, staff):
    created = staff.post("/api/articles/", {"feed_url": "https://new.example/feed", "tagline": "new"},
                         content_type="application/json")
    assert created.status_code == 201, created.content
    article = TechnicalArticle.objects.get(pk=created.json()["id"])
    assert (article.name, article.tagline, article.active) == ("new.example", "new", True)

    # The same feed written another way is the same feed; a feed no fetch may reach is refused.
    again = staff.post("/api/articles/", {"feed_url": "HTTPS://NEW.example:443/feed/"}, content_type="application/json")
    assert again.status_code == 400
    assert again.json() == {"feed_url": [f"This feed is already registered, as article {article.pk}."]}
    private = staff.post("/api/articles/", {"feed_url": "http://10.1.2.3/feed"}, content_type="application/json")
    assert private.status_code == 400 and "10.1.2.3" in private.json()["feed_url"][0]
    assert staff.post("/api/articles/", {"feed_url": "https://x.example/f", "last_error": "no"},
                      content_type="application/json").status_code == 400
    assert TechnicalArticle.objects.count() == 3

    # A new feed URL forgets the old one's validators and failures; other columns are left alone.
    source = data["article"]
    TechnicalArticle.objects.filter(pk=source.pk).update(etag='"v1"', consecutive_failures=4, last_error="timeout",
                                                         next_fetch_at=T0, lease_owner="run-7")
    moved = staff.patch(f"/api/articles/{source.pk}/", {"feed_url": "https://blog.example/atom"},
                        content_type="application/json")
    assert moved.status_code == 200, moved.content
    source.refresh_from_db()
    assert (source.feed_url, source.etag, source.consecutive_failures, source.last_error, source.next_fetch_at) == (
        "https://blog.example/atom", "", 0, "", None)
    assert source.lease_owner == "run-7"  # the pipeline's column, never written by the API

    gone = staff.delete(f"/api/articles/{source.pk}/")
    assert gone.status_code == 204
    assert not TechnicalArticle.objects.filter(pk=source.pk).exists()
    assert Entry.objects.filter(technical_article_id=source.pk).count() == 0
    assert Entry.objects.count() == 5


def test_comments_and_pingbacks_of_an_entry(data, reader):
    first = data["first"]
    comments, pages = _walk(reader, f"/api/entries/{first.pk}/comments/?page_size=5")
    assert (len(comments), pages) == (12, 3) and {c["author_name"] for c in comments} == {f"reader {i}" for i in range(12)}
    pingbacks, _ = _walk(reader, f"/api/entries/{first.pk}/pingbacks/")
    assert sorted(p["source_url"] for p in pingbacks) == sorted(f"https://x.example/{i}" for i in range(12))
    assert reader.get(f"/api/entries/{data['entries'][-1].pk}/comments/").json()["results"] == []
    assert reader.get("/api/entries/999999/comments/").status_code == 404


# --- reads that scale ---------------------------------------------------------------------------


def test_the_cursor_walks_every_entry_once_while_the_pipeline_inserts(data, reader):
    seen, url, pages = [], "/api/entries/?page_size=7", 0
    while url:
        body = reader.get(url).json()
        seen += [row["id"] for row in body["results"]]
        if pages == 1:  # the pipeline stores newer and older entries mid-walk
            _entries(data["article"], 3, start=200)
            _entries(data["article"], 2, start=-50)
        url, pages = body["next"], pages + 1
    assert len(seen) == len(set(seen))  # nothing twice
    assert set(e.pk for e in data["entries"]) <= set(seen)  # nothing that was there is skipped
    dates = [row["published_at"] for row in _walk(reader, "/api/entries/?page_size=10")[0]]
    assert dates == sorted(dates, reverse=True)


def test_page_size_is_bounded(data, reader, settings):
    settings.API_MAX_PAGE_SIZE = 4
    assert len(reader.get("/api/entries/?page_size=1000").json()["results"]) == 4
    assert len(reader.get("/api/entries/?page_size=0").json()["results"]) == 1
    settings.API_PAGE_SIZE = 3
    assert len(reader.get("/api/entries/").json()["results"]) == 3


def test_filters_search_and_ordering(data, reader):
    def ids(query):
        return [row["id"] for row in _walk(reader, f"/api/entries/?{query}")[0]]

    other = {e.pk for e in data["entries"] if e.technical_article_id == data["other"].pk}
    assert set(ids(f"article={data['other'].pk}")) == other
    assert len(ids(f"author={data['ada'].pk}")) == 25 and len(ids(f"author={data['bob'].pk}")) == 30
    assert len(ids("published_after=2026-01-01T05:00:00Z&published_before=2026-01-01T10:00:00Z")) == 5
    assert ids("search=HEADLINE 17") == [data["entries"][17].pk]  # case-insensitive, on the headline
    assert ids("ordering=id") == sorted(e.pk for e in data["entries"])
    assert ids("article=999999") == []
    for bad in ("published_after=yesterday", "article=x", "author=99999999999999999999999"):
        response = reader.get(f"/api/entries/?{bad}")
        assert response.status_code == 400 and response["Content-Type"] == "application/json", bad


def test_updated_since_syncs_changes_in_order_without_gaps(data, staff):
    everything, _ = _walk(staff, "/api/entries/?ordering=updated&page_size=8")
    mark = max(row["updated"] for row in everything)
    assert len(everything) == 30
    changed = data["entries"][3]
    staff.patch(f"/api/entries/{changed.pk}/", {"rating": 1}, content_type="application/json")
    since, _ = _walk(staff, f"/api/entries/?ordering=updated&updated_since={mark}")
    assert changed.pk in [row["id"] for row in since] and len(since) <= 2  # the change, and at most the mark's row
    stamps = [row["updated"] for row in everything]
    assert stamps == sorted(stamps)


def test_conditional_requests_answer_304_until_the_data_changes(data, staff):
    for path in ("/api/entries/", f"/api/entries/{data['first'].pk}/", "/api/articles/"):
        first = staff.get(path)
        etag = first["ETag"]
        again = staff.get(path, HTTP_IF_NONE_MATCH=etag)
        assert again.status_code == 304 and again.content == b""
        assert staff.get(path, HTTP_IF_NONE_MATCH='"something else"').status_code == 200
    staff.patch(f"/api/entries/{data['first'].pk}/", {"rating": 8}, content_type="application/json")
    changed = staff.get(f"/api/entries/{data['first'].pk}/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag


def _queries(client, path) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, (path, response.content[:300])
    return len(queries)


@pytest.mark.parametrize("path, expected", [
    ("/api/entries/?page_size={n}", 4),  # token, the entries with their articles, their authors, enclosures
    ("/api/entries/?page_size={n}&author={ada}&ordering=updated", 4),
    ("/api/articles/?page_size={n}", 2),
    ("/api/authors/?page_size={n}", 2),
    ("/api/entries/{first}/comments/?page_size={n}", 3),  # token, the entry exists, the comments
    ("/api/entries/{first}/pingbacks/?page_size={n}", 3),
])
def test_a_list_costs_the_same_queries_whatever_its_size(data, reader, path, expected):
    ids = {"first": data["first"].pk, "ada": data["ada"].pk}
    assert [_queries(reader, path.format(n=n, **ids)) for n in (1, 2, 12)] == [expected] * 3


def test_a_detail_costs_a_constant_number_of_queries(data, reader):
    assert _queries(reader, f"/api/entries/{data['first'].pk}/") == 4
    assert _queries(reader, f"/api/articles/{data['article'].pk}/") == 2
    assert _queries(reader, f"/api/authors/{data['ada'].pk}/") == 2


# --- writes inside the retrying helper, errors as JSON ------------------------------------------


def _short_lock_wait(sender, connection, **kwargs):
    """Every connection opened from here on gives up on a lock after half a second."""
    statement = {"sqlite": "PRAGMA busy_timeout = 500", "postgresql": "SET lock_timeout = '500ms'",
                 "mysql": "SET SESSION innodb_lock_wait_timeout = 1"}.get(connection.vendor)
    if statement:
        with connection.cursor() as cursor:
            cursor.execute(statement)


@contextmanager
def _lock_held(entry_id: int, release: threading.Event):
    """Another connection holds the entry's row (SQLite: the database's write lock) until ``release``."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        other = sqlite3.connect(s["NAME"], isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
    elif connection.vendor == "postgresql":
        import psycopg

        other = psycopg.connect(host=s["HOST"], port=s["PORT"] or 5432, user=s["USER"], dbname=s["NAME"])
        other.execute("SELECT id FROM ingest_entry WHERE id = %s FOR UPDATE", [entry_id])
    elif connection.vendor == "mysql":
        import pymysql

        other = pymysql.connect(host=s["HOST"], port=int(s["PORT"] or 3306), user=s["USER"],
                                password=s["PASSWORD"] or "", database=s["NAME"])
        other.cursor().execute("BEGIN")
        other.cursor().execute("SELECT id FROM ingest_entry WHERE id = %s FOR UPDATE", [entry_id])
    else:
        pytest.skip(f"no lock holder for {connection.vendor}")
    releaser = threading.Thread(target=lambda: (release.wait(30), other.rollback(), other.close()))
    releaser.start()
    try:
        yield
    finally:
        release.set()
        releaser.join(30)


class _Sink:
    def write(self, text):
        pass

    def flush(self):
        pass


@pytest.mark.django_db(transaction=True)
def test_a_write_that_meets_a_lock_is_retried_and_applied_once(data, staff, caplog):
    entry = data["first"]
    release = threading.Event()

    class ReleaseOnRetry(logging.Handler):
        def emit(self, record):
            if record.getMessage() == "transient database error, retrying":
                release.set()

    handler = ReleaseOnRetry()
    logging.getLogger("ingest.retry").addHandler(handler)
    connection_created.connect(_short_lock_wait)
    connection.close()
    try:
        with _lock_held(entry.pk, release):
            response = staff.patch(f"/api/entries/{entry.pk}/", {"rating": 7}, content_type="application/json")
    finally:
        connection_created.disconnect(_short_lock_wait)
        logging.getLogger("ingest.retry").removeHandler(handler)
        connection.close()
    assert response.status_code == 200, response.content
    assert Entry.objects.get(pk=entry.pk).rating == 7
    retries = [r for r in caplog.records if r.getMessage() == "transient database error, retrying"]
    assert len(retries) >= 1 and retries[0].work == "api.entry.partial_update"


@pytest.mark.django_db(transaction=True)
def test_a_database_that_stays_locked_is_a_503_with_retry_after_and_nothing_applied(data, staff, settings):
    settings.DB_RETRY_ATTEMPTS = 2
    entry = data["first"]
    connection_created.connect(_short_lock_wait)
    connection.close()
    try:
        with _lock_held(entry.pk, threading.Event()):
            response = staff.patch(f"/api/entries/{entry.pk}/", {"rating": 1}, content_type="application/json")
    finally:
        connection_created.disconnect(_short_lock_wait)
        connection.close()
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json() == {"detail": "The database is busy; try again in a few seconds."}
    assert Entry.objects.get(pk=entry.pk).rating == 5


@pytest.mark.skipif(connection.vendor not in ("sqlite", "postgresql"), reason="renames a table inside the test")
@pytest.mark.django_db(transaction=True)  # PostgreSQL: a failed statement would abort the test's own transaction
def test_a_database_error_is_a_json_500_with_a_sentence_not_a_traceback(data, reader, caplog):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE ingest_author RENAME TO ingest_author_away")
    try:
        response = reader.get("/api/authors/")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE ingest_author_away RENAME TO ingest_author")
    assert response.status_code == 500 and response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "The database failed on this request; the error is in the server's log."}
    assert any(r.getMessage() == "API request failed on the database" and r.exc_info for r in caplog.records)


def test_unknown_api_paths_and_bad_ids_are_json_404s(data, reader, settings):
    settings.DEBUG = False
    for path in ("/api/nothing/", "/api/entries/abc/", "/api/entries/99999999999999999999999/",
                 "/api/entries/999999/pingbacks/", "/api/entries/?cursor=not-a-cursor"):
        response = reader.get(path)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", path
        assert response.json()["detail"]
    malformed = reader.generic("PATCH", "/api/entries/1/", "{not json", content_type="application/json")
    assert malformed.status_code in (400, 403) and "detail" in malformed.json()


# --- schema and docs ----------------------------------------------------------------------------


def test_the_schema_and_swagger_ui_are_served_from_this_site_to_anyone():
    reader = Client()
    schema = reader.get("/api/schema/?format=json").json()
    assert schema["openapi"].startswith("3.") and {"/api/entries/", "/api/entries/{id}/comments/"} <= set(schema["paths"])
    docs = reader.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
    assert b"cdn.jsdelivr.net" not in docs.content and b"/static/drf_spectacular_sidecar/" in docs.content


# --- api_token ----------------------------------------------------------------------------------


def _token(*args) -> dict:
    from io import StringIO

    out = StringIO()
    call_command("api_token", *args, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


def test_api_token_creates_shows_rotates_and_revokes(data):
    User.objects.create_user("alice")
    created = _token("alice")
    assert created["action"] == "created" and len(created["token"]) == 40
    assert _token("alice") == {**created, "action": "unchanged"}
    old = Client(HTTP_AUTHORIZATION=f"Token {created['token']}")
    assert old.get("/api/entries/").status_code == 200
    rotated = _token("alice", "--rotate")
    assert rotated["action"] == "rotated" and rotated["token"] != created["token"]
    assert old.get("/api/entries/").status_code == 401
    assert Client(HTTP_AUTHORIZATION=f"Token {rotated['token']}").get("/api/entries/").status_code == 200
    assert _token("alice", "--revoke") == {"user": "alice", "token": None, "action": "revoked"}


def test_api_token_prints_the_key_alone_on_stdout_and_its_sentence_on_stderr(data):
    from io import StringIO

    User.objects.create_user("carol")
    out, err = StringIO(), StringIO()
    call_command("api_token", "carol", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert len(key) == 40 and err.getvalue() == "Created a token for carol.\n"
    out, err = StringIO(), StringIO()
    call_command("api_token", "carol", "-v", "0", stdout=out, stderr=err)
    assert (out.getvalue(), err.getvalue()) == (key + "\n", "")


def test_api_token_for_an_unknown_user_is_one_sentence_and_exit_2(data):
    import subprocess
    import sys

    from tests.helpers import ROOT, database_url

    env = {"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "1", "DATABASE_URL": database_url(),
           "DJANGO_SETTINGS_MODULE": "pipeline.settings"}
    done = subprocess.run([sys.executable, "manage.py", "api_token", "nobody"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "CommandError: No user is named 'nobody'; create one first (manage.py createsuperuser, or the admin)."]
