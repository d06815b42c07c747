"""Comment rows from an entry's comment feed (wfw:commentRss). ORM only.

Comments are matched by guid key (``ingest.identity.guid_key``) within their entry, of several
with one key in a feed the first counts; a new one is inserted, an edited one updated, and
one that has dropped out of the feed is kept (comment feeds show only the latest comments). The
entry's counter is refreshed in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ingest.counters import counters_refresh
from ingest.db import MAX_ROWS_PER_STATEMENT
from ingest.identity import first_by_guid
from ingest.models import Comment
from ingest.types import ParsedComment

FIELDS = ("author_name", "author_email", "body", "published_at")


def comments_upsert(*, entry_id: int, comments: Sequence[ParsedComment], fetched_at: datetime) -> tuple[int, int]:
    """Returns (created, updated). Must run inside the caller's atomic block."""
    existing = {
        key: (pk, values)
        for key, pk, *values in Comment.objects.filter(entry_id=entry_id).values_list("guid_key", "pk", *FIELDS)
    }
    new, changed = [], []
    for key, parsed in first_by_guid(comments):
        current = existing.get(key)
        values = [parsed.author_name, parsed.author_email, parsed.body, parsed.published_at or fetched_at]
        if current is None:
            new.append(Comment(entry_id=entry_id, guid=parsed.guid, guid_key=key, created_at=fetched_at,
                               **dict(zip(FIELDS, values))))
        elif parsed.published_at is None:
            # An undated comment keeps its first-seen date; compare the rest only.
            if list(current[1][:3]) != values[:3]:
                changed.append(Comment(pk=current[0], **dict(zip(FIELDS, values[:3] + [current[1][3]]))))
        elif list(current[1]) != values:
            changed.append(Comment(pk=current[0], **dict(zip(FIELDS, values))))
    Comment.objects.bulk_create(new, batch_size=MAX_ROWS_PER_STATEMENT)
    if changed:
        Comment.objects.bulk_update(changed, FIELDS, batch_size=MAX_ROWS_PER_STATEMENT)
    if new:
        counters_refresh([entry_id])
    return len(new), len(changed)
