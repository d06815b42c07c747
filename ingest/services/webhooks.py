"""Webhooks: the outbox's events fanned out to the endpoints that want them, and sent, signed, in batches.

Two steps, both safe to run in several workers at once (``ingest.events.deliver``, ``manage.py
webhooks deliver``, beat, the Azure timer):

* ``events_dispatch``: the events not yet fanned out (``dispatched_at IS NULL``, not an id cursor:
  a transaction that committed a lower id after a higher one was dispatched is still found) become
  one ``WebhookDelivery`` per endpoint whose ``event_types`` and ``source_ids`` match, in the same
  transaction that marks them dispatched. Two dispatchers that select the same events collide on
  the ``UPDATE ... WHERE dispatched_at IS NULL`` (row locks; SQLite's database lock): the second
  finds fewer rows than it selected and rolls back (``WriteConflict``), so no event is fanned out twice.
* ``deliveries_send``: per endpoint, held by a lease (``lease_owner``, ``lease_expires_at``; a
  killed worker's lease simply expires), its pending deliveries in event order, at most
  ``WEBHOOK_BATCH_SIZE`` per signed POST. A batch keeps its ``message_id`` (the ``webhook-id``)
  across retries, and a failing batch blocks the later ones of its endpoint, so the events of an
  entry arrive in the order they happened. A failure is retried after ``base * 2^(n-1)`` seconds with
  equal jitter, capped (``WEBHOOK_BACKOFF_BASE``, ``WEBHOOK_BACKOFF_MAX``); after
  ``WEBHOOK_MAX_ATTEMPTS`` the batch is dead (a dead letter; ``webhooks_replay`` sends it again).
  An endpoint with ``WEBHOOK_DISABLE_DEAD_BATCHES`` dead batches in a row, failing for
  ``WEBHOOK_DISABLE_AFTER`` seconds, or whose URL the SSRF guard refuses, is disabled with the reason.

At least once: the outcome of a POST is written after it, and only while the lease is still ours.
A worker killed between the receiver's 2xx and that write leaves the batch pending; it is sent
again, with the same ``webhook-id``, once the lease expired. Receivers deduplicate on it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from ingest import fetch as fetching
from ingest.db import WriteConflict, chunked, in_batch_size, no_query_log, write_batch_size
from ingest.errors import BlockedURL, LeaseLost, SourceError, UsageError, storable
from ingest.models import Event, WebhookDelivery, WebhookEndpoint
from ingest.retry import run_atomic
from ingest.types import REASON_MAX

log = logging.getLogger("ingest.services")

DISPATCH_CHUNK = 500  # events fanned out per transaction
REPLAY_CHUNK = 500
Endpoint = WebhookEndpoint.State
Delivery = WebhookDelivery.State


@dataclass
class DeliverResult:
    dispatched: int = 0  # events fanned out
    batches: int = 0  # POSTs made
    delivered: int = 0  # deliveries acknowledged
    failed: int = 0  # batches that failed (retried later, or dead)
    dead: int = 0  # deliveries that went dead
    disabled: list[int] = field(default_factory=list)  # endpoints disabled on this pass

    def as_dict(self) -> dict:
        return {"dispatched": self.dispatched, "batches": self.batches, "delivered": self.delivered,
                "failed": self.failed, "dead": self.dead, "disabled": self.disabled}


# --- the fan-out ----------------------------------------------------------------------------------

def _wants(endpoint: dict, event: dict) -> bool:
    types, sources = endpoint["event_types"] or [], endpoint["source_ids"] or []
    return ((not types or event["type"] in types)
            and (not sources or (event["source_id"] is not None and int(event["source_id"]) in {int(s) for s in sources})))


def _receiving() -> Q:
    return Q(active=True) & ~Q(state=Endpoint.DISABLED)


def _dispatch_chunk(now: datetime, size: int) -> int:
    events = list(Event.objects.filter(dispatched_at__isnull=True).order_by("pk").values("pk", "type", "source_id")[:size])
    if not events:
        return 0
    ids = [event["pk"] for event in events]
    if Event.objects.filter(pk__in=ids, dispatched_at__isnull=True).update(dispatched_at=now) != len(ids):
        raise WriteConflict("Another dispatcher fanned out some of these events first.")
    endpoints = list(WebhookEndpoint.objects.filter(_receiving()).values("pk", "event_types", "source_ids"))
    rows = [WebhookDelivery(endpoint_id=endpoint["pk"], event_id=event["pk"], created_at=now)
            for event in events for endpoint in endpoints if _wants(endpoint, event)]
    if rows:
        WebhookDelivery.objects.bulk_create(rows, batch_size=write_batch_size(["endpoint", "event", "created_at"], rows))
    return len(ids)


def events_dispatch() -> int:
    """Fan every undispatched event out into deliveries; how many events."""
    total = 0
    size = min(DISPATCH_CHUNK, in_batch_size())
    while True:
        try:
            done = run_atomic(lambda: _dispatch_chunk(timezone.now(), size), label="events_dispatch")
        except WriteConflict:
            return total  # another dispatcher is at it; the next pass finds what it left
        total += done
        if done < size:
            return total


# --- sending --------------------------------------------------------------------------------------

def backoff_seconds(attempt: int, *, base: float, cap: float, rand=random.random) -> float:
    """The wait after the ``attempt``-th failure (1, 2, ...): ``base * 2^(attempt-1)``, capped, with
    equal jitter (half fixed, half random), so retries of many endpoints spread out yet never come at once."""
    ceiling = min(cap, base * 2 ** min(attempt - 1, 32))
    return ceiling / 2 + rand() * ceiling / 2


def _owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _due_endpoints(now: datetime) -> list[int]:
    pending = WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), state=Delivery.PENDING)
    return list(WebhookEndpoint.objects.filter(_receiving()).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
                .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now))
                .filter(Exists(pending)).order_by("pk").values_list("pk", flat=True))


def _claim(pk: int, owner: str) -> bool:
    """Lease endpoint ``pk`` (or extend our lease) if it is receiving and due; one UPDATE whose WHERE
    re-checks the lease, so two workers never send to one endpoint at once."""
    now = timezone.now()
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    expires = now + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)
    return run_atomic(lambda: WebhookEndpoint.objects.filter(free, due, _receiving(), pk=pk)
                      .update(lease_owner=owner, lease_expires_at=expires), label="webhook claim") == 1


def _release(pk: int, owner: str) -> None:
    run_atomic(lambda: WebhookEndpoint.objects.filter(pk=pk, lease_owner=owner).update(lease_owner="", lease_expires_at=None),
               label="webhook release")


@dataclass(frozen=True)
class Batch:
    message_id: str
    delivery_ids: list[int]
    body: bytes


def _batch_take(pk: int, owner: str) -> Batch | None:
    """The endpoint's next batch: the one already under way (same ``webhook-id``), else the first
    ``WEBHOOK_BATCH_SIZE`` pending deliveries in event order, given a new ``message_id``."""
    if not WebhookEndpoint.objects.filter(pk=pk, lease_owner=owner).exists():
        raise LeaseLost(f"The lease on webhook endpoint {pk} expired.")
    pending = WebhookDelivery.objects.filter(endpoint_id=pk, state=Delivery.PENDING).order_by("event_id")
    current = pending.exclude(message_id="").values_list("message_id", flat=True).first()
    if current:
        ids = list(pending.filter(message_id=current).values_list("pk", flat=True)[:settings.WEBHOOK_BATCH_SIZE])
    else:
        ids = list(pending.values_list("pk", flat=True)[:settings.WEBHOOK_BATCH_SIZE])
        if not ids:
            return None
        current = f"msg_{uuid.uuid4().hex}"
        WebhookDelivery.objects.filter(pk__in=ids).update(message_id=current)
    events = (WebhookDelivery.objects.filter(pk__in=ids).order_by("event_id")
              .values_list("event_id", "event__type", "event__created_at", "event__payload"))
    body = json.dumps({
        "type": "events",
        "timestamp": timezone.now().isoformat(),
        "data": {"events": [{"id": event_id, "type": kind, "timestamp": created.isoformat(), "data": payload}
                            for event_id, kind, created, payload in events]},
    }, separators=(",", ":"), sort_keys=True).encode()
    return Batch(message_id=current, delivery_ids=ids, body=body)


def _record(pk: int, owner: str, batch: Batch, *, status: int | None, error: SourceError | None, result: DeliverResult) -> bool:
    """Write what the POST of ``batch`` came to, if the lease is still ours (else the other worker
    sends the batch again: at least once). True when the endpoint may take its next batch now."""
    now = timezone.now()

    def write() -> bool:
        endpoint = WebhookEndpoint.objects.filter(pk=pk, lease_owner=owner).first()
        if endpoint is None:
            raise LeaseLost(f"The lease on webhook endpoint {pk} expired before its outcome was written.")
        rows = WebhookDelivery.objects.filter(pk__in=batch.delivery_ids, state=Delivery.PENDING)
        if error is None:
            n = rows.update(state=Delivery.DELIVERED, delivered_at=now, last_attempt_at=now, last_status=status,
                            last_error="", attempts=F("attempts") + 1, next_attempt_at=None)
            WebhookEndpoint.objects.filter(pk=pk).update(
                state=Endpoint.ACTIVE, consecutive_failures=0, dead_batches=0, failing_since=None, last_success_at=now,
                next_attempt_at=None, last_error="")
            result.delivered += n
            return True
        reason = storable(str(error), REASON_MAX)
        attempts = 1 + max(rows.values_list("attempts", flat=True), default=0)
        delay = backoff_seconds(attempts, base=settings.WEBHOOK_BACKOFF_BASE, cap=settings.WEBHOOK_BACKOFF_MAX)
        dead = attempts >= settings.WEBHOOK_MAX_ATTEMPTS or not error.transient
        n = rows.update(attempts=F("attempts") + 1, last_attempt_at=now, last_status=status, last_error=reason,
                        state=Delivery.DEAD if dead else Delivery.PENDING,
                        next_attempt_at=None if dead else now + timedelta(seconds=delay))
        failing_since = endpoint.failing_since or now
        dead_batches = endpoint.dead_batches + (1 if dead else 0)
        values = {"state": Endpoint.FAILING, "consecutive_failures": endpoint.consecutive_failures + 1,
                  "failing_since": failing_since, "dead_batches": dead_batches, "last_error": reason,
                  "next_attempt_at": now + timedelta(seconds=delay)}
        why = _disable_reason(error, dead_batches=dead_batches, failing_for=(now - failing_since).total_seconds())
        if why:
            values.update(state=Endpoint.DISABLED, disabled_reason=storable(f"{why} Last error: {reason}", REASON_MAX))
            result.disabled.append(pk)
            log.warning("webhook endpoint disabled", extra={"endpoint_id": pk, "reason": why})
        WebhookEndpoint.objects.filter(pk=pk).update(**values)
        result.failed += 1
        result.dead += n if dead else 0
        return False

    return run_atomic(write, label=f"webhook {pk}")


def _disable_reason(error: SourceError, *, dead_batches: int, failing_for: float) -> str:
    if isinstance(error, BlockedURL):
        return "Its URL is refused by the address guard (INGEST_ALLOWED_NETWORKS)."
    if dead_batches >= settings.WEBHOOK_DISABLE_DEAD_BATCHES:
        return f"{dead_batches} batches in a row went dead (WEBHOOK_DISABLE_DEAD_BATCHES)."
    if failing_for >= settings.WEBHOOK_DISABLE_AFTER:
        return f"It has been failing for {failing_for / 3600:.1f} hours (WEBHOOK_DISABLE_AFTER)."
    return ""


def _endpoint_send(pk: int, owner: str, *, client, fetch_settings, until: float, result: DeliverResult) -> None:
    """Send endpoint ``pk``'s batches, in order, until it has none, one fails, or time is up."""
    endpoint = WebhookEndpoint.objects.filter(pk=pk).values("url", "secret").first()
    while endpoint and time.monotonic() < until and _claim(pk, owner):
        batch = run_atomic(lambda: _batch_take(pk, owner), label=f"webhook {pk} batch")
        if batch is None:
            return
        status, error = None, None
        try:
            status = fetching.webhook_post(endpoint["url"], batch.body, message_id=batch.message_id,
                                           secret=endpoint["secret"], client=client, settings=fetch_settings)
        except SourceError as exc:
            error, status = exc, getattr(exc, "status", None)
        result.batches += 1
        if not _record(pk, owner, batch, status=status, error=error, result=result):
            return


def deliveries_send(*, budget: float | None = None) -> DeliverResult:
    """Send the due batches of every endpoint, for at most ``budget`` seconds (default: half the lease)."""
    result = DeliverResult()
    until = time.monotonic() + (settings.WEBHOOK_LEASE_SECONDS / 2 if budget is None else budget)
    owner = _owner()
    fetch_settings = fetching.FetchSettings.from_settings()
    with fetching.make_client(fetch_settings, connections=2) as client:
        for pk in _due_endpoints(timezone.now()):
            if time.monotonic() >= until:
                break
            try:
                _endpoint_send(pk, owner, client=client, fetch_settings=fetch_settings, until=until, result=result)
            except LeaseLost as exc:
                log.warning("webhook lease lost", extra={"endpoint_id": pk, "error": str(exc)})
            finally:
                _release(pk, owner)
    return result


@no_query_log()  # long-running: no DEBUG query log (ingest.db)
def webhooks_deliver(*, budget: float | None = None) -> DeliverResult:
    """One pass: fan out the new events, then send what is due (the task, the command, the timer)."""
    dispatched = events_dispatch()
    result = deliveries_send(budget=budget)
    result.dispatched = dispatched
    return result


# --- replay, re-enable, list ---------------------------------------------------------------------

def webhooks_replay(*, since: datetime | None = None, event_id: int | None = None, endpoint_id: int | None = None) -> int:
    """Send again the events created since ``since`` (or the one event ``event_id``) to every
    receiving endpoint that wants them (or to ``endpoint_id``): their deliveries, delivered or dead,
    become pending again, and an endpoint that missed one (added later, disabled then) gets it.
    How many deliveries are now pending."""
    if (since is None) == (event_id is None):
        raise UsageError("Give one of --since or --event.")
    events = Event.objects.filter(dispatched_at__isnull=False)
    events = events.filter(pk=event_id) if event_id is not None else events.filter(created_at__gte=since)
    targets = WebhookEndpoint.objects.filter(_receiving())
    if endpoint_id is not None:
        targets = WebhookEndpoint.objects.filter(pk=endpoint_id)
        if not targets.exists():
            raise UsageError(f"There is no webhook endpoint {endpoint_id}.")
    endpoints = list(targets.values("pk", "event_types", "source_ids"))
    ids = list(events.order_by("pk").values_list("pk", flat=True))
    total = 0
    for chunk in chunked(ids, min(REPLAY_CHUNK, in_batch_size())):
        total += run_atomic(lambda chunk=chunk: _replay_chunk(list(chunk), endpoints), label="webhooks_replay")
    return total


def _replay_chunk(ids: list[int], endpoints: list[dict]) -> int:
    now = timezone.now()
    wanted = {(endpoint["pk"], event["pk"]) for event in Event.objects.filter(pk__in=ids).values("pk", "type", "source_id")
              for endpoint in endpoints if _wants(endpoint, event)}
    if not wanted:
        return 0
    found = {(endpoint, event): pk for pk, endpoint, event in WebhookDelivery.objects.filter(
        event_id__in=ids, endpoint_id__in={e for e, _ in wanted}).values_list("pk", "endpoint_id", "event_id")}
    have = set(found)
    again = sorted(pk for pair, pk in found.items() if pair in wanted)
    if again:  # by primary key, at most a chunk of them
        WebhookDelivery.objects.filter(pk__in=again).update(
            state=Delivery.PENDING, attempts=0, message_id="", next_attempt_at=None, last_error="")
    rows = [WebhookDelivery(endpoint_id=endpoint, event_id=event, created_at=now) for endpoint, event in sorted(wanted - have)]
    if rows:
        WebhookDelivery.objects.bulk_create(rows, batch_size=write_batch_size(["endpoint", "event", "created_at"], rows))
    return len(wanted)


def endpoint_enable(pk: int) -> bool:
    """Re-enable a disabled (or failing) endpoint: it receives and is sent to again, at once."""
    return run_atomic(lambda: endpoint_reset(pk), label="endpoint_enable")


def endpoint_reset(pk: int) -> bool:
    """``endpoint_enable`` inside the caller's transaction (the API's update)."""
    return WebhookEndpoint.objects.filter(pk=pk).update(
        active=True, state=Endpoint.ACTIVE, disabled_reason="", dead_batches=0, consecutive_failures=0,
        failing_since=None, next_attempt_at=None) == 1


def endpoint_check_url(url: str) -> None:
    """The address guard at registration (UsageError with its sentence): a webhook URL must be one
    the fetch stage could reach."""
    try:
        fetching.check_url(url, fetching.FetchSettings.from_settings())
    except SourceError as exc:
        raise UsageError(str(exc)) from None


def webhooks_list() -> list[dict]:
    """Each endpoint with its state and its backlog (pending and dead deliveries)."""
    rows = WebhookEndpoint.objects.annotate(
        pending=Count("deliveries", filter=Q(deliveries__state=Delivery.PENDING)),
        dead=Count("deliveries", filter=Q(deliveries__state=Delivery.DEAD)),
    ).order_by("pk")
    return [{"id": e.pk, "name": e.name, "url": e.url, "active": e.active, "state": e.state, "pending": e.pending,
             "dead": e.dead, "last_success_at": e.last_success_at.isoformat() if e.last_success_at else None,
             "disabled_reason": e.disabled_reason, "last_error": e.last_error} for e in rows]
