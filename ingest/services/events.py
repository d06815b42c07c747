"""The outbox: events written in the transaction of the change they tell of (``Event``).

``events_record`` is called inside the writer's ``run_atomic`` block, so that the rows commit or
roll back with the change.
"""

from __future__ import annotations

from collections.abc import Iterable

from ingest.db import write_batch_size
from ingest.models import Event


_FIELDS = ("type", "source_id", "entry_id", "payload", "created_at", "dispatched_at")


def events_record(events: Iterable[Event]) -> int:
    """Insert ``events`` (unsaved ``Event`` rows) in the caller's transaction; how many."""
    rows = list(events)
    if rows:
        Event.objects.bulk_create(rows, batch_size=write_batch_size(_FIELDS, rows))
    return len(rows)
