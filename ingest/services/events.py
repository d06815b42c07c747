"""The outbox: events written in the transaction of the change they tell of (``Event``).

``events_record`` is called inside the writer's ``run_atomic`` block, so that the rows commit or
roll back with the change. ``entry_events`` builds the rows of one source write or prune chunk
(one bulk insert: O(1) statements per write, not per entry), and ``entries_announce`` arranges,
on commit, the ``entry_ingested`` signal and the ``ingest.events.deliver`` task that fans the new
events out to the webhooks (docs/webhooks.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction

from ingest.db import write_batch_size
from ingest.models import Entry, Event, WebhookEndpoint
from ingest.signals import entry_ingested

log = logging.getLogger("ingest.services")

_FIELDS = ("type", "source_id", "entry_id", "payload", "created_at", "dispatched_at")
KINDS = {Event.Type.ENTRY_CREATED: "created", Event.Type.ENTRY_UPDATED: "updated", Event.Type.ENTRY_PRUNED: "pruned"}
DELIVER_TASK = "ingest.events.deliver"


def events_record(events: Iterable[Event]) -> int:
    """Insert ``events`` (unsaved ``Event`` rows) in the caller's transaction; how many."""
    rows = list(events)
    if rows:
        Event.objects.bulk_create(rows, batch_size=write_batch_size(_FIELDS, rows))
    return len(rows)


def entry_payload(*, entry_id: int, source_id: int, guid: str, link: str, headline: str,
                  published_at: datetime | None, kind: str) -> dict:
    """What a consumer needs of an entry's change, without reading the entry back."""
    return {"entry_id": entry_id, "source_id": source_id, "guid": guid, "link": link, "headline": headline,
            "published_at": published_at.isoformat() if published_at else None, "kind": kind}


def entry_events(*, source_id: int, touched: Sequence[tuple[int, object]], created: int, now: datetime) -> None:
    """Record ``entry.created`` for the first ``created`` of ``touched`` ((pk, ParsedEntry) pairs, as
    ``feed_upsert`` returns them) and ``entry.updated`` for the rest, then announce them on commit."""
    rows = []
    for index, (pk, entry) in enumerate(touched):
        kind = Event.Type.ENTRY_CREATED if index < created else Event.Type.ENTRY_UPDATED
        rows.append(Event(type=kind, source_id=source_id, entry_id=pk, created_at=now, payload=entry_payload(
            entry_id=pk, source_id=source_id, guid=entry.guid, link=entry.link, headline=entry.headline,
            published_at=entry.published_at, kind=KINDS[kind])))
    events_record(rows)
    for kind in (Event.Type.ENTRY_CREATED, Event.Type.ENTRY_UPDATED):
        ids = [row.entry_id for row in rows if row.type == kind]
        if ids:
            entries_announce(source_id=source_id, entry_ids=ids, kind=KINDS[kind])
    if rows:
        deliver_soon()


def pruned_events(*, source_id: int, entries: Sequence[tuple[int, str, str, str, datetime | None]], now: datetime) -> None:
    """Record ``entry.pruned`` for entries (pk, guid, link, headline, published_at) deleted in this transaction."""
    events_record(Event(type=Event.Type.ENTRY_PRUNED, source_id=source_id, entry_id=pk, created_at=now,
                        payload=entry_payload(entry_id=pk, source_id=source_id, guid=guid, link=link, headline=headline,
                                              published_at=published_at, kind="pruned"))
                  for pk, guid, link, headline, published_at in entries)
    if entries:
        entries_announce(source_id=source_id, entry_ids=[row[0] for row in entries], kind="pruned")
        deliver_soon()


def entries_announce(*, source_id: int, entry_ids: list[int], kind: str) -> None:
    """On commit of the caller's transaction: the signal, then the delivery task (nothing on rollback)."""
    transaction.on_commit(lambda: entry_ingested.send(sender=Entry, entry_ids=entry_ids, kind=kind, source_id=source_id),
                          robust=True)


def deliver_soon() -> None:
    """Queue ``ingest.events.deliver`` after the commit, when Celery is in use (beat and
    ``manage.py webhooks deliver`` catch up whatever a crash between commit and queueing left)."""
    if settings.PIPELINE_CELERY:
        transaction.on_commit(_enqueue, robust=True)


def _enqueue() -> None:
    from celery import current_app

    # After the commit, outside the writer's transaction: no endpoint, no task.
    if not WebhookEndpoint.objects.filter(active=True).exclude(state=WebhookEndpoint.State.DISABLED).exists():
        return
    try:
        # retry=False: with the broker down, a source write must not wait on it.
        current_app.send_task(DELIVER_TASK, expires=settings.WEBHOOK_SCHEDULE_SECONDS * 4, retry=False)
    except Exception as exc:  # noqa: BLE001 - the broker may be down; beat catches up
        log.warning("could not queue the webhook delivery", extra={"error": str(exc)})
