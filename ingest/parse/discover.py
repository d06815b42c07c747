"""Feed autodiscovery: is a fetched body a feed or a web page, and which feeds does a page advertise.

Owns the sniffing of a body (``body_kind``: an RSS, Atom or RDF document, a JSON Feed, an HTML page,
or something else) and the reading of a page's ``<link rel="alternate" type="application/rss+xml"
href=...>`` (also Atom, JSON Feed and ``application/json``) and ``<link rel="feed">`` elements
(``discover_feeds``): hrefs resolved against the page's URL and its first ``<base href>``,
http(s) only, fragments dropped, duplicates skipped, in document order, titles kept.

Bounded: the page is read with the standard library's ``html.parser`` in chunks, only up to the end
of its ``<head>`` (``</head>`` or the first ``<body>``) and never past ``DISCOVER_MAX_BYTES``.
Markup inside comments, scripts and styles is not a link. Pure: no ORM, no network.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

from ingest.types import LINK_MAX, SOURCE_NAME_MAX

DISCOVER_MAX_BYTES = 512 * 1024  # of a page, read for its <head>
_CHUNK = 16 * 1024
_SNIFF_BYTES = 64 * 1024  # where the root element of a document must start

# type="..." of a <link rel="alternate"> that is a feed, and how it is shown.
FEED_TYPES = {
    "application/rss+xml": "rss",
    "application/atom+xml": "atom",
    "application/feed+json": "json",
    "application/json": "json",
}
# WordPress advertises its REST API as rel="alternate" type="application/json" on every page:
# a document of the page itself, never a feed.
_NOT_FEEDS = re.compile(r"/wp-json(/|$)|[?&]rest_route=", re.IGNORECASE)

_FEED_ROOTS = frozenset({"rss", "feed", "rdf"})
_HTML_ROOTS = frozenset({"html", "head", "body", "meta", "title", "link", "base", "script"})
_MARKUP = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->|<!doctype[^>]*>|<!\[CDATA\[.*?\]\]>)", re.IGNORECASE | re.DOTALL)
_ROOT = re.compile(rb"\s*<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")
_DOCTYPE_HTML = re.compile(rb"<!doctype\s+html", re.IGNORECASE)
_JSON_FEED = re.compile(rb'^\s*\{[^{}]{0,2000}?"version"\s*:\s*"https?://jsonfeed\.org/', re.DOTALL)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class FeedLink:
    """A feed a page advertises: its absolute URL, its title ("" when the link has none) and its kind
    (``rss``, ``atom`` or ``json``; "" for a ``rel="feed"`` link without a known type)."""

    url: str
    title: str
    type: str


def body_kind(content: bytes, content_type: str = "") -> str:
    """``feed`` (an RSS, Atom or RDF document, or a JSON Feed), ``html`` (a web page) or ``other``.

    Judged by the document's first element, past its XML declaration, comments and doctype; the
    Content-Type (text/html) only decides for a body whose first element says neither."""
    head = content[:_SNIFF_BYTES]
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom):]
            break
    if b"\x00" in head[:200]:
        # UTF-16 or UTF-32 without a BOM: read the ASCII of it.
        head = head.replace(b"\x00", b"")
    if _JSON_FEED.match(head):
        return "feed"
    if _DOCTYPE_HTML.search(head, 0, 2048):
        return "html"
    position = 0
    while True:
        markup = _MARKUP.match(head, position)
        if not markup:
            break
        position = markup.end()
    root = _ROOT.match(head, position)
    name = root.group(2).decode("ascii", "replace").lower() if root else ""
    if name in _FEED_ROOTS:
        return "feed"
    if name in _HTML_ROOTS:
        return "html"
    media_type = content_type.split(";", 1)[0].strip().lower()
    return "html" if media_type in ("text/html", "application/xhtml+xml") else "other"


def discover_feeds(content: bytes, page_url: str, *, charset: str = "",
                   max_bytes: int = DISCOVER_MAX_BYTES) -> tuple[FeedLink, ...]:
    """The feeds a page advertises in its head, in document order, each URL once.

    ``page_url`` is the URL the page was finally fetched from (after redirects); ``charset`` the
    one its Content-Type named (else UTF-8, bytes that are not replaced)."""
    scanner = _HeadScanner()
    decoder = codecs.getincrementaldecoder(_codec(charset))(errors="replace")
    for start in range(0, min(len(content), max_bytes), _CHUNK):
        chunk = content[start:min(start + _CHUNK, max_bytes)]
        scanner.feed(decoder.decode(chunk))
        if scanner.done:
            break
    base = page_url
    if scanner.base:
        base = urljoin(page_url, scanner.base)
    found: dict[str, FeedLink] = {}
    for href, title, kind in scanner.links:
        url = _absolute(base, href)
        if url and url not in found:
            found[url] = FeedLink(url=url, title=title, type=kind)
    return tuple(found.values())


def content_charset(content_type: str) -> str:
    """The charset parameter of a Content-Type header ("" when there is none)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip("\"'")
    return ""


def _codec(charset: str) -> str:
    try:
        return codecs.lookup(charset).name if charset else "utf-8"
    except LookupError:
        return "utf-8"


def _absolute(base: str, href: str) -> str:
    href = href.strip()
    if not href:
        return ""
    try:
        parts = urlsplit(urljoin(base, href))
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    url = urlunsplit(parts._replace(fragment=""))
    if len(url) > LINK_MAX or _NOT_FEEDS.search(parts.path + ("?" + parts.query if parts.query else "")):
        return ""
    return url


class _HeadScanner(HTMLParser):
    """Collects ``<base href>`` and the feed links of a document's head; ``done`` at its end."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base = ""
        self.links: list[tuple[str, str, str]] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "body":
            self.done = True
            return
        if tag not in ("link", "base"):
            return
        values = {name: (value or "") for name, value in attrs}
        if tag == "base":
            if not self.base and values.get("href", "").strip():
                self.base = values["href"].strip()
            return
        rel = {token.lower() for token in values.get("rel", "").split()}
        media_type = values.get("type", "").split(";", 1)[0].strip().lower()
        if "alternate" in rel and media_type in FEED_TYPES and "stylesheet" not in rel:
            kind = FEED_TYPES[media_type]
        elif "feed" in rel:
            kind = FEED_TYPES.get(media_type, "")
        else:
            return
        title = " ".join(values.get("title", "").split())[:SOURCE_NAME_MAX]
        self.links.append((values.get("href", ""), title, kind))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True
