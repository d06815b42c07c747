"""The WebSub subscriber (W3C Recommendation): subscribe, verify intent, receive pushes, renew.

* ``subscriptions_maintain``: the pass every ``ingest_feeds`` run (and the beat's
  ``websub-maintain``) makes over the rows whose ``next_action_at`` has come: a discovered row is
  subscribed, a lease near its end renewed, a request the hub never verified or that failed sent
  again (backed off), and a row whose source was deleted or deactivated, or whose feed names another
  hub or topic, unsubscribed. Requests go to the hub through the fetch guard (``ingest.fetch.hub``).
* ``intent_verify``: the hub's GET on the callback. A subscribe is confirmed only for a row that
  asked for it, on its topic; the challenge is echoed and the lease stored. An unsubscribe is
  confirmed only for a row that no longer wants it; ``denied`` is recorded.
* ``content_receive``: the hub's POST. The ``X-Hub-Signature`` HMAC (sha1, sha256, sha384, sha512)
  with the row's secret is checked first; a body without a valid one is not ingested and still
  answered 2xx (the spec's advice: a forger learns nothing). A valid body is parsed and stored
  exactly as a fetch's 200 with that content (``fetch_parse.source_parse_pushed``, then
  ``store.source_store`` under the source's lease): the same pipeline, the same per-source boundary.

Secrets and callback ids are never logged. The rows' discovery and the poll interval of a pushed
source are ``ingest.services.subscriptions``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ingest import fetch as fetching
from ingest.decide import Policy, backoff_seconds
from ingest.errors import SourceError, first_line, storable
from ingest.models import WebSubSubscription
from ingest.services.fetch_parse import source_parse_pushed
from ingest.services.leases import sources_claim
from ingest.services.store import source_store
from ingest.services.subscriptions import websub_enabled
from ingest.types import REASON_MAX, SourceResult

log = logging.getLogger("ingest.services")
State = WebSubSubscription.State

SIGNATURE_METHODS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
VERIFY_WAIT = 3600  # seconds: a request the hub has not verified by then is sent again
MAINTAIN_LIMIT = 200  # rows acted on per pass; the rest wait for the next one
PUSH_OWNER_PREFIX = "websub:"


def callback_url(subscription: WebSubSubscription) -> str:
    return f"{settings.INGEST_WEBSUB_CALLBACK_URL}/websub/{subscription.callback_id}"


def renew_at(expires: datetime, lease_seconds: int) -> datetime:
    """When to renew a lease: a tenth of it before its end, and at least two ingest schedules
    before (the pass runs once per schedule), but never earlier than half-way."""
    margin = min(max(lease_seconds / 10, 2 * settings.INGEST_SCHEDULE_SECONDS), lease_seconds / 2)
    return expires - timedelta(seconds=margin)


def _keep(subscription: WebSubSubscription) -> bool:
    source = subscription.source
    return subscription.wanted and source is not None and source.active


# --- the maintenance pass ---------------------------------------------------------------------


def subscriptions_maintain(*, now: datetime | None = None) -> dict[str, int]:
    """Act on every subscription whose time has come; counts of what was done, by action."""
    done = {"subscribe": 0, "unsubscribe": 0, "dropped": 0, "failed": 0}
    if not websub_enabled():
        return done
    now = now or timezone.now()
    # Due, or granted by the hub for a source that is gone or inactive now (however it got there:
    # delete_source, the admin, a 410) and not yet being cancelled.
    live = [State.REQUESTED, State.SUBSCRIBED]
    gone = Q(source__isnull=True) | Q(source__active=False) | Q(wanted=False)
    due = list(WebSubSubscription.objects.filter(Q(next_action_at__lte=now) | (gone & Q(state__in=live)))
               .select_related("source").order_by("next_action_at", "pk")[:MAINTAIN_LIMIT])
    if not due:
        return done
    fetch_settings = fetching.FetchSettings.from_settings()
    with fetching.make_client(fetch_settings, connections=2) as client:
        for subscription in due:
            action = _action(subscription)
            if action == "dropped":
                subscription.delete()
            elif not _send(subscription, action, now=now, client=client, fetch_settings=fetch_settings):
                action = "failed"
            done[action] += 1
    log.info("websub maintenance", extra=done)
    return done


def _action(subscription: WebSubSubscription) -> str:
    if _keep(subscription):
        return "subscribe"  # new, failed, never verified, denied a while ago, or a lease to renew
    if subscription.state in (State.REQUESTED, State.SUBSCRIBED, State.UNSUBSCRIBING):
        return "unsubscribe"
    return "dropped"  # the hub never granted it: nothing to undo


def _send(subscription: WebSubSubscription, mode: str, *, now: datetime, client, fetch_settings) -> bool:
    """Send one request; the row says it is awaiting verification *before* the request goes out,
    since the hub may verify before it even answers."""
    form = {"hub.callback": callback_url(subscription), "hub.mode": mode, "hub.topic": subscription.topic_url}
    if mode == "subscribe":
        form.update({"hub.lease_seconds": str(settings.INGEST_WEBSUB_LEASE_SECONDS), "hub.secret": subscription.secret})
        # A renewal keeps the live subscription live until the hub verifies it again.
        state = State.SUBSCRIBED if _lease_runs(subscription, now) else State.REQUESTED
    else:
        state = State.UNSUBSCRIBING
    wait = now + timedelta(seconds=VERIFY_WAIT)
    if _lease_runs(subscription, now) and mode == "subscribe":
        wait = min(wait, subscription.lease_expires_at)
    WebSubSubscription.objects.filter(pk=subscription.pk).update(state=state, requested_at=now, next_action_at=wait)
    try:
        fetching.hub_request(subscription.hub_url, form, client=client, settings=fetch_settings)
    except SourceError as exc:
        failures = subscription.consecutive_failures + 1
        delay = backoff_seconds(failures, exc.retry_after, policy=Policy.from_settings(settings), transient=exc.transient)
        WebSubSubscription.objects.filter(pk=subscription.pk, requested_at=now).update(
            state=State.FAILED if mode == "subscribe" and state == State.REQUESTED else state,
            consecutive_failures=failures, last_error=storable(str(exc), REASON_MAX),
            next_action_at=now + timedelta(seconds=delay))
        log.warning("websub request failed", extra={"subscription_id": subscription.pk, "source_id": subscription.source_id,
                                                    "mode": mode, "hub": subscription.hub_url, "error": first_line(exc)})
        return False
    log.info("websub request sent", extra={"subscription_id": subscription.pk, "source_id": subscription.source_id,
                                           "mode": mode, "hub": subscription.hub_url})
    return True


def _lease_runs(subscription: WebSubSubscription, now: datetime) -> bool:
    return (subscription.state == State.SUBSCRIBED and subscription.lease_expires_at is not None
            and subscription.lease_expires_at > now)


# --- the callback -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: str = ""


def intent_verify(*, callback_id: str, params) -> Answer:
    """The hub's verification of intent (``params``: the GET's query) or its denial."""
    now = timezone.now()
    subscription = WebSubSubscription.objects.select_related("source").filter(callback_id=callback_id).first()
    mode, topic = params.get("hub.mode", ""), params.get("hub.topic", "")
    if subscription is None or topic != subscription.topic_url:
        return Answer(404)
    ids = {"subscription_id": subscription.pk, "source_id": subscription.source_id, "mode": mode}
    if mode == "denied":
        reason = params.get("hub.reason", "") or "no reason given"
        WebSubSubscription.objects.filter(pk=subscription.pk).update(
            state=State.DENIED, last_error=storable(f"The hub denied the subscription: {reason}", REASON_MAX),
            next_action_at=now + timedelta(seconds=settings.INGEST_MAX_BACKOFF))
        log.warning("websub subscription denied", extra={**ids, "reason": reason[:200]})
        return Answer(200)
    challenge = params.get("hub.challenge", "")
    if not challenge or mode not in ("subscribe", "unsubscribe"):
        return Answer(400)
    if mode == "subscribe":
        if not _keep(subscription) or subscription.state not in (State.REQUESTED, State.SUBSCRIBED):
            log.info("websub verification refused", extra=ids)
            return Answer(404)
        lease = _lease(params.get("hub.lease_seconds", ""))
        expires = now + timedelta(seconds=lease)
        WebSubSubscription.objects.filter(pk=subscription.pk).update(
            state=State.SUBSCRIBED, lease_seconds=lease, lease_expires_at=expires, verified_at=now,
            next_action_at=renew_at(expires, lease), consecutive_failures=0, last_error="")
    else:
        if _keep(subscription) and subscription.state != State.UNSUBSCRIBING:
            log.info("websub verification refused", extra=ids)
            return Answer(404)
        subscription.delete()
    log.info("websub verified", extra={**ids, "lease_seconds": params.get("hub.lease_seconds", "")})
    return Answer(200, challenge)


def _lease(value: str) -> int:
    """The lease the hub granted (it must send one on subscribe); ours asked for, if it did not."""
    text = value.strip()
    if text.isascii() and text.isdigit() and 0 < int(text) <= 10 * 365 * 86400:
        return int(text)
    return settings.INGEST_WEBSUB_LEASE_SECONDS


def signature_valid(secret: str, body: bytes, header: str) -> bool:
    """``X-Hub-Signature: method=hexdigest`` (WebSub section 8): an HMAC of the body with the secret."""
    method, _, digest = header.strip().partition("=")
    algorithm = SIGNATURE_METHODS.get(method.strip().lower())
    if algorithm is None or not digest:
        return False
    expected = hmac.new(secret.encode(), body, algorithm).hexdigest()
    return hmac.compare_digest(expected, digest.strip().lower())


def content_receive(*, callback_id: str, body: bytes, content_type: str, signature: str) -> Answer:
    """A pushed body: checked, then ingested as the source's fetch. 202 when taken (or ignored as
    forged), 410 when this subscription is gone (the hub may drop it), 413 over INGEST_MAX_BYTES,
    503 while a run holds the source (the hub delivers again)."""
    subscription = WebSubSubscription.objects.select_related("source").filter(callback_id=callback_id).first()
    if subscription is None or not _keep(subscription) or subscription.state not in (State.SUBSCRIBED, State.REQUESTED):
        return Answer(410)
    ids = {"subscription_id": subscription.pk, "source_id": subscription.source_id}
    if not signature_valid(subscription.secret, body, signature):
        log.warning("websub push ignored: missing or invalid X-Hub-Signature",
                    extra={**ids, "signature_method": signature.partition("=")[0][:10] if signature else "none"})
        return Answer(202)
    if len(body) > settings.INGEST_MAX_BYTES:
        log.warning("websub push refused: over INGEST_MAX_BYTES", extra={**ids, "bytes": len(body)})
        return Answer(413)
    result = _ingest(subscription, body, content_type)
    if result is None:
        return Answer(503)
    if not result.failed:
        WebSubSubscription.objects.filter(pk=subscription.pk).update(last_push_at=timezone.now(), pushes=subscription.pushes + 1)
    log.info("websub push", extra={**ids, "outcome": result.outcome, "entries_created": result.created,
                                   "entries_updated": result.updated, "error": result.error})
    return Answer(202)


def _ingest(subscription: WebSubSubscription, body: bytes, content_type: str) -> SourceResult | None:
    """Parse and store the pushed body under the source's lease; None while another run holds it."""
    owner = f"{PUSH_OWNER_PREFIX}{uuid.uuid4().hex}"
    claimed = sources_claim(ids=[subscription.source_id], owner=owner, now=timezone.now())
    if not claimed:
        return None
    source = claimed[0]
    fetched = source_parse_pushed(source, content=body, headers={"content-type": content_type} if content_type else {})
    return source_store(source=source, fetched=fetched, owner=owner)
