"""Entry events and webhooks: the outbox rows commit with the entries, the ``entry_ingested`` signal
after the commit, signed batches to a real receiver on 127.0.0.1 that verifies every signature,
filters, order, backoff, dead letters, disabling, replay, the SSRF guard, and at least once across
a storm of failures and a worker SIGKILL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest.fetch.webhook import signature
from ingest.models import Entry, Event, TechnicalArticle, WebhookDelivery, WebhookEndpoint
from ingest.services.events import events_record
from ingest.services.retention import entries_prune
from ingest.services.webhooks import backoff_seconds, webhooks_deliver
from ingest.signals import entry_ingested
from tests.helpers import call, ingest, rss, rss_item, wait_until
from tests.webhook_receiver import Receiver

FAST = {"WEBHOOK_BACKOFF_BASE": 0.01, "WEBHOOK_BACKOFF_MAX": 0.02}


def feed(count: int, *, version: str = "") -> bytes:
    return rss([rss_item(f"g{i}", f"Post {i}{version}", f"<p>body {i}{version}</p>", link=f"https://blog.example/{i}")
                for i in range(count)]).encode()


def source(server, path: str = "/blog.rss", count: int = 3) -> TechnicalArticle:
    server.add(path, feed(count))
    return TechnicalArticle.objects.create(name=path, feed_url=server.url(path))


def endpoint(receiver: Receiver, **fields) -> WebhookEndpoint:
    hook = WebhookEndpoint.objects.create(url=receiver.url, **fields)
    receiver.secret = hook.secret
    return hook


def deliver_until_idle(rounds: int = 50) -> None:
    """`webhooks deliver` until nothing is pending that is due (the backoff waits are tiny here)."""
    for _ in range(rounds):
        call("webhooks", "deliver")
        if not WebhookDelivery.objects.filter(state="pending").exists():
            return
        time.sleep(0.03)


# --- signing --------------------------------------------------------------------------------------

def test_the_signature_is_the_standard_webhooks_test_vector():
    # The specification's reference library's own test of sign().
    assert signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_backoff_doubles_with_equal_jitter_up_to_the_cap():
    assert [backoff_seconds(n, base=10, cap=100, rand=lambda: 0.0) for n in (1, 2, 3, 4, 5)] == [5, 10, 20, 40, 50]
    assert [backoff_seconds(n, base=10, cap=100, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]


# --- the outbox -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_source_write_records_created_then_updated_events_in_one_statement(feed_server):
    blog = source(feed_server, count=3)
    ingest()
    created = list(Event.objects.values_list("type", "entry_id", "source_id"))
    ids = sorted(Entry.objects.values_list("pk", flat=True))
    assert sorted(created) == [("entry.created", pk, blog.pk) for pk in ids]
    payload = Event.objects.get(entry_id=ids[0]).payload
    assert set(payload) == {"entry_id", "source_id", "guid", "link", "headline", "published_at", "kind"}
    assert payload["kind"] == "created" and payload["link"].startswith("https://blog.example/")

    # A changed feed: entry.updated for the changed entries only; O(1) statements on the event table.
    feed_server.add("/blog.rss", feed(3, version=" (edited)"))
    TechnicalArticle.objects.filter(pk=blog.pk).update(next_fetch_at=None, etag="", last_modified="")
    with CaptureQueriesContext(connection) as small:
        ingest()
    assert Event.objects.filter(type="entry.updated").count() == 3
    big = source(feed_server, "/big.rss", count=40)
    with CaptureQueriesContext(connection) as large:
        ingest("--source", str(big.pk))
    assert Event.objects.filter(source_id=big.pk, type="entry.created").count() == 40

    def on_events(queries):
        return [q["sql"] for q in queries if "ingest_event" in q["sql"]]
    assert len(on_events(small.captured_queries)) == len(on_events(large.captured_queries)) == 1


@pytest.mark.django_db
def test_the_signal_comes_after_the_commit_with_the_entry_ids_and_kind(feed_server, django_capture_on_commit_callbacks):
    seen = []

    def receiver(sender, entry_ids, kind, source_id, **kwargs):
        seen.append((kind, sorted(entry_ids), source_id))

    entry_ingested.connect(receiver)
    try:
        blog = source(feed_server, count=2)
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            ingest()
        assert seen == []  # nothing before the commit
        for callback in callbacks:
            callback()
    finally:
        entry_ingested.disconnect(receiver)
    assert seen == [("created", sorted(Entry.objects.values_list("pk", flat=True)), blog.pk)]


@pytest.mark.django_db
def test_pruning_records_an_event_per_pruned_entry(settings, feed_server):
    blog = source(feed_server, count=4)
    ingest()
    settings.INGEST_RETENTION_MAX_ENTRIES = 1
    entries_prune()
    pruned = Event.objects.filter(type="entry.pruned")
    assert pruned.count() == 3 and {e.source_id for e in pruned} == {blog.pk}
    assert not Entry.objects.filter(pk__in=[e.entry_id for e in pruned]).exists()


# --- delivery -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_batches_are_signed_ordered_and_filtered(settings, feed_server):
    settings.WEBHOOK_BATCH_SIZE = 2
    with Receiver() as everything, Receiver() as updates_only, Receiver() as other_source:
        all_hook = endpoint(everything)
        endpoint(updates_only, event_types=["entry.updated"])
        endpoint(other_source, source_ids=[999999])
        source(feed_server, count=5)
        ingest()
        events_record([Event(type="source.health_changed", source_id=None, payload={"health": "failing"})])
        result = call("webhooks", "deliver")
        assert result["dispatched"] == 6 and result["delivered"] == 6 and result["batches"] == 3
        got = everything.received
        assert all(r.valid and r.acked for r in got) and [len(r.events) for r in got] == [2, 2, 2]
        ids = [i for r in got for i in r.event_ids]
        assert ids == sorted(Event.objects.values_list("pk", flat=True))
        assert got[-1].events[-1]["type"] == "source.health_changed"
        assert len({r.message_id for r in got}) == 3
        assert updates_only.received == [] and other_source.received == []
        assert WebhookDelivery.objects.filter(endpoint=all_hook, state="delivered").count() == 6
        assert WebhookEndpoint.objects.get(pk=all_hook.pk).last_success_at is not None


@pytest.mark.django_db
def test_a_failing_batch_is_retried_with_the_same_id_and_blocks_later_ones(settings, feed_server):
    settings.WEBHOOK_BATCH_SIZE = 2
    settings.WEBHOOK_BACKOFF_BASE, settings.WEBHOOK_BACKOFF_MAX = 30, 60
    with Receiver() as receiver:
        hook = endpoint(receiver)
        receiver.fail_next = 1
        source(feed_server, count=4)
        ingest()
        call("webhooks", "deliver")
        assert [r.acked for r in receiver.received] == [False]  # the second batch waited behind the first
        hook.refresh_from_db()
        assert hook.state == "failing" and hook.next_attempt_at > timezone.now() + timedelta(seconds=14)
        assert "HTTP 503" in hook.last_error
        call("webhooks", "deliver")
        assert len(receiver.received) == 1  # backing off
        WebhookEndpoint.objects.filter(pk=hook.pk).update(next_attempt_at=None)
        call("webhooks", "deliver")
        first, retry, second = receiver.received
        assert retry.message_id == first.message_id and retry.event_ids == first.event_ids and retry.acked
        assert second.event_ids > retry.event_ids and second.acked
        hook.refresh_from_db()
        assert (hook.state, hook.consecutive_failures) == ("active", 0)


@pytest.mark.django_db
def test_after_the_last_attempt_the_batch_is_dead_and_the_endpoint_disabled_then_replayed(settings, feed_server):
    settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_DISABLE_DEAD_BATCHES = 3, 1
    for name, value in FAST.items():
        setattr(settings, name, value)
    with Receiver(status=500) as receiver:
        hook = endpoint(receiver)
        source(feed_server, count=2)
        ingest()
        deliver_until_idle()
        assert len(receiver.received) == 3 and not any(r.acked for r in receiver.received)
        assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("dead", 3)}
        hook.refresh_from_db()
        assert hook.state == "disabled" and "went dead" in hook.disabled_reason
        listed = call("webhooks", "list")["endpoints"]
        assert listed[0]["state"] == "disabled" and listed[0]["dead"] == 2

        # Fixed, re-enabled and replayed: the dead letters arrive.
        receiver.status = 200
        from ingest.services.webhooks import endpoint_enable
        endpoint_enable(hook.pk)
        event = Event.objects.order_by("pk").first()
        assert call("webhooks", "replay", "--event", str(event.pk))["pending"] == 1
        deliver_until_idle()
        assert receiver.received[-1].acked and receiver.received[-1].event_ids == [event.pk]
        assert call("webhooks", "replay", "--since", (timezone.now() - timedelta(hours=1)).isoformat())["pending"] == 2
        deliver_until_idle()
        assert receiver.received[-1].event_ids == sorted(Event.objects.values_list("pk", flat=True))
        assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_a_url_the_guard_refuses_is_never_contacted_and_disables_the_endpoint(settings):
    settings.INGEST_ALLOWED_NETWORKS = []  # loopback is refused again, as in production
    with Receiver() as receiver:
        hook = endpoint(receiver)
        events_record([Event(type="entry.created", source_id=1, entry_id=1, payload={})])
        webhooks_deliver()
        assert receiver.received == []
        hook.refresh_from_db()
        assert hook.state == "disabled" and "address guard" in hook.disabled_reason and "loopback" in hook.last_error


@pytest.mark.django_db
def test_the_command_refuses_bad_arguments_in_a_sentence():
    for args in (["replay"], ["replay", "--since", "yesterday"], ["deliver", "--event", "3"],
                 ["replay", "--since", "2026-01-01", "--event", "3"]):
        with pytest.raises(CommandError) as caught:
            call_command("webhooks", *args)
        assert caught.value.returncode == 2 and "\n" not in str(caught.value)


# --- at least once --------------------------------------------------------------------------------

@pytest.mark.slow
def test_at_least_once_through_a_failure_storm_and_a_worker_sigkill(transactional_db, broker, tmp_path):
    """300 events of 30 entries; the receiver fails a third of the requests; the worker is SIGKILLed
    mid-storm and another started. Every event arrives, none is lost, in order per entry, and a
    webhook-id arrives acknowledged twice only if the first ack was before the kill (the worker died
    before writing it down)."""
    from pipeline.celery import app
    from tests.workers import WorkerProcess

    entries, per_entry = 30, 10
    events_record([Event(type="entry.updated", source_id=1, entry_id=entry, payload={"n": n})
                   for n in range(per_entry) for entry in range(entries)])
    expected = set(Event.objects.values_list("pk", flat=True))
    env = {"WEBHOOK_BATCH_SIZE": "7", "WEBHOOK_MAX_ATTEMPTS": "100", "WEBHOOK_BACKOFF_BASE": "0.05",
           "WEBHOOK_BACKOFF_MAX": "0.2", "WEBHOOK_LEASE_SECONDS": "3", "WEBHOOK_DISABLE_AFTER": "3600",
           "INGEST_DEADLINE": "2", "INGEST_READ_TIMEOUT": "2"}
    with Receiver(fail_rate=0.35, delay=0.03) as receiver:
        endpoint(receiver)

        def kick():
            app.send_task("ingest.events.deliver", expires=3)

        worker = WorkerProcess(log_dir=tmp_path, env=env).start()
        try:
            wait_until(lambda: (kick(), len(receiver.acked()) >= 12)[1], timeout=60, interval=0.3,
                       message="a third of the batches to be acknowledged")
            worker.kill()
            # A request the worker sent before it died may still be answered (and acknowledged) by
            # the receiver just after: a kill ends when the receiver has answered what it had.
            time.sleep(receiver.delay + 0.5)
            killed_at = time.monotonic()
            acked_before = len(receiver.acked())
            worker = WorkerProcess(log_dir=tmp_path, env=env).start()
            wait_until(lambda: (kick(), not WebhookDelivery.objects.exclude(state="delivered").exists())[1],
                       timeout=120, interval=0.3, message="every delivery to be acknowledged")
        except BaseException:
            print(worker.log())
            raise
        finally:
            worker.stop()
        received = list(receiver.received)

    assert all(r.valid for r in received)
    acked = [r for r in received if r.acked]
    delivered = {i for r in acked for i in r.event_ids}
    assert delivered == expected, f"lost: {sorted(expected - delivered)[:10]}"
    assert any(not r.acked for r in received) and len(acked) > acked_before
    # A webhook-id always carries the same events; acknowledged twice only across the kill.
    by_id: dict[str, list] = {}
    for r in received:
        by_id.setdefault(r.message_id, []).append(r)
    assert all(len({tuple(r.event_ids) for r in rs}) == 1 for rs in by_id.values())
    for message_id, rs in by_id.items():
        acks = [r for r in rs if r.acked]
        if len(acks) > 1:
            assert acks[0].at <= killed_at, f"{message_id} was acknowledged twice without a kill in between"
    # Per entry, the first acknowledgement of its events is in event order.
    first_seen: list[dict] = []
    seen: set[int] = set()
    for r in acked:
        for event in r.events:
            if event["id"] not in seen:
                seen.add(event["id"])
                first_seen.append(event)
    entry_of = dict(Event.objects.values_list("pk", "entry_id"))
    for entry in range(entries):
        ids = [e["id"] for e in first_seen if entry_of[e["id"]] == entry]
        assert ids == sorted(ids)


# --- the API and the admin ------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_api_is_staff_only_shows_the_secret_once_and_guards_the_url(settings):
    from django.contrib.auth.models import User
    from rest_framework.test import APIClient

    staff, user = APIClient(), APIClient()
    staff.force_authenticate(User.objects.create_user("op", is_staff=True))
    user.force_authenticate(User.objects.create_user("reader"))
    assert user.get("/api/webhooks/").status_code == 403
    created = staff.post("/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "event_types": ["entry.created"]},
                         format="json")
    assert created.status_code == 201 and created.json()["secret"].startswith("whsec_")
    pk = created.json()["id"]
    shown = staff.get(f"/api/webhooks/{pk}/").json()
    assert "secret" not in shown and shown["state"] == "active"
    assert staff.patch(f"/api/webhooks/{pk}/", {"secret": "whsec_" + "A" * 40}, format="json").status_code == 400
    # An item's error is one sentence under its field, like every other 400 of the API.
    bad = staff.post("/api/webhooks/", {"url": "http://127.0.0.1:9/hook", "source_ids": [3, 0],
                                        "event_types": ["entry.created", "nope"]}, format="json")
    assert bad.status_code == 400
    assert bad.json()["source_ids"] == ["Item 1: Ensure this value is greater than or equal to 1."]
    assert bad.json()["event_types"][0].startswith("Item 1: ")

    settings.INGEST_ALLOWED_NETWORKS = []
    refused = staff.post("/api/webhooks/", {"url": "http://169.254.169.254/latest"}, format="json")
    assert refused.status_code == 400 and "link-local" in str(refused.json())

    WebhookEndpoint.objects.filter(pk=pk).update(state="disabled", disabled_reason="3 batches in a row went dead.")
    assert staff.patch(f"/api/webhooks/{pk}/", {"active": True}, format="json").status_code == 200
    assert WebhookEndpoint.objects.get(pk=pk).state == "active"


@pytest.mark.django_db
def test_the_admin_shows_state_and_backlog_and_re_enables(client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("admin", "a@example.invalid", "pw"))
    hook = WebhookEndpoint.objects.create(url="https://hooks.example/in", state="disabled",
                                          disabled_reason="3 batches in a row went dead.")
    event = Event.objects.create(type="entry.created", source_id=1, entry_id=1)
    WebhookDelivery.objects.create(endpoint=hook, event=event, state="dead", attempts=8)
    page = client.get("/admin/ingest/webhookendpoint/").content.decode()
    assert "3 batches in a row went dead." in page and "disabled" in page
    response = client.post("/admin/ingest/webhookendpoint/", {"action": "reenable", "_selected_action": [hook.pk]})
    assert response.status_code == 302 and WebhookEndpoint.objects.get(pk=hook.pk).state == "active"
    assert client.get(f"/admin/ingest/webhookdelivery/{WebhookDelivery.objects.get().pk}/change/").status_code == 200


def test_verbosity_0_prints_nothing_1_the_summary_and_json_one_object(db):
    import json
    from io import StringIO

    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", name="in-house")
    for verbosity in (0, 1, 2):
        out, err = StringIO(), StringIO()
        call_command("webhooks", "list", verbosity=verbosity, stdout=out, stderr=err)
        assert err.getvalue() == ""
        if verbosity == 0:
            assert out.getvalue() == ""
        else:
            assert "http://127.0.0.1:9/hook" in out.getvalue() and "pending 0" in out.getvalue()
    out = StringIO()
    call_command("webhooks", "deliver", "--json", stdout=out)
    got = json.loads(out.getvalue())
    assert got["action"] == "deliver" and got["dispatched"] == 0 and got["delivered"] == 0
