"""The WebSub subscription rows as the per-source transaction sees them: discovery and the poll.

``subscription_note`` runs inside ``store``'s transaction after a feed was parsed: the hub and
topic it advertises (``ParsedFeed.hub_url``, ``self_url``) become a row to subscribe, and rows for
a hub or topic it no longer names are no longer ``wanted`` (the maintenance pass of
``ingest.services.websub`` unsubscribes them). ``subscription_live`` says whether the source is
pushed to now, so that its poll waits ``INGEST_MAX_INTERVAL``, a safety net. Both do nothing, and
cost no query, while ``INGEST_WEBSUB_CALLBACK_URL`` is empty. No network here.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings

from ingest.models import WebSubSubscription
from ingest.types import ParsedFeed

State = WebSubSubscription.State


def websub_enabled() -> bool:
    return bool(settings.INGEST_WEBSUB_CALLBACK_URL)


def subscription_note(*, source_id: int, feed: ParsedFeed, now: datetime) -> None:
    """Record the hub and topic ``feed`` advertises for the source (inside the caller's transaction)."""
    if not websub_enabled():
        return
    wanted = WebSubSubscription.objects.filter(source_id=source_id, wanted=True)
    hub, topic = feed.hub_url, feed.self_url
    if not (hub and topic):
        wanted.update(wanted=False, next_action_at=now)
        return
    wanted.exclude(hub_url=hub, topic_url=topic).update(wanted=False, next_action_at=now)
    if not wanted.filter(hub_url=hub, topic_url=topic).exists():
        WebSubSubscription.objects.create(source_id=source_id, hub_url=hub, topic_url=topic, next_action_at=now)


def subscription_live(*, source_id: int, now: datetime) -> bool:
    """Whether the source has a verified subscription whose lease runs: it is pushed to."""
    if not websub_enabled():
        return False
    return WebSubSubscription.objects.filter(source_id=source_id, wanted=True, state=State.SUBSCRIBED,
                                             lease_expires_at__gt=now).exists()
