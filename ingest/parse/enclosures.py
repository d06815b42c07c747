"""An entry's enclosures: the files it points to, as ``ParsedEnclosure`` values (``entry_enclosures``).

Owns what counts as one: RSS ``<enclosure url type length>`` and Atom ``<link rel="enclosure">``
(feedparser gives both as ``links`` with ``rel="enclosure"``), ``media:content`` (kind
"content") and ``media:thumbnail`` (kind "thumbnail"), those inside a ``media:group`` included
(feedparser lists them with the others). A URL is resolved against the document's base URI as the
entry's link is, and kept only as an absolute http(s) URL that fits ``LINK_MAX`` (never cut); a
type longer than ``ENCLOSURE_TYPE_MAX`` or with control characters is dropped (a cut MIME type
names another one); a length that is not a whole number of bytes is None. Two with one URL
(``ingest.identity.url_key``, the stored row's key) and one kind are one: the first is kept. At most
``MAX_ENCLOSURES`` per entry, in document order.

Nothing here fetches an enclosure: the pipeline stores where the files are, never the files.
Pure: no network, no ORM.
"""

from __future__ import annotations

import re

from feedparser import FeedParserDict

from ingest.identity import url_key
from ingest.links import absolute, http_url
from ingest.types import ENCLOSURE_TYPE_MAX, ParsedEnclosure

MAX_ENCLOSURES = 50  # per entry: a podcast episode has one or a few; more is a generator gone wrong
_LENGTH = re.compile(r"[0-9]{1,19}")
_LENGTH_MAX = 2**63 - 1  # BigIntegerField
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def entry_enclosures(entry: FeedParserDict, base: str) -> tuple[ParsedEnclosure, ...]:
    """The entry's enclosures, media:content and media:thumbnail, in document order, without repeats."""
    found: dict[tuple[str, str], ParsedEnclosure] = {}
    for kind, attrs in _candidates(entry):
        enclosure = _enclosure(kind, attrs, base)
        if enclosure is not None:
            found.setdefault((url_key(enclosure.url), kind), enclosure)
            if len(found) >= MAX_ENCLOSURES:
                break
    return tuple(found.values())


def _candidates(entry: FeedParserDict):
    for link in dict.get(entry, "links") or ():
        if isinstance(link, dict) and link.get("rel") == "enclosure":
            yield "enclosure", {"url": link.get("href"), "type": link.get("type"), "length": link.get("length")}
    for item in dict.get(entry, "media_content") or ():
        if isinstance(item, dict):
            yield "content", {"url": item.get("url"), "type": item.get("type"), "length": item.get("filesize")}
    for item in dict.get(entry, "media_thumbnail") or ():
        if isinstance(item, dict):
            yield "thumbnail", {"url": item.get("url"), "type": item.get("type"), "length": None}


def _enclosure(kind: str, attrs: dict, base: str) -> ParsedEnclosure | None:
    url = attrs["url"]
    url = http_url(absolute(base, url)) if isinstance(url, str) else ""
    if not url:
        return None
    return ParsedEnclosure(url=url, type=media_type(attrs["type"]), length=length(attrs["length"]), kind=kind)


def media_type(value) -> str:
    """The type as the feed states it, trimmed; "" when absent, too long or not text."""
    text = value.strip() if isinstance(value, str) else ""
    return text if len(text) <= ENCLOSURE_TYPE_MAX and not _CONTROL.search(text) else ""


def length(value) -> int | None:
    """A length in bytes: a non-negative whole number that fits a 64-bit column, else None."""
    text = value.strip() if isinstance(value, str) else ""
    return number if _LENGTH.fullmatch(text) and (number := int(text)) <= _LENGTH_MAX else None
