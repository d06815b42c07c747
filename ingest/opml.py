"""OPML (the feed-list exchange format) -> (url, title) pairs, and sources -> an OPML 2.0 document.
Pure: no ORM, no network.

Parsed with defusedxml, so entity expansion (billion laughs), external entities and DTD tricks in
a hostile file are refused instead of evaluated. Written with the standard library's ElementTree
(every attribute escaped), UTF-8, without the characters XML 1.0 cannot hold; ``parse_opml`` reads
back what ``write_opml`` writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from xml.etree import ElementTree as StdElementTree

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


@dataclass(frozen=True)
class OpmlOutline:
    """One feed of an exported list: its name, feed URL and site URL ("" when unknown)."""

    title: str
    xml_url: str
    html_url: str = ""


# Characters XML 1.0 cannot hold even escaped: C0 controls but tab, newline and carriage return,
# lone surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("", value or "")


def write_opml(outlines: Iterable[OpmlOutline], *, title: str, created: datetime | None = None) -> bytes:
    """An OPML 2.0 document with one ``<outline type="rss">`` per feed, in the given order."""
    root = StdElementTree.Element("opml", version="2.0")
    head = StdElementTree.SubElement(root, "head")
    StdElementTree.SubElement(head, "title").text = _xml_text(title)
    if created is not None:
        StdElementTree.SubElement(head, "dateCreated").text = format_datetime(created, usegmt=True)
    body = StdElementTree.SubElement(root, "body")
    for outline in outlines:
        attributes = {"type": "rss", "text": _xml_text(outline.title), "title": _xml_text(outline.title),
                      "xmlUrl": _xml_text(outline.xml_url)}
        if outline.html_url:
            attributes["htmlUrl"] = _xml_text(outline.html_url)
        StdElementTree.SubElement(body, "outline", attributes)
    StdElementTree.indent(root, space="  ")
    return StdElementTree.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
