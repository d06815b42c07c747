"""WebSub end to end: a feed that names a hub is subscribed by ``ingest_feeds``, the hub (a real
one on 127.0.0.1, ``samples.websubhub``) verifies intent on the callback served by a real HTTP
server (pytest-django's ``live_server``; the gunicorn variant is at the end), pushes are ingested
when signed and ignored when not, leases are renewed, and deactivated or deleted sources are
unsubscribed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import timedelta
from xml.sax.saxutils import escape

import pytest
from django.utils import timezone

from ingest.models import Entry, TechnicalArticle, WebSubSubscription
from ingest.services.websub import signature_valid, subscriptions_maintain
from samples.websubhub import WebSubHub
from tests.helpers import ROOT, call, database_url, ingest, wait_until

State = WebSubSubscription.State
LEASE = 3600  # what the test hub grants at most


def atom(entries: list[str], *, hub: str, topic: str) -> bytes:
    items = "".join(f"<entry><id>urn:e:{e}</id><title>{escape(e)}</title><updated>2026-10-01T12:00:00Z</updated>"
                    f"<link href=\"http://example.org/{e}\"/><content type=\"text\">Body of {escape(e)}</content></entry>"
                    for e in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Pushed</title>'
            f'<id>urn:feed</id><updated>2026-10-01T12:00:00Z</updated><link rel="hub" href="{escape(hub)}"/>'
            f'<link rel="self" href="{escape(topic)}"/>{items}</feed>').encode()


def headlines(source) -> set[str]:
    return set(Entry.objects.filter(technical_article=source).values_list("headline", flat=True))


@pytest.fixture
def hub():
    with WebSubHub(lease_seconds=LEASE) as running:
        yield running


@pytest.fixture
def subscribed(transactional_db, live_server, settings, feed_server, hub):
    """A source whose feed names ``hub``, ingested once and subscribed (verified by the hub)."""
    settings.INGEST_WEBSUB_CALLBACK_URL = live_server.url
    topic = feed_server.url("/feed.atom")
    feed_server.add("/feed.atom", atom(["first"], hub=hub.url, topic=topic), content_type="application/atom+xml")
    source = TechnicalArticle.objects.create(name="pushed", feed_url=topic)
    ingest()
    hub.wait_for(lambda: hub.subscribers(topic))
    return source, topic


def test_a_feed_that_names_a_hub_is_subscribed_and_its_pushes_are_ingested(subscribed, hub, live_server, settings,
                                                                            caplog):
    source, topic = subscribed
    row = WebSubSubscription.objects.get(source=source)
    assert (row.state, row.hub_url, row.topic_url, row.wanted) == (State.SUBSCRIBED, hub.url, topic, True)
    request = hub.requests[0]
    assert request["hub.mode"] == "subscribe" and request["hub.topic"] == topic
    assert request["hub.callback"] == f"{live_server.url}/websub/{row.callback_id}"
    assert request["hub.secret"] == row.secret and request["hub.lease_seconds"] == str(settings.INGEST_WEBSUB_LEASE_SECONDS)
    # The hub granted less than was asked; the subscriber keeps what was granted.
    assert row.lease_seconds == LEASE
    assert abs((row.lease_expires_at - (row.verified_at + timedelta(seconds=LEASE))).total_seconds()) < 1

    before = timezone.now()
    deliveries = hub.publish(topic, atom(["first", "second"], hub=hub.url, topic=topic))
    assert [d.status for d in deliveries] == [202]
    assert headlines(source) == {"first", "second"}
    source.refresh_from_db()
    # Pushed to: the poll is a safety net, INGEST_MAX_INTERVAL away.
    assert source.next_fetch_at - before >= timedelta(seconds=settings.INGEST_MAX_INTERVAL - 5)
    assert source.consecutive_failures == 0 and source.lease_owner == ""
    row.refresh_from_db()
    assert row.pushes == 1 and row.last_push_at is not None
    status = {s["name"]: s for s in call("list_sources")["sources"]}["pushed"]
    assert status["health"] == "ok" and status["websub"] is True
    assert "pushed by its WebSub hub, polled every 1d00h as a safety net" in status["next_fetch"]
    assert call("pipeline_status", "--no-celery")["websub"] == {"subscribed": 1}
    assert "websub push" in caplog.text and row.secret not in caplog.text


def test_a_push_without_a_valid_signature_is_not_ingested(subscribed, hub):
    source, topic = subscribed
    body = atom(["first", "forged"], hub=hub.url, topic=topic)
    # Per the spec the answer is still 2xx: a forger learns nothing from it.
    assert [d.status for d in hub.publish(topic, body, secret="not-the-secret")] == [202]
    assert [d.status for d in hub.publish(topic, body, sign=False)] == [202]
    assert headlines(source) == {"first"}
    assert WebSubSubscription.objects.get(source=source).pushes == 0
    for method in ("sha1", "sha384", "sha512"):
        assert [d.status for d in hub.publish(topic, atom(["first", method], hub=hub.url, topic=topic), method=method)] == [202]
    assert headlines(source) == {"first", "sha1", "sha384", "sha512"}


def test_the_lease_is_renewed_before_it_ends(subscribed, hub):
    source, topic = subscribed
    row = WebSubSubscription.objects.get(source=source)
    assert row.next_action_at < row.lease_expires_at
    assert subscriptions_maintain(now=row.next_action_at - timedelta(seconds=1))["subscribe"] == 0  # not yet
    done = subscriptions_maintain(now=row.next_action_at + timedelta(seconds=1))
    assert done["subscribe"] == 1
    assert WebSubSubscription.objects.get(pk=row.pk).state == State.SUBSCRIBED  # live while renewing
    hub.wait_for(lambda: [e for e in hub.events if e.kind == "verify"][1:])
    renewed = WebSubSubscription.objects.get(pk=row.pk)
    assert [r["hub.mode"] for r in hub.requests] == ["subscribe", "subscribe"]
    assert renewed.state == State.SUBSCRIBED and renewed.lease_expires_at > row.lease_expires_at
    assert renewed.next_action_at > row.next_action_at


def test_a_deactivated_source_is_unsubscribed(subscribed, hub):
    source, topic = subscribed
    TechnicalArticle.objects.filter(pk=source.pk).update(active=False)  # as the admin does
    ingest()  # nothing is due; the run's maintenance pass unsubscribes
    hub.wait_for(lambda: not hub.subscribers(topic))
    assert [(e.mode, e.ok) for e in hub.events if e.kind == "verify"] == [("subscribe", True), ("unsubscribe", True)]
    assert not WebSubSubscription.objects.exists()


def test_a_deleted_source_is_unsubscribed_and_its_callback_is_gone(subscribed, hub, live_server):
    source, topic = subscribed
    callback = hub.subscribers(topic)[0].callback
    call("delete_source", str(source.pk), "--yes")
    hub.wait_for(lambda: not hub.subscribers(topic))
    assert not WebSubSubscription.objects.exists()
    # A push to the old callback is answered 410 Gone: the hub may drop it.
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(callback, data=b"<feed/>", method="POST"), timeout=5)
    assert caught.value.code == 410


def test_a_feed_that_names_another_hub_moves_its_subscription(subscribed, hub, feed_server):
    source, topic = subscribed
    with WebSubHub(lease_seconds=LEASE) as other:
        feed_server.add("/feed.atom", atom(["first"], hub=other.url, topic=topic), content_type="application/atom+xml")
        ingest("--all")
        other.wait_for(lambda: other.subscribers(topic))
        hub.wait_for(lambda: not hub.subscribers(topic))
        assert list(WebSubSubscription.objects.values_list("hub_url", "state")) == [(other.url, State.SUBSCRIBED)]


def test_a_denied_subscription_is_recorded(subscribed, hub):
    source, topic = subscribed
    hub.deny(topic, reason="topic not served here")
    row = WebSubSubscription.objects.get(source=source)
    assert row.state == State.DENIED and "topic not served here" in row.last_error
    assert row.next_action_at > timezone.now() + timedelta(hours=1)


def test_intent_is_confirmed_only_for_what_was_asked(subscribed, client):
    source, topic = subscribed
    row = WebSubSubscription.objects.get(source=source)
    url = f"/websub/{row.callback_id}"
    ok = client.get(url, {"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": "c1", "hub.lease_seconds": "600"})
    assert (ok.status_code, ok.content) == (200, b"c1")
    assert client.get(url, {"hub.mode": "subscribe", "hub.topic": topic + "x", "hub.challenge": "c"}).status_code == 404
    assert client.get("/websub/unknown", {"hub.mode": "subscribe", "hub.topic": topic, "hub.challenge": "c"}).status_code == 404
    # Still wanted: an unsubscription nobody asked for is refused.
    assert client.get(url, {"hub.mode": "unsubscribe", "hub.topic": topic, "hub.challenge": "c"}).status_code == 404
    assert client.get(url, {"hub.mode": "subscribe", "hub.topic": topic}).status_code == 400
    assert WebSubSubscription.objects.get(pk=row.pk).lease_seconds == 600


def test_a_hub_that_refuses_or_is_not_allowed_leaves_a_failed_row(transactional_db, live_server, settings, feed_server, hub):
    settings.INGEST_WEBSUB_CALLBACK_URL = live_server.url
    hub.refuse_status = 500
    topic = feed_server.url("/feed.atom")
    feed_server.add("/feed.atom", atom(["first"], hub=hub.url, topic=topic), content_type="application/atom+xml")
    feed_server.add("/private.atom", atom(["p"], hub="http://10.1.2.3/hub", topic=feed_server.url("/private.atom")),
                    content_type="application/atom+xml")
    refused = TechnicalArticle.objects.create(name="refused", feed_url=topic)
    private = TechnicalArticle.objects.create(name="private", feed_url=feed_server.url("/private.atom"))
    before = timezone.now()
    ingest()
    row = WebSubSubscription.objects.get(source=refused)
    assert row.state == State.FAILED and row.consecutive_failures == 1
    assert row.last_error.startswith("The hub 127.0.0.1 refused the subscribe request with HTTP 500")
    assert row.next_action_at >= before + timedelta(seconds=settings.INGEST_BACKOFF_BASE)
    blocked = WebSubSubscription.objects.get(source=private)
    assert blocked.state == State.FAILED and "10.1.2.3" in blocked.last_error
    assert len(hub.requests) == 1  # nothing reached the private address
    assert hub.events[0].ok and not hub.subscribers(topic)


def test_nothing_is_subscribed_without_a_callback_url(db, feed_server, hub):
    topic = feed_server.url("/feed.atom")
    feed_server.add("/feed.atom", atom(["first"], hub=hub.url, topic=topic), content_type="application/atom+xml")
    TechnicalArticle.objects.create(name="plain", feed_url=topic)
    ingest()
    assert not WebSubSubscription.objects.exists() and hub.requests == []


@pytest.mark.parametrize("method", ["sha1", "sha256", "sha384", "sha512"])
def test_the_signature_is_an_hmac_of_the_body(method):
    digest = hmac.new(b"key", b"body", getattr(hashlib, method)).hexdigest()
    assert signature_valid("key", b"body", f"{method}={digest}")
    assert signature_valid("key", b"body", f"{method.upper()}={digest.upper()}")
    assert not signature_valid("key", b"body!", f"{method}={digest}")
    assert not signature_valid("other", b"body", f"{method}={digest}")
    assert not signature_valid("key", b"body", f"md5={hashlib.md5(b'body').hexdigest()}")
    assert not signature_valid("key", b"body", "")


# --- The callback in a real web process --------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(transactional_db, tmp_path):
    """gunicorn serving the project on 127.0.0.1 against the test database; yields (base URL, log path)."""
    port, log = _free_port(), tmp_path / "web.log"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
           "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", "XDG_RUNTIME_DIR": str(tmp_path)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "pipeline.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "2", "--config", "python:pipeline.gunicorn_conf"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=5).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            assert proc.poll() is None, log.read_text()
            return False

    try:
        wait_until(answers, timeout=60, interval=0.2, message="gunicorn to answer")
        yield base, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_end_to_end_with_the_callback_served_by_gunicorn(gunicorn, settings, feed_server, hub, caplog):
    base, web_log = gunicorn
    settings.INGEST_WEBSUB_CALLBACK_URL = base
    topic = feed_server.url("/feed.atom")
    feed_server.add("/feed.atom", atom(["first"], hub=hub.url, topic=topic), content_type="application/atom+xml")
    source = TechnicalArticle.objects.create(name="pushed", feed_url=topic)

    ingest()  # subscribe: the hub verifies intent on gunicorn
    hub.wait_for(lambda: hub.subscribers(topic))
    row = WebSubSubscription.objects.get(source=source)
    assert row.state == State.SUBSCRIBED and row.lease_seconds == LEASE

    assert [d.status for d in hub.publish(topic, atom(["first", "pushed"], hub=hub.url, topic=topic))] == [202]
    assert headlines(source) == {"first", "pushed"}
    assert [d.status for d in hub.publish(topic, atom(["first", "forged"], hub=hub.url, topic=topic),
                                          secret="forged")] == [202]
    assert headlines(source) == {"first", "pushed"}

    row.refresh_from_db()
    assert subscriptions_maintain(now=row.next_action_at + timedelta(seconds=1))["subscribe"] == 1  # renewal
    hub.wait_for(lambda: len([e for e in hub.events if e.kind == "verify" and e.ok]) == 2)
    assert WebSubSubscription.objects.get(pk=row.pk).lease_expires_at > row.lease_expires_at

    TechnicalArticle.objects.filter(pk=source.pk).update(active=False)
    ingest()  # unsubscribe: verified on gunicorn, the row is gone
    hub.wait_for(lambda: not hub.subscribers(topic))
    assert not WebSubSubscription.objects.exists()
    assert [(e.mode, e.ok) for e in hub.events if e.kind == "verify"] == [
        ("subscribe", True), ("subscribe", True), ("unsubscribe", True)]

    # The secret is never written to a log, the web process's or this one's.
    assert row.secret not in web_log.read_text() and row.secret not in caplog.text
    assert "websub push ignored" in web_log.read_text()


def test_the_admin_lists_subscriptions_without_their_secrets(subscribed, admin_client):
    row = WebSubSubscription.objects.get()
    listing = admin_client.get("/admin/ingest/websubsubscription/")
    detail = admin_client.get(f"/admin/ingest/websubsubscription/{row.pk}/change/")
    assert listing.status_code == 200 and detail.status_code == 200
    assert row.topic_url in listing.content.decode() and "subscribed" in listing.content.decode()
    for page in (listing, detail):
        assert row.secret not in page.content.decode() and row.callback_id not in page.content.decode()


def test_the_beat_runs_the_maintenance_pass_when_a_callback_url_is_set(subscribed, hub):
    from ingest import tasks

    source, topic = subscribed
    TechnicalArticle.objects.filter(pk=source.pk).update(active=False)
    assert tasks.websub_maintain() == {"subscribe": 0, "unsubscribe": 1, "dropped": 0, "failed": 0}
    hub.wait_for(lambda: not hub.subscribers(topic))

    def schedule(**env: str) -> list[str]:
        code = ("import django, json; django.setup(); from django.conf import settings; "
                "print(json.dumps(sorted(settings.CELERY_BEAT_SCHEDULE)))")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_WEBSUB")}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                             env={**clean, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1", **env})
        return json.loads(out.stdout)

    assert "websub-maintain" in schedule(INGEST_WEBSUB_CALLBACK_URL="https://feeds.example.org")
    assert "websub-maintain" not in schedule()
