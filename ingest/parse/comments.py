"""A per-post comment feed (WordPress ``/feed/`` of a post, or any RSS/Atom) -> ``ParsedComment`` values.

Owns what one comment becomes: its guid, first author's name and email, sanitized body (under the
same HTML limits as entries; a comment feed has no warning of its own, so its cuts are logged) and
plausible publication date. Must not touch the network or the ORM; reads no clock unless the caller
leaves out ``now``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from ingest.parse.dates import PUBLISHED_KEYS, first_date, latest_plausible
from ingest.parse.document import feedparser_parse, unique_entries
from ingest.parse.html import BodyGuard, body as comment_body
from ingest.parse.text import authors as comment_authors
from ingest.types import ParsedComment

log = logging.getLogger("ingest.parse")


def parse_comments(
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "",
    now: datetime | None = None,
    parser: str = "auto",
) -> tuple[ParsedComment, ...]:
    """Parse a per-post comment feed (WordPress ``/feed/`` of a post, or any RSS/Atom) into comments;
    ``parser`` as for ``parse_feed``."""
    parsed, base = feedparser_parse(content, headers, url, parser=parser)
    latest = latest_plausible(now)
    comments: list[ParsedComment] = []
    guard = BodyGuard()
    for entry, guid in unique_entries(parsed["entries"]):
        authors = comment_authors(entry)
        comments.append(
            ParsedComment(
                guid=guid,
                author_name=authors[0].name if authors else "",
                author_email=authors[0].email if authors else "",
                body=comment_body(entry, base, guard, guid),
                published_at=first_date(entry, PUBLISHED_KEYS, latest),
            )
        )
    if guard.cuts:  # a comment feed has no warning of its own to carry it
        log.warning("comment feed parsed with cuts", extra={"url": url, "warning": guard.warning()})
    return tuple(comments)
