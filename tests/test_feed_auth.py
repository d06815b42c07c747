"""Authenticated feeds: basic / bearer credentials and extra headers that name their secrets.

End to end through the commands, the loopback feed server requiring the credentials, the real
database; the secret value is a fresh random string, then looked for everywhere it must not be.
"""

from __future__ import annotations

import base64
import logging
import pickle
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from ingest.errors import CredentialsError
from ingest.models import Entry, IngestRun, TechnicalArticle
from ingest.services.credentials import auth_check
from ingest.services.sources import auth_columns, source_add
from ingest.types import FetchRequest
from pipeline.logformat import JsonFormatter
from samples.feedserver import FeedServer
from tests.helpers import call, ingest, rss, rss_item

FEED = rss([rss_item("a-1", "First"), rss_item("a-2", "Second")])


def _source(server, path, **auth) -> TechnicalArticle:
    article, _ = source_add(url=server.url(path), auth=auth_check(**auth) if auth else None)
    return article


@pytest.fixture
def secret(monkeypatch) -> str:
    value = "s3cr3t-" + secrets.token_urlsafe(24)
    monkeypatch.setenv("FEED_TEST_TOKEN", value)
    return value


@pytest.fixture
def other_server():
    with FeedServer() as server:
        yield server


def _commented_feed(items: list[tuple[str, str]]) -> str:
    when = format_datetime(datetime.now(UTC))
    body = "".join(f'<item><guid isPermaLink="false">{guid}</guid><title>{guid}</title><pubDate>{when}</pubDate>'
                   f"<wfw:commentRss>{url}</wfw:commentRss></item>" for guid, url in items)
    return ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
            'xmlns:wfw="http://wellformedweb.org/CommentAPI/"><channel><title>Blog</title>'
            f"<link>http://blog.example/</link>{body}</channel></rss>")


def _authorization(server, path) -> list[str | None]:
    return [r.headers.get("authorization") for r in server.requests if r.path == path]


# --- success, failure, sentences ----------------------------------------------------------------


def test_bearer_and_basic_succeed_with_the_secret_looked_up_at_request_time(db, feed_server, secret):
    feed_server.add("/bearer.rss", FEED)
    feed_server.require("/bearer.rss", bearer=secret)
    feed_server.add("/basic.rss", FEED)
    feed_server.require("/basic.rss", basic=("reader", "from-settings"))
    bearer = _source(feed_server, "/bearer.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN")
    with override_settings(INGEST_FEED_SECRETS={"basic.pw": "from-settings"}):
        basic = _source(feed_server, "/basic.rss", scheme="basic", username="reader", secret="setting:basic.pw")
        report = ingest()
    assert report["status"] == "succeeded", report
    assert {s["id"]: s["outcome"] for s in report["sources"]} == {bearer.pk: "created", basic.pk: "created"}
    assert Entry.objects.filter(technical_article=bearer).count() == 2
    basic.refresh_from_db()
    assert (basic.auth_scheme, basic.auth_username, basic.auth_secret) == ("basic", "reader", "setting:basic.pw")


def test_a_wrong_secret_is_that_sources_401_and_the_run_goes_on(db, feed_server, secret):
    feed_server.add("/locked.rss", FEED)
    feed_server.require("/locked.rss", bearer="the-right-one")
    feed_server.add("/open.rss", FEED)
    locked = _source(feed_server, "/locked.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN")
    _source(feed_server, "/open.rss")
    report = ingest()
    assert report["status"] == "partial"
    failed = next(s for s in report["sources"] if s["id"] == locked.pk)
    assert failed["outcome"] == "failed" and "401" in failed["error"] and secret not in failed["error"]
    locked.refresh_from_db()
    assert locked.last_status == 401 and locked.consecutive_failures == 1


def test_a_missing_secret_fails_its_source_with_a_sentence_naming_the_reference(db, feed_server, monkeypatch):
    monkeypatch.setenv("FEED_GONE_TOKEN", "here-at-registration")
    feed_server.add("/feed.rss", FEED)
    feed_server.add("/open.rss", FEED)
    article = _source(feed_server, "/feed.rss", scheme="bearer", secret="env:FEED_GONE_TOKEN")
    _source(feed_server, "/open.rss")
    monkeypatch.delenv("FEED_GONE_TOKEN")
    report = ingest()
    assert report["status"] == "partial"
    failed = next(s for s in report["sources"] if s["id"] == article.pk)
    assert failed["error"] == "secret env:FEED_GONE_TOKEN is not set"
    assert feed_server.hits("/feed.rss") == 0  # nothing sent without its credentials
    assert feed_server.hits("/open.rss") == 1


# --- redirects and origins ----------------------------------------------------------------------


def test_a_redirect_to_another_origin_drops_the_credentials_and_secret_headers(db, feed_server, other_server, secret):
    other_server.add("/moved.rss", FEED)
    feed_server.redirect("/feed.rss", other_server.url("/moved.rss"), status=302)
    _source(feed_server, "/feed.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN",
            extra_headers={"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}, "X-Client": "pipeline"})
    report = ingest()
    assert report["sources"][0]["outcome"] == "created"
    assert _authorization(feed_server, "/feed.rss") == [f"Bearer {secret}"]
    assert feed_server.requests[0].headers["x-api-key"] == secret
    moved = other_server.requests[0].headers
    assert "authorization" not in moved and "x-api-key" not in moved
    assert moved["x-client"] == "pipeline"  # a literal header is not a secret


def test_a_same_origin_redirect_keeps_the_credentials(db, feed_server, secret):
    feed_server.add("/moved.rss", FEED)
    feed_server.require("/moved.rss", bearer=secret, header=("X-Api-Key", secret))
    feed_server.redirect("/feed.rss", "/moved.rss", status=301)
    _source(feed_server, "/feed.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN",
            extra_headers={"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}})
    report = ingest()
    assert report["sources"][0]["outcome"] == "created"
    assert _authorization(feed_server, "/moved.rss") == [f"Bearer {secret}"]


def test_comment_feeds_get_the_credentials_on_the_sources_origin_only(db, feed_server, other_server, secret):
    here, there = feed_server.url("/comments/1.rss"), other_server.url("/comments/2.rss")
    feed_server.add("/blog.rss", _commented_feed([("p-1", here), ("p-2", there)]))
    feed_server.add("/comments/1.rss", rss([]))
    other_server.add("/comments/2.rss", rss([]))
    feed_server.require("/comments/1.rss", bearer=secret)
    article = _source(feed_server, "/blog.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN")
    TechnicalArticle.objects.filter(pk=article.pk).update(fetch_comments=True)
    report = ingest()
    assert report["status"] == "succeeded", report
    assert _authorization(feed_server, "/comments/1.rss") == [f"Bearer {secret}"]
    assert _authorization(other_server, "/comments/2.rss") == [None]


# --- registering: add_source, the checks -------------------------------------------------------


def _add_source(*args) -> str:
    out = StringIO()
    call_command("add_source", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_add_source_stores_references_and_refuses_a_missing_secret(db, feed_server, secret):
    _add_source(feed_server.url("/a.rss"), "--bearer", "env:FEED_TEST_TOKEN", "--header", "X-Client: cli",
                "--secret-header", "X-Api-Key: env:FEED_TEST_TOKEN")
    article = TechnicalArticle.objects.get()
    assert (article.auth_scheme, article.auth_secret) == ("bearer", "env:FEED_TEST_TOKEN")
    assert article.extra_headers == {"X-Client": "cli", "X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}}
    listed = call("list_sources")["sources"][0]
    assert listed["auth"] == "bearer (env:FEED_TEST_TOKEN), 2 headers"
    with pytest.raises(CommandError, match="^secret env:FEED_NOT_THERE is not set$") as info:
        _add_source(feed_server.url("/b.rss"), "--auth", "basic", "--username", "u", "--secret", "env:FEED_NOT_THERE")
    assert info.value.returncode == 2
    with pytest.raises(CommandError, match="must name a secret") as info:
        _add_source(feed_server.url("/c.rss"), "--bearer", secret)  # a value where a reference belongs
    assert info.value.returncode == 2 and secret not in str(info.value)
    assert TechnicalArticle.objects.count() == 1


@pytest.mark.parametrize(("headers", "sentence"), [
    ({"Authorization": "x"}, "Authorization cannot be an extra header: it comes from the auth scheme"),
    ({"Host": "x"}, "Host cannot be an extra header"),
    ({"Content-Length": "1"}, "Content-Length cannot be an extra header"),
    ({"Connection": "close"}, "Connection cannot be an extra header"),
    ({"Transfer-Encoding": "chunked"}, "Transfer-Encoding cannot be an extra header"),
    ({"Bad Name": "x"}, "is not a valid HTTP header name"),
    ({"X-A": "one\r\nX-Injected: two"}, "line break or a control character"),
    ({"X-A": "v", "x-a": "w"}, "given twice"),
    ({"X-A": {"secret": "plain-value"}}, "must name a secret as env:NAME or setting:KEY"),
    ({"X-A": 3}, "must be a string or"),
    (["X-A"], "must be a JSON object"),
])
def test_extra_headers_that_are_refused(headers, sentence):
    with pytest.raises(CredentialsError, match=sentence):
        auth_check(extra_headers=headers)


@pytest.mark.parametrize(("auth", "sentence"), [
    ({"scheme": "basic", "secret": "env:X"}, "needs a user name"),
    ({"scheme": "basic", "username": "a:b", "secret": "env:X"}, "needs a user name without ':'"),
    ({"scheme": "bearer", "secret": "env:1X"}, "must name a secret"),
    ({"scheme": "bearer", "secret": ""}, "must name a secret"),
    ({"scheme": "digest", "secret": "env:X"}, "must be one of none, basic, bearer"),
    ({"scheme": "none", "secret": "env:X"}, "the auth scheme is none"),
])
def test_credentials_that_are_refused(auth, sentence):
    with pytest.raises(CredentialsError, match=sentence):
        auth_check(**auth, require_set=False)


def test_a_secret_with_a_line_break_is_refused_without_quoting_it(monkeypatch):
    monkeypatch.setenv("FEED_BROKEN", "abc\r\nX-Evil: 1")
    with pytest.raises(CredentialsError, match="^secret env:FEED_BROKEN holds a line break"):
        auth_check(scheme="bearer", secret="env:FEED_BROKEN")


def test_a_secret_outside_ascii_is_refused_for_a_header_and_fine_for_basic(monkeypatch):
    monkeypatch.setenv("FEED_ACCENTED", "caf\u00e9")
    with pytest.raises(CredentialsError, match="^secret env:FEED_ACCENTED holds a character outside ASCII"):
        auth_check(scheme="bearer", secret="env:FEED_ACCENTED")
    auth_check(scheme="basic", username="reader", secret="env:FEED_ACCENTED")  # base64 of its UTF-8
    with pytest.raises(CredentialsError, match="outside ASCII"):
        auth_check(extra_headers={"X-A": "caf\u00e9"})


def test_a_feed_url_with_a_password_is_refused_without_quoting_it(db):
    with pytest.raises(CommandError, match="holds a user name or password") as info:
        _add_source("https://reader:hunter2-pw@feeds.example/private.rss")
    assert info.value.returncode == 2 and "hunter2" not in str(info.value)


def test_a_request_never_shows_or_pickles_its_secrets(db, feed_server, secret):
    from ingest.services.credentials import source_credentials

    article = _source(feed_server, "/a.rss", scheme="bearer", secret="env:FEED_TEST_TOKEN",
                      extra_headers={"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}})
    request = FetchRequest(url=article.feed_url, credentials=source_credentials(article))
    assert request.credentials.headers(secret=True)["Authorization"] == f"Bearer {secret}"
    shown = repr(request) + str(request) + repr(request.credentials) + str(request.credentials)
    assert secret not in shown and "redacted" in repr(request.credentials)
    assert secret.encode() not in pickle.dumps(request)
    assert pickle.loads(pickle.dumps(request)).credentials.headers(secret=True) == {}


# --- the value is nowhere ------------------------------------------------------------------------


@pytest.fixture
def json_logs():
    """Every log record of every logger at DEBUG, as the JSON lines production writes."""
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        for logger, level in levels:
            logger.removeHandler(handler)
            logger.setLevel(level)


def _every_text_value() -> str:
    """Every value of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks += [repr(row) for row in cursor.fetchall()]
    return "\n".join(chunks)


def test_the_secret_value_is_stored_logged_and_shown_nowhere(db, feed_server, other_server, secret, json_logs,
                                                             admin_client):
    encoded = base64.b64encode(f"reader:{secret}".encode()).decode()
    feed_server.add("/ok.rss", FEED)
    feed_server.require("/ok.rss", bearer=secret, header=("X-Api-Key", secret))
    feed_server.add("/basic.rss", FEED)
    feed_server.require("/basic.rss", basic=("reader", secret))
    feed_server.add("/wrong.rss", FEED)
    feed_server.require("/wrong.rss", bearer="another-value")
    feed_server.redirect("/away.rss", other_server.url("/locked.rss"), status=302)
    other_server.add("/locked.rss", FEED)
    other_server.require("/locked.rss", bearer=secret)
    feed_server.add("/drop.rss", drop=True)
    bearer = {"scheme": "bearer", "secret": "env:FEED_TEST_TOKEN",
              "extra_headers": {"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}}}
    sources = [_source(feed_server, "/ok.rss", **bearer),
               _source(feed_server, "/basic.rss", scheme="basic", username="reader", secret="env:FEED_TEST_TOKEN"),
               _source(feed_server, "/wrong.rss", **bearer), _source(feed_server, "/away.rss", **bearer),
               _source(feed_server, "/drop.rss", **bearer)]
    out, err = StringIO(), StringIO()
    call_command("ingest_feeds", "--json", "-v", "3", stdout=out, stderr=err)
    call_command("list_sources", "--json", stdout=out, stderr=err)
    outcomes = {s.feed_url.rsplit("/", 1)[1]: s for s in TechnicalArticle.objects.all()}
    assert outcomes["ok.rss"].last_status == 200 and outcomes["basic.rss"].last_status == 200
    assert outcomes["wrong.rss"].last_status == 401 and outcomes["away.rss"].last_status == 401
    assert outcomes["drop.rss"].consecutive_failures == 1
    assert "authorization" not in other_server.requests[0].headers  # the credentials did not follow

    run = IngestRun.objects.get()
    pages = [admin_client.get(url).content.decode() for url in (
        "/admin/ingest/technicalarticle/", *(f"/admin/ingest/technicalarticle/{s.pk}/change/" for s in sources),
        "/admin/ingest/ingestrun/", f"/admin/ingest/ingestrun/{run.pk}/change/",
        "/api/articles/", *(f"/api/articles/{s.pk}/" for s in sources), "/api/entries/")]
    assert "env:FEED_TEST_TOKEN" in pages[1] and "env:FEED_TEST_TOKEN" in pages[-2]  # the reference is shown
    everything = {"database": _every_text_value(), "logs": json_logs.getvalue(), "output": out.getvalue() + err.getvalue(),
                  "pages": "\n".join(pages), "run": repr((run.stats, run.error))}
    assert json_logs.getvalue().count("\n") > 10  # DEBUG lines were captured
    for where, text in everything.items():
        assert secret not in text, f"the secret is in the {where}"
        assert encoded not in text, f"the basic credentials are in the {where}"


# --- admin and API --------------------------------------------------------------------------------


def test_the_api_reads_references_and_refuses_a_missing_secret(db, feed_server, secret, admin_client):
    article = _source(feed_server, "/a.rss")
    url = f"/api/articles/{article.pk}/"
    answer = admin_client.patch(url, {"auth_scheme": "bearer", "auth_secret": "env:FEED_NOT_THERE"},
                                content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["auth_secret"] == ["secret env:FEED_NOT_THERE is not set"] or \
        "secret env:FEED_NOT_THERE is not set" in answer.content.decode()
    answer = admin_client.patch(url, {"extra_headers": {"Host": "x"}}, content_type="application/json")
    assert answer.status_code == 400 and "Host cannot be an extra header" in answer.content.decode()
    answer = admin_client.patch(url, {"auth_scheme": "bearer", "auth_secret": "env:FEED_TEST_TOKEN",
                                      "extra_headers": {"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}}},
                                content_type="application/json")
    assert answer.status_code == 200, answer.content
    body = admin_client.get(url).json()
    assert (body["auth_scheme"], body["auth_secret"]) == ("bearer", "env:FEED_TEST_TOKEN")
    assert body["extra_headers"] == {"X-Api-Key": {"secret": "env:FEED_TEST_TOKEN"}}


def test_the_admin_form_refuses_a_missing_secret_and_saves_a_reference(db, feed_server, secret, admin_client):
    article = _source(feed_server, "/a.rss")
    page = admin_client.get(f"/admin/ingest/technicalarticle/{article.pk}/change/")
    form = {name: value for name, value in page.context["adminform"].form.initial.items() if value is not None}
    form.update({"feed_url": article.feed_url, "name": article.name, "extra_headers": "", "auth_username": "",
                 "auth_scheme": "bearer", "auth_secret": "env:FEED_NOT_THERE"})
    form = {k: ("on" if v is True else v) for k, v in form.items() if v is not False}
    answer = admin_client.post(f"/admin/ingest/technicalarticle/{article.pk}/change/", form)
    assert answer.status_code == 200 and "secret env:FEED_NOT_THERE is not set" in answer.content.decode()
    form["auth_secret"] = "env:FEED_TEST_TOKEN"
    answer = admin_client.post(f"/admin/ingest/technicalarticle/{article.pk}/change/", form)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    article.refresh_from_db()
    assert article.extra_headers == {}
    assert auth_columns(auth_check(scheme="bearer", secret="env:FEED_TEST_TOKEN"))["auth_secret"] == article.auth_secret
