"""A feed: an RSS/Atom or JSON Feed body and its response headers in, a ``ParsedFeed`` out (``parse_feed``).

Owns what one entry becomes: its guid (from ``ingest.parse.document``), plain-text headline cut to
``HEADLINE_MAX``, sanitized body, absolute http(s) link, plausible dates, authors, comment-feed
pointer (wfw:commentRss) and reported comment count (slash:comments, thr:total, within a 32-bit
column), its enclosures (``ingest.parse.enclosures``; a JSON Feed's attachments), its content hash
over every stored field, and its link keys for cross-references; the feed's freshness hints
(``ingest.parse.hints``); its WebSub links (``rel="hub"``, ``rel="self"``) and RFC 5005 history
links (``rel="next"``, ``rel="prev-archive"``);
and the feed's warning (feedparser's problem, a document repaired by ``ingest.parse.recover``, dates
that cannot exist, bodies cut by the HTML limits).

Must not touch the network or the ORM; reads no clock unless the caller leaves out ``now``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime

from feedparser import FeedParserDict

from ingest.links import absolute, http_url, link_key, outbound_link_keys
from ingest.parse.dates import PUBLISHED_KEYS, first_date, latest_plausible
from ingest.parse.document import (
    bozo_reason,
    feedparser_parse,
    is_json,
    repaired_reason,
    unique_entries,
    untyped_titles,
)
from ingest.parse.enclosures import entry_enclosures
from ingest.parse.hints import feed_hints
from ingest.parse.html import BodyGuard, body as entry_body
from ingest.parse.jsonfeed import JSON_ENCLOSURES, jsonfeed_parse
from ingest.parse.text import authors as entry_authors, text_field
from ingest.types import HEADLINE_MAX, LINK_MAX, ParsedEntry, ParsedFeed

_INT_MAX = 2**31 - 1  # IntegerField is 32-bit on every backend
_COUNT = re.compile(r"[0-9]{1,10}")


def parse_feed(
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "",
    now: datetime | None = None,
    guard: BodyGuard | None = None,
    parser: str = "auto",
) -> ParsedFeed:
    """Parse an RSS/Atom body, or a JSON Feed (``ingest.parse.jsonfeed`` reads it into feedparser's
    shape, so that its entries follow the same rules), into a ``ParsedFeed``; ``url`` is where it
    was fetched (the base URI).

    ``guard`` holds the HTML limits of this document (a fresh ``BodyGuard`` by default); the
    benchmarks pass their own to measure what the limits cost. ``parser``: "auto" reads a document
    ``ingest.parse.fast`` is sure of with lxml, to the same result; "feedparser" only the reference
    (``INGEST_PARSER``).
    """
    json_feed = is_json(content, headers)
    if json_feed:
        parsed, base = jsonfeed_parse(content, headers, url)
    else:
        parsed, base = feedparser_parse(content, headers, url, parser=parser)
    latest = latest_plausible(now)
    feed = parsed["feed"]
    untyped = untyped_titles(parsed)
    entries: list[ParsedEntry] = []
    impossible: list[str] = []
    guard = guard if guard is not None else BodyGuard()
    for entry, guid in unique_entries(parsed["entries"]):
        entries.append(_entry(entry, guid, latest, base, untyped, impossible, guard))
    warnings = [bozo_reason(parsed)] if parsed.get("bozo") else []
    if repaired := repaired_reason(parsed):
        warnings.insert(0, f"the document is not well-formed XML and was repaired to be read ({repaired})")
    if impossible:
        warnings.append(f"{len(impossible)} date(s) that cannot exist (e.g. {impossible[0][:60]!r}) were replaced "
                        f"by the fetch time")
    if guard.cuts:
        warnings.append(guard.warning())
    return ParsedFeed(
        title=text_field(feed, "title", untyped=untyped),
        site_url=http_url(absolute(base, dict.get(feed, "link"))),
        tagline=text_field(feed, "subtitle", untyped=untyped),
        entries=tuple(entries),
        warning="; ".join(warnings),
        hints=feed_hints(feed, b"" if json_feed else content),  # JSON Feed has no freshness hints
        hub_url=_link(feed, "hub", base),
        self_url=_link(feed, "self", base),
        next_url=_link(feed, "next", base),
        prev_archive_url=_link(feed, "prev-archive", base),
        repaired=bool(repaired),
    )


def _link(feed: FeedParserDict, rel: str, base: str) -> str:
    """The first http(s) ``<link rel=...>`` of the feed (Atom, or atom:link in RSS), made absolute:
    WebSub's discovery of the hub and of the topic URL (``ingest.services.websub``), and the history
    pages of a first fetch (``ingest.services.fetch_parse``)."""
    for link in dict.get(feed, "links") or ():
        if isinstance(link, dict) and link.get("rel") == rel:
            url = http_url(absolute(base, link.get("href")))
            if url and len(url) <= LINK_MAX:
                return url
    return ""


# Entries are read with dict.get: FeedParserDict.get maps "updated" to "published" (with a
# deprecation warning) and runs a key-alias lookup on every access.


def _entry(
    entry: FeedParserDict, guid: str, latest: datetime, base: str, untyped: bool, impossible: list[str],
    guard: BodyGuard | None = None,
) -> ParsedEntry:
    headline = text_field(entry, "title", untyped=untyped)[:HEADLINE_MAX].rstrip()
    body = entry_body(entry, base, guard, guid)
    link = http_url(absolute(base, dict.get(entry, "link")))
    published_at = first_date(entry, PUBLISHED_KEYS, latest, impossible)
    updated_at = first_date(entry, ("updated_parsed",), latest, impossible)
    authors = entry_authors(entry)
    comments_feed_url = http_url(absolute(base, dict.get(entry, "wfw_commentrss")))
    reported_comments = _reported_comments(entry)
    # A JSON Feed's attachments are read by ingest.parse.jsonfeed; an XML entry's here.
    enclosures = dict.get(entry, JSON_ENCLOSURES) or entry_enclosures(entry, base)
    fields = [
        guid,
        headline,
        body,
        link,
        published_at.isoformat() if published_at else None,
        updated_at.isoformat() if updated_at else None,
        [[author.name, author.email] for author in authors],
        comments_feed_url,
        reported_comments,
    ]
    if enclosures:  # only then: the hash of an entry without any stays what it was before enclosures were stored
        fields.append([[e.url, e.type, e.length, e.kind] for e in enclosures])
    payload = json.dumps(fields, ensure_ascii=True, separators=(",", ":"))
    return ParsedEntry(
        guid=guid,
        headline=headline,
        body_text=body,
        link=link,
        published_at=published_at,
        updated_at=updated_at,
        authors=authors,
        comments_feed_url=comments_feed_url,
        reported_comments=reported_comments,
        content_hash=hashlib.sha256(payload.encode("ascii")).hexdigest(),
        link_keys=outbound_link_keys(body, link),
        link_key=link_key(link),
        enclosures=enclosures,
    )


def _reported_comments(entry: FeedParserDict) -> int | None:
    for key in ("slash_comments", "thr_total"):
        value = dict.get(entry, key)
        if value is not None:
            text = str(value).strip()
            return count if _COUNT.fullmatch(text) and (count := int(text)) <= _INT_MAX else None
    return None
