"""What a user may change on an entry: its rating. The rest of an entry belongs to the pipeline
(its content to the feed, its counters to their rows)."""

from __future__ import annotations

from django.utils import timezone

from ingest.models import Entry


def entry_rating_set(*, entry: Entry, rating: int) -> Entry:
    """Set one entry's rating in one UPDATE of that column (a run may be rewriting the entry's
    content at the same moment), and stamp ``updated_at`` for clients that sync by it."""
    now = timezone.now()
    Entry.objects.filter(pk=entry.pk).update(rating=rating, updated_at=now)
    entry.rating, entry.updated_at = rating, now
    return entry
