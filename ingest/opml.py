"""OPML (the feed-list exchange format) -> (url, title) pairs. Pure: no ORM, no network.

Parsed with defusedxml, so entity expansion (billion laughs), external entities and DTD tricks in
a hostile file are refused instead of evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

from ingest.errors import ParseError


@dataclass(frozen=True)
class OpmlFeed:
    url: str
    title: str


def parse_opml(content: bytes) -> tuple[OpmlFeed, ...]:
    """Every outline with an ``xmlUrl``, at any depth, in document order, without duplicates."""
    try:
        root = ElementTree.fromstring(content, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ParseError(f"The OPML file uses forbidden XML features ({type(exc).__name__}); it was not read.") from exc
    except ElementTree.ParseError as exc:
        raise ParseError(f"The file is not well-formed OPML: {exc}.") from exc
    if root.tag.lower() != "opml":
        raise ParseError(f"The file is XML but not OPML (its root element is <{root.tag}>).")
    feeds: dict[str, OpmlFeed] = {}
    for outline in root.iter("outline"):
        url = (outline.get("xmlUrl") or outline.get("xmlurl") or "").strip()
        if url and url not in feeds:
            title = (outline.get("title") or outline.get("text") or "").strip()
            feeds[url] = OpmlFeed(url=url, title=title)
    return tuple(feeds.values())
