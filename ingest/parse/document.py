"""The document: feedparser's reading of the bytes, the base URI, and each entry's identity.

Owns the call to feedparser (no base URI given, no sanitizing, no URL resolution: ``ingest.parse``
does those; ``ingest.parse.fast`` is tried first and gives the same result for the documents it is
sure of, unless the caller asks for ``parser="feedparser"``), the refusal of a body that is not a feed (``ParseError`` with a one-sentence reason:
empty, an HTML page, JSON, XML of another kind, not well-formed with no entries, even once
repaired by ``ingest.parse.recover``, which is tried only there), the wording of
feedparser's "bozo" problems, which bodies are JSON (``is_json``: ``ingest.parse.jsonfeed`` reads
them), and the guid of an entry (``unique_entries``: NFC, cut to
``GUID_MAX`` by digest, later duplicates skipped).

Must not build stored values beyond the guid (``ingest.parse.feed`` and ``.comments`` do), touch
the network or the ORM.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping
from urllib.parse import urljoin
from xml.sax import SAXParseException

import feedparser
from feedparser import FeedParserDict

from ingest.errors import ParseError
from ingest.parse.fast import fast_document
from ingest.parse.recover import xml_repair
from ingest.types import GUID_MAX

_HASH_PREFIX = "sha256:"
PARSERS = ("auto", "feedparser")  # INGEST_PARSER's choices
_FORWARDED_HEADERS = ("content-type", "content-location", "content-language")
_JSON_TYPES = frozenset({"application/feed+json", "application/json"})
_SNIFF = 4096  # leading whitespace beyond this is not a feed's
# The key of a repaired document's result (``_repaired``): what feedparser found wrong the first time.
REPAIRED = "ingest_repaired"
_HTML_PAGE = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)


def feedparser_parse(
    content: bytes, headers: Mapping[str, str] | None, url: str, *, parser: str = "auto"
) -> tuple[FeedParserDict, str]:
    """feedparser's result, and the document's base URI (Content-Location resolved against ``url``).

    ``parser="auto"`` tries ``ingest.parse.fast`` first (the same result, read with lxml, for the
    documents it is sure of); ``"feedparser"`` runs only the reference.

    feedparser is given no base URI: it would resolve every entry id that is not an absolute URI
    against it (RSS guids without isPermaLink="false", Atom ids), so the identity of an entry would
    change with the URL the bytes were fetched from (a mirror behind a 302, a 301 move) and the
    same entries would be stored again. Links are resolved against the base here instead; an
    xml:base inside the document still applies, as feedparser tracks it itself.
    """
    if not content or content.isspace():
        raise ParseError("The response body is empty.")
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {', '.join(PARSERS)}, not {parser!r}")
    response_headers = forwarded_headers(headers)
    base = base_uri(response_headers, url)
    response_headers.pop("content-location", None)
    if parser == "auto" and (fast := fast_document(content, response_headers)) is not None:
        return fast, base
    parsed = _feedparser(content, response_headers)
    if _unreadable(parsed) and _repairable(content):
        parsed = _repaired(parsed, content, response_headers)
    if not parsed["entries"] and not parsed.get("version") and not dict.get(parsed["feed"], "title"):
        if _HTML_PAGE.search(content, 0, 2048):
            raise ParseError("The response is an HTML page, not a feed.")
        if content.lstrip()[:1] == b"{":
            # Feeds reach ingest.parse.jsonfeed first (is_json); comment feeds are read as XML only.
            raise ParseError("The response is JSON, not an RSS or Atom feed.")
        # Those warnings (a wrong Content-Type or charset) are not why a well-formed document is no feed.
        if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), feedparser.ThingsNobodyCaresAboutButMe):
            raise ParseError(f"The document is not a readable feed: {bozo_reason(parsed)}.")
        raise ParseError("The document is XML but not an RSS or Atom feed.")
    if _unreadable(parsed):
        # Recorded as "unchanged", a feed broken before its first item would look healthy forever.
        raise ParseError(f"The document is not well-formed and yields no entries: {bozo_reason(parsed)}.")
    return parsed, base


def forwarded_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The response headers feedparser is given: lower-case names, only those it reads."""
    response_headers = {
        name.lower(): value for name, value in (headers or {}).items() if name.lower() in _FORWARDED_HEADERS
    }
    # As soon as any header is passed, feedparser reads a missing Content-Type as ISO-8859-1; a body
    # without one is XML, whose default is the declared encoding, else UTF-8.
    response_headers.setdefault("content-type", "application/xml")
    return response_headers


def _feedparser(content: bytes, response_headers: dict[str, str]) -> FeedParserDict:
    try:
        # A stream, because feedparser opens a bytes argument as a local file path if one exists.
        return feedparser.parse(
            io.BytesIO(content),
            response_headers=response_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except UnicodeError as exc:
        # feedparser 6.0.14's lenient parser crashes on a character reference to a lone surrogate.
        raise ParseError("The document contains a character reference that is not valid Unicode.") from exc


def _unreadable(parsed: FeedParserDict) -> bool:
    """No entries, and a problem that is not one of feedparser's harmless warnings (a wrong
    Content-Type or charset)."""
    return not parsed["entries"] and bool(parsed.get("bozo")) and not isinstance(
        parsed.get("bozo_exception"), feedparser.ThingsNobodyCaresAboutButMe)


def _repairable(content: bytes) -> bool:
    """Markup, and not an HTML page: only such a body is worth the recovering path."""
    head = content[:_SNIFF].lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()
    return head[:1] == b"<" and not _HTML_PAGE.search(content, 0, 2048)


def _repaired(parsed: FeedParserDict, content: bytes, response_headers: dict[str, str]) -> FeedParserDict:
    """The recovering path (``ingest.parse.recover``): feedparser read nothing from a document
    that is not well-formed, so it reads the repaired document instead, by the same rules. Kept
    only when that yields entries, with ``REPAIRED`` holding what was wrong; else ``parsed``
    stands, and so does its refusal."""
    fixed = xml_repair(content, parsed.get("encoding"))
    if fixed is None:
        return parsed
    # The repaired bytes are UTF-8, whatever the response declared.
    again = _feedparser(fixed, {**response_headers, "content-type": "application/xml; charset=utf-8"})
    if not again["entries"]:
        return parsed
    again[REPAIRED] = bozo_reason(parsed)
    return again


def repaired_reason(parsed: FeedParserDict) -> str:
    """Why the document was repaired ("" when it was read as it is)."""
    return dict.get(parsed, REPAIRED) or ""


def untyped_titles(parsed: FeedParserDict) -> bool:
    """RSS and RDF titles carry no type, so markup in them is markup; Atom declares its text type,
    and JSON Feed's titles are plain text."""
    return not (parsed.get("version") or "").startswith(("atom", "jsonfeed"))


def base_uri(headers: Mapping[str, str] | None, url: str) -> str:
    """The document's base URI: its Content-Location resolved against ``url``, else ``url``."""
    location = next((value for name, value in (headers or {}).items() if name.lower() == "content-location"), "")
    return urljoin(url, location or "")


def is_json(content: bytes, headers: Mapping[str, str] | None) -> bool:
    """Whether the body is read as JSON (``ingest.parse.jsonfeed``) rather than XML: it starts with
    ``{``, or it is declared JSON (application/feed+json, application/json, any +json) and does not
    start with ``<``. Whether it is a JSON Feed is that module's judgement."""
    head = content[:_SNIFF].lstrip().removeprefix(b"\xef\xbb\xbf").lstrip()[:1]
    if head == b"{":
        return True
    declared = next((value for name, value in (headers or {}).items() if name.lower() == "content-type"), "")
    media = declared.partition(";")[0].strip().lower()
    return bool(head) and head != b"<" and (media in _JSON_TYPES or media.endswith("+json"))


def bozo_reason(parsed: FeedParserDict) -> str:
    exc = parsed.get("bozo_exception")
    if isinstance(exc, SAXParseException):  # its str() starts with a meaningless "<unknown>:"
        return f"{exc.getMessage()} at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    return (str(exc) or type(exc).__name__) if exc is not None else "malformed document"


def unique_entries(entries: list[FeedParserDict]) -> Iterator[tuple[FeedParserDict, str]]:
    """Each entry with its guid, skipping later entries whose guid was already seen."""
    seen: set[str] = set()
    for entry in entries:
        guid = _guid(entry)
        if guid not in seen:
            seen.add(guid)
            yield entry, guid


def _guid(entry: FeedParserDict) -> str:
    # NFC before the length check and the digest, as ingest.identity compares guids: a composed
    # and a decomposed "é" are one guid, also when the decomposed one would be over GUID_MAX.
    for key in ("id", "link"):
        guid = unicodedata.normalize("NFC", (dict.get(entry, key) or "").replace("\x00", "")).strip()
        if guid:
            return guid if len(guid) <= GUID_MAX else _digest(guid)
    title = dict.get(entry, "title") or ""
    date = dict.get(entry, "published") or dict.get(entry, "updated") or dict.get(entry, "created") or ""
    return _digest(unicodedata.normalize("NFC", f"{title}\n{date}"))


def _digest(text: str) -> str:
    return _HASH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()
