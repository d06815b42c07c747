"""Feed parsing: a fetched body and its response headers in, the immutable values of ``ingest.types`` out.

Owns the rules that turn one document into what the pipeline stores: entry identity (``guid``),
plain-text headlines, sanitized HTML bodies, plausible dates, authors, comment-feed pointers and a
content hash per entry (``parse_feed``); per-post comment feeds (``parse_comments``); and the URL
helpers that cross-references compare links with (``normalize_url``, ``link_key``, ``extract_links``).

Pure: no Django, no ORM, no network, no clock unless the caller leaves out ``now``. Every value is
cut to its column width here, so no long value ever raises, and no value holds a NUL character
(PostgreSQL rejects it; feedparser's lenient parser passes it through, raw or as ``&#0;``). A body
that is not a feed raises ``ParseError`` with a one-sentence reason.

HTML limits. Sanitizing is superlinear in the nesting of the markup, so before nh3 sees an entry or
comment body, a linear scan (``_html_overflow``, a simulation of html5ever's stack of open elements)
cuts it just before the first tag that would take it past ``BODY_MAX_DEPTH`` (512) elements nested,
``BODY_MAX_REOPENED`` (12) formatting elements left open to be reopened at every run of text, or
misnesting that would cost the scan itself more than linear time; and any body to its first
``BODY_MAX_CHARS`` (16 Mi) characters, above the 10 MiB fetch cap so that a long but flat body is stored
whole. The entry is kept with what comes before the cut, and the
feed's ``warning`` says which entry was cut and why (a comment feed's cuts are logged). Bodies of
fewer than 2,048 tags are scanned only once a document's allowance is spent (see ``_SCAN_FROM_TAGS``):
they cannot cost much. No body of the 200 real feeds of the shared corpus comes near a limit. This
bounds what one parse can cost where nothing can interrupt it (a fetch thread, a Celery prefork
child); ``ingest.parsepool`` also gives each parse in a worker process a time budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import unicodedata
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from html import escape, unescape
from urllib.parse import urljoin, urlsplit, urlunsplit
from xml.sax import SAXParseException

import feedparser
import nh3
from feedparser import FeedParserDict

from ingest.errors import ParseError
from ingest.types import ParsedAuthor, ParsedComment, ParsedEntry, ParsedFeed

log = logging.getLogger("ingest.parse")

# Column widths of ingest.models, repeated because importing the models would pull Django in.
GUID_MAX = 255
HEADLINE_MAX = 255
LINK_MAX = 2000
AUTHOR_NAME_MAX = 200
EMAIL_MAX = 254
_INT_MAX = 2**31 - 1  # IntegerField is 32-bit on every backend

_HASH_PREFIX = "sha256:"
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_HTTP_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_PUBLISHED_KEYS = ("published_parsed", "updated_parsed", "created_parsed")
_FUTURE_SLACK = timedelta(days=1)
_FORWARDED_HEADERS = ("content-type", "content-location", "content-language")

_SPACES = re.compile(r"[\s\x00-\x1f\x7f]+")
_MAX_ESCAPE_LEVELS = 4  # markup escaped more often than this in a title is not text anyone wrote
_BRACKETED = re.compile(r"<\s*(/?\s*[A-Za-z!?][^<>]*)>")
_TAG_LIKE = re.compile(r"<[A-Za-z!/?]")
_COUNT = re.compile(r"[0-9]{1,10}")
_HTML_PAGE = re.compile(rb"<(?:!doctype\s+html|html)[\s>]", re.IGNORECASE)
# Exact on the bodies this module produces: html5ever serializes every attribute double-quoted and
# escapes every literal "<" in text, so an "<a" here is always a real start tag.
_ANCHOR_HREF = re.compile(
    r"""<a\s(?:[^>"']|"[^"]*"|'[^']*')*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
    re.IGNORECASE,
)

# feedparser runs with sanitize_html=False and resolve_relative_uris=False and nh3 does both jobs: both
# feedparser passes re-parse every body in pure Python. Shared corpus, 200 real feeds, 6,555 entries:
# feedparser sanitizing 13.3 s, this module in all 5.3 s (nh3's share 0.9 s).
_BODY_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()} | {
    "*": {"title", "lang", "dir"}
}
_TEXT_CLEANER = nh3.Cleaner(tags=set())  # every tag stripped, script/style content dropped


@lru_cache(maxsize=128)
def _body_cleaner(base: str) -> nh3.Cleaner:
    """A sanitizer resolving relative URLs against ``base`` (one per xml:base, in practice one per feed)."""
    if base.startswith(("http://", "https://")):
        try:
            return nh3.Cleaner(attributes=_BODY_ATTRIBUTES, url_relative=("rewrite_with_base", base))
        except ValueError:  # a base the URL standard rejects: leave relative URLs as they are
            pass
    return nh3.Cleaner(attributes=_BODY_ATTRIBUTES)


# --- public API -----------------------------------------------------------------------------------


def parse_feed(
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "",
    now: datetime | None = None,
) -> ParsedFeed:
    """Parse an RSS/Atom body into a ``ParsedFeed``; ``url`` is where it was fetched (the base URI)."""
    parsed, base = _feedparser_parse(content, headers, url)
    latest = _latest_plausible(now)
    feed = parsed["feed"]
    untyped = _untyped_titles(parsed)
    entries: list[ParsedEntry] = []
    impossible: list[str] = []
    guard = _BodyGuard()
    for entry, guid in _unique_entries(parsed["entries"]):
        entries.append(_entry(entry, guid, latest, base, untyped, impossible, guard))
    warnings = [_bozo_reason(parsed)] if parsed.get("bozo") else []
    if impossible:
        warnings.append(f"{len(impossible)} date(s) that cannot exist (e.g. {impossible[0][:60]!r}) were replaced "
                        f"by the fetch time")
    if guard.cuts:
        warnings.append(guard.warning())
    return ParsedFeed(
        title=_text_field(feed, "title", untyped=untyped),
        site_url=_http_url(_absolute(base, dict.get(feed, "link"))),
        tagline=_text_field(feed, "subtitle", untyped=untyped),
        entries=tuple(entries),
        warning="; ".join(warnings),
    )


def parse_comments(
    content: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    url: str = "",
    now: datetime | None = None,
) -> tuple[ParsedComment, ...]:
    """Parse a per-post comment feed (WordPress ``/feed/`` of a post, or any RSS/Atom) into comments."""
    parsed, base = _feedparser_parse(content, headers, url)
    latest = _latest_plausible(now)
    comments: list[ParsedComment] = []
    guard = _BodyGuard()
    for entry, guid in _unique_entries(parsed["entries"]):
        authors = _authors(entry)
        comments.append(
            ParsedComment(
                guid=guid,
                author_name=authors[0].name if authors else "",
                author_email=authors[0].email if authors else "",
                body=_body(entry, base, guard, guid),
                published_at=_first_date(entry, _PUBLISHED_KEYS, latest),
            )
        )
    if guard.cuts:  # a comment feed has no warning of its own to carry it
        log.warning("comment feed parsed with cuts", extra={"url": url, "warning": guard.warning()})
    return tuple(comments)


def normalize_url(url: str) -> str:
    """The form two links are compared in: scheme and host lower-cased, default port, fragment and
    trailing slash dropped, query kept. "" for anything but an absolute http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname  # lower-cased, without IPv6 brackets
        port = parts.port
    except ValueError:  # bad IPv6 literal or port
        return ""
    scheme = parts.scheme.lower()
    if scheme not in _HTTP_SCHEMES or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def link_key(url: str) -> str:
    """sha256 hex of ``normalize_url(url)``: the indexed key links are matched on; "" when there is none."""
    normalized = normalize_url(url)
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest() if normalized else ""


def extract_links(html: str, *, base_url: str = "") -> tuple[str, ...]:
    """Absolute http(s) targets of the ``<a href>`` links in a body produced by this module, in order,
    without repeats; relative ones are resolved against ``base_url``."""
    links: dict[str, None] = {}
    for match in _ANCHOR_HREF.finditer(html):
        href = (match.group(1) or match.group(2) or match.group(3) or "").strip()
        if "&" in href:
            href = unescape(href)
        if href:
            absolute = _http_url(urljoin(base_url, href) if base_url else href)
            if absolute:
                links[absolute] = None
    return tuple(links)


# --- document level -------------------------------------------------------------------------------


def _feedparser_parse(content: bytes, headers: Mapping[str, str] | None, url: str) -> tuple[FeedParserDict, str]:
    """feedparser's result, and the document's base URI (Content-Location resolved against ``url``).

    feedparser is given no base URI: it would resolve every entry id that is not an absolute URI
    against it (RSS guids without isPermaLink="false", Atom ids), so the identity of an entry would
    change with the URL the bytes were fetched from (a mirror behind a 302, a 301 move) and the
    same entries would be stored again. Links are resolved against the base here instead; an
    xml:base inside the document still applies, as feedparser tracks it itself.
    """
    if not content or content.isspace():
        raise ParseError("The response body is empty.")
    response_headers = {
        name.lower(): value for name, value in (headers or {}).items() if name.lower() in _FORWARDED_HEADERS
    }
    # As soon as any header is passed, feedparser reads a missing Content-Type as ISO-8859-1; a body
    # without one is XML, whose default is the declared encoding, else UTF-8.
    response_headers.setdefault("content-type", "application/xml")
    base = urljoin(url, response_headers.pop("content-location", ""))
    try:
        # A stream, because feedparser opens a bytes argument as a local file path if one exists.
        parsed = feedparser.parse(
            io.BytesIO(content),
            response_headers=response_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except UnicodeError as exc:
        # feedparser 6.0.14's lenient parser crashes on a character reference to a lone surrogate.
        raise ParseError("The document contains a character reference that is not valid Unicode.") from exc
    if not parsed["entries"] and not parsed.get("version") and not dict.get(parsed["feed"], "title"):
        if _HTML_PAGE.search(content, 0, 2048):
            raise ParseError("The response is an HTML page, not a feed.")
        if content.lstrip()[:1] == b"{":
            raise ParseError("The response is JSON (JSON Feed is not supported), not an RSS or Atom feed.")
        # Those warnings (a wrong Content-Type or charset) are not why a well-formed document is no feed.
        if parsed.get("bozo") and not isinstance(parsed.get("bozo_exception"), feedparser.ThingsNobodyCaresAboutButMe):
            raise ParseError(f"The document is not a readable feed: {_bozo_reason(parsed)}.")
        raise ParseError("The document is XML but not an RSS or Atom feed.")
    if not parsed["entries"] and parsed.get("bozo") and not isinstance(
        parsed.get("bozo_exception"), feedparser.ThingsNobodyCaresAboutButMe
    ):
        # Recorded as "unchanged", a feed broken before its first item would look healthy forever.
        raise ParseError(f"The document is not well-formed and yields no entries: {_bozo_reason(parsed)}.")
    return parsed, base


def _absolute(base: str, value: str | None) -> str:
    """``value`` resolved against the document's base URI (unchanged when already absolute)."""
    value = (value or "").strip()
    if not value or not base:
        return value
    try:
        return urljoin(base, value)
    except ValueError:  # a malformed URL (bad IPv6 literal, port): _http_url drops it
        return value


def _untyped_titles(parsed: FeedParserDict) -> bool:
    """RSS and RDF titles carry no type, so markup in them is markup; Atom declares its text type."""
    return not (parsed.get("version") or "").startswith("atom")


def _bozo_reason(parsed: FeedParserDict) -> str:
    exc = parsed.get("bozo_exception")
    if isinstance(exc, SAXParseException):  # its str() starts with a meaningless "<unknown>:"
        return f"{exc.getMessage()} at line {exc.getLineNumber()}, column {exc.getColumnNumber()}"
    return (str(exc) or type(exc).__name__) if exc is not None else "malformed document"


def _latest_plausible(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)) + _FUTURE_SLACK


def _unique_entries(entries: list[FeedParserDict]) -> Iterator[tuple[FeedParserDict, str]]:
    """Each entry with its guid, skipping later entries whose guid was already seen."""
    seen: set[str] = set()
    for entry in entries:
        guid = _guid(entry)
        if guid not in seen:
            seen.add(guid)
            yield entry, guid


# --- entry level ----------------------------------------------------------------------------------
# Entries are read with dict.get: FeedParserDict.get maps "updated" to "published" (with a
# deprecation warning) and runs a key-alias lookup on every access.


def _entry(
    entry: FeedParserDict, guid: str, latest: datetime, base: str, untyped: bool, impossible: list[str],
    guard: _BodyGuard | None = None,
) -> ParsedEntry:
    headline = _text_field(entry, "title", untyped=untyped)[:HEADLINE_MAX].rstrip()
    body = _body(entry, base, guard, guid)
    link = _http_url(_absolute(base, dict.get(entry, "link")))
    published_at = _first_date(entry, _PUBLISHED_KEYS, latest, impossible)
    updated_at = _first_date(entry, ("updated_parsed",), latest, impossible)
    authors = _authors(entry)
    comments_feed_url = _http_url(_absolute(base, dict.get(entry, "wfw_commentrss")))
    reported_comments = _reported_comments(entry)
    payload = json.dumps(
        [
            guid,
            headline,
            body,
            link,
            published_at.isoformat() if published_at else None,
            updated_at.isoformat() if updated_at else None,
            [[author.name, author.email] for author in authors],
            comments_feed_url,
            reported_comments,
        ],
        ensure_ascii=True,
        separators=(",", ":"),
    )
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
    )


def outbound_link_keys(body: str, link: str) -> tuple[str, ...]:
    """``link_key`` of each link in ``body``, without the entry's own link, sorted."""
    own = link_key(link)
    keys = {link_key(url) for url in extract_links(body, base_url=link)}
    keys.discard(own)
    keys.discard("")
    return tuple(sorted(keys))


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


def _body(entry: FeedParserDict, base: str, guard: _BodyGuard | None = None, guid: str = "") -> str:
    """Sanitized HTML of the richest content: an HTML ``content`` over plain text, longer over shorter,
    any ``content`` over ``summary``; cut to the HTML limits first (``guard`` records the cut)."""
    contents = [detail for detail in dict.get(entry, "content") or () if (detail.get("value") or "").strip()]
    if contents:
        detail = max(contents, key=lambda item: (item.get("type") in _HTML_TYPES, len(item["value"])))
    else:
        detail = dict.get(entry, "summary_detail")
        if not detail:
            return ""
    value = detail.get("value") or ""
    guard = guard or _BodyGuard()
    if detail.get("type") in _HTML_TYPES:
        return _body_cleaner(_absolute(base, detail.get("base")) or base).clean(guard.limit(value, guid))
    return escape(guard.limit_text(value, guid).replace("\x00", ""), quote=False)


def _text_field(item: FeedParserDict, key: str, *, untyped: bool) -> str:
    """A feedparser text construct as plain text: tags stripped when it is markup, entities decoded,
    whitespace collapsed.

    In an untyped (RSS, RDF) title anything that looks like a tag is markup: feedparser guesses
    "HTML" only when every tag is one it considers safe, so without this a title holding
    <script> or an onerror= attribute would be the one kept verbatim.
    """
    value = dict.get(item, key) or ""
    detail = dict.get(item, key + "_detail")
    declared_html = bool(detail) and detail.get("type") in _HTML_TYPES
    return _plain_text(value, markup=declared_html or (untyped and bool(_TAG_LIKE.search(value))))


def _plain_text(value: str, *, markup: bool) -> str:
    """Plain text, in which no element survives however many times it was escaped.

    A headline goes to templates and API clients that may not escape it. In markup, decoding the
    entities of a cleaned value can reveal markup again (a double-escaped ``&amp;lt;script&amp;gt;``
    in an HTML title decodes to ``<script>``), so it is cleaned again until no tag is left. In a
    title the publisher typed as text, ``<script>`` is words about a tag: the brackets go, the words
    stay ("The script element, explained").
    """
    if markup:
        for _ in range(_MAX_ESCAPE_LEVELS):
            if not ("<" in value or "&" in value):
                break
            # A title costs nh3 what a body does: the same limits, or 20,000 nested tags take seconds.
            cleaned = unescape(_TEXT_CLEANER.clean(_BodyGuard().limit(value, "")))
            if cleaned == value or not _TAG_LIKE.search(cleaned):
                value = cleaned
                break
            value = cleaned
    if _TAG_LIKE.search(value):
        value = _BRACKETED.sub(r"\1", value)
        if _TAG_LIKE.search(value):  # a lone "<b" without its ">"
            value = _TAG_LIKE.sub(lambda match: match.group(0)[1:], value)
    return _SPACES.sub(" ", value).strip()


def _first_date(
    entry: FeedParserDict, keys: tuple[str, ...], latest: datetime, impossible: list[str] | None = None
) -> datetime | None:
    """The first of ``keys`` holding a date between 1970 and ``latest``, as an aware UTC datetime.

    A date whose own text cannot exist is skipped and appended to ``impossible``: feedparser
    normalizes out-of-range fields the way mktime does (Feb 30 becomes Mar 2, year 10000 becomes
    2010, an offset of +99:99 moves the time by four days), so the parsed value alone would be
    stored as if the publisher had written it.
    """
    for key in keys:
        value = dict.get(entry, key)
        if not value:
            continue
        raw = dict.get(entry, key.removesuffix("_parsed")) or ""
        if raw and not _possible_date(raw, latest):
            if impossible is not None:
                impossible.append(raw)
            continue
        try:
            # feedparser normalizes to UTC; a leap second (60) is not a valid datetime second.
            moment = datetime(*value[:5], min(value[5], 59), tzinfo=timezone.utc)
        except (TypeError, ValueError, OverflowError):
            continue
        if _EPOCH <= moment <= latest:
            return moment
    return None


_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# The two date shapes feeds use (RFC 822 and ISO 8601 / W3C-DTF), read field by field; a date in
# any other shape is left to feedparser's judgement.
_ISO_DATE = re.compile(
    r"^\s*(\d{4,})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,]\d+)?)?"
    r"\s*(?:[Zz]|([+-])(\d{2}):?(\d{2}))?\s*$"
)
_RFC822_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{2,9},?\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,})"
    r"(?:\s+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?\s*(?:([+-])(\d{2}):?(\d{2})|[A-Za-z]{1,5})?\s*$"
)
_MAX_OFFSET_MINUTES = 14 * 60  # UTC+14:00 (Kiribati) and UTC-12:00 bound every real zone


def _possible_date(raw: str, latest: datetime) -> bool:
    """False when ``raw`` names a moment that cannot exist: a day not in its month, an hour or
    minute out of range, a year outside 1970..``latest``, an offset beyond ±14:00."""
    if match := _ISO_DATE.match(raw):
        year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    elif (match := _RFC822_DATE.match(raw)) and match.group(2).lower() in _MONTHS:
        day, month_name, year, hour, minute, second, sign, off_h, off_m = match.groups()
        month = _MONTHS[month_name.lower()]
        if len(year) == 2:  # RFC 822's two-digit years, as feedparser reads them
            year = str(int(year) + (1900 if int(year) > 90 else 2000))
    else:
        return True
    try:
        # A leap second (60) is a real second; datetime() checks everything else.
        datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), min(int(second or 0), 59))
    except (ValueError, OverflowError):
        return False
    if not 1970 <= int(year) <= latest.year:
        return False
    return not (sign and (int(off_m) >= 60 or int(off_h) * 60 + int(off_m) > _MAX_OFFSET_MINUTES))


def _authors(entry: FeedParserDict) -> tuple[ParsedAuthor, ...]:
    """Authors in feed order, deduplicated; a name-only duplicate of an author with an email is dropped.

    Only feedparser's ``authors`` list is read: it has one item per author element (RSS author,
    dc:creator, Atom author, itunes:author), whereas ``author_detail`` is a single dict that
    feedparser reuses across those elements, so it can pair one author's name with another's email.
    """
    found: dict[tuple[str, str], ParsedAuthor] = {}
    for item in dict.get(entry, "authors") or ():
        email = (item.get("email") or "").strip()
        if email[:7].lower() == "mailto:":
            email = email[7:]
        # Dropped, not cut, when over the column: a cut address would be someone else's.
        if "@" not in email or len(email) > EMAIL_MAX or "\x00" in email:
            email = ""
        name = _plain_text(item.get("name") or "", markup=True) or email.partition("@")[0] or email
        if not name:
            continue
        author = ParsedAuthor(name=name[:AUTHOR_NAME_MAX].rstrip(), email=email)
        found.setdefault((author.name.casefold(), email.casefold()), author)
    with_email = {name for name, email in found if email}
    return tuple(author for (name, email), author in found.items() if email or name not in with_email)


def _reported_comments(entry: FeedParserDict) -> int | None:
    for key in ("slash_comments", "thr_total"):
        value = dict.get(entry, key)
        if value is not None:
            text = str(value).strip()
            return count if _COUNT.fullmatch(text) and (count := int(text)) <= _INT_MAX else None
    return None


def _http_url(value: str | None) -> str:
    """``value`` if it is an absolute http(s) URL that fits the link column, else ""."""
    if not value:
        return ""
    value = value.strip()
    if len(value) > LINK_MAX or "\x00" in value:  # a cut URL points elsewhere: store none, not a wrong one
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme.lower() in _HTTP_SCHEMES and parts.netloc else ""


# --- HTML limits ----------------------------------------------------------------------------------
# html5ever (inside nh3) walks its stack of open elements for most tags, and reopens every
# "active formatting element" (b, i, font...) that a block end tag closed at each later run of
# text, so nested or misnested markup makes sanitizing superlinear: 1.1 MB of nested <div> keeps
# it busy for 40-76 s. So each HTML body is first scanned, in linear time, by a simulation of that
# stack that never pops more than html5ever would; a body past a limit is cut just before the tag
# that crosses it, keeping the entry, and the document's warning says so.
#
# Real feeds stay far below: of the 6,258 bodies of the shared corpus's 200 real feeds, the deepest
# reaches 48 (KaTeX markup, whose <span/> html5ever leaves open), none leaves more than one
# formatting element to reopen, and the longest is 762,498 characters.

# Length alone costs html5ever linear time (a 10 MB flat body sanitizes in about a second), so this
# is only a backstop above INGEST_MAX_BYTES' default: the fetch cap bounds a body first.
BODY_MAX_CHARS = 16 * 1024 * 1024
BODY_MAX_DEPTH = 512  # Blink's HTML parser stops nesting at this depth too
# Each is reopened at every run of text until closed, multiplying the output; sloppy markup leaves
# at most three identical ones (HTML's "Noah's ark" rule) per tag it forgets to close.
BODY_MAX_REOPENED = 12
# A body with fewer tags than this is not scanned while the document's allowance lasts: the worst
# such body measured costs html5ever about 5e-11 s x tags**3 (0.45 s at 2,048 tags), so the
# allowance, in tags**3, keeps what is not scanned under about 2 s per document.
_SCAN_FROM_TAGS = 2048
_UNSCANNED_CUBED_TAGS = 4 * 10**10
_WALK_PER_TAG = 32  # stack steps per tag that misnesting may cost the scan before it counts as hostile

_VOID_NAMES = "area|base|basefont|bgsound|br|col|embed|frame|hr|image|img|input|keygen|link|meta|param|source|track|wbr"
_BLANK = r"[\t\n\f\r />]"  # what ends a tag name
# A tag's attributes as html5ever reads them: a quote opens a value only right after "=", and
# "<", "<!--" or ">" inside a quoted value are text. Read any other way, an attribute value could
# hide markup from the scan or invent it.
_ATTRIBUTES = r"""(?:[^>=]++|=[\t\n\f\r ]*+(?:"[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+))*+"""
# An element holding only text (no "<") is consumed whole: one match instead of two tokens, and most
# elements of real markup are such. Those whose start tag closes others (<p> closes an open <p>)
# leave their start tag as a token ending in ">", followed by their end tag; the rest leave nothing.
_QUIET_LEAVES = ("a abbr b bdi bdo big cite code data del dfn em font i ins kbd label mark q s samp small span "
                 "strike strong sub sup time tt u var").split()
_CLOSING_LEAVES = "p li dt dd td th h1 h2 h3 h4 h5 h6 div pre option".split()
_LEAVES = "|".join(f"{name}(?={_BLANK}){_ATTRIBUTES}>[^<]*+</{name}>" for name in _QUIET_LEAVES)
_LEAF_TOKENS = "|".join(f"{name}(?={_BLANK}){_ATTRIBUTES}>(?=[^<]*+</{name}>)" for name in _CLOSING_LEAVES)
# A start tag's attributes are part of a formatting element's identity (two <font> with different
# faces are both reopened), so those tokens keep them; any other token is a name, "/" + name for
# an end tag.
_FORMATTING_WITH_ATTRIBUTES = f"(?i:b|big|code|em|font|i|s|small|strike|strong|tt|u)(?=[\\t\\n\\f\\r ]){_ATTRIBUTES}"
_NAME = r"/?[A-Za-z][^\t\n\f\r />]*+"
# Where html5ever ends a comment, an unclosed one included; but never past the end tag of a
# <script>, <style>..., in which "<!--" is text: that end tag must stay a token.
_NOT_RAW_END = r"(?:(?!</(?i:iframe|noembed|noframes|noscript|script|style|textarea|title|xmp)).)"
_COMMENT = f"!--(?:-?>|{_NOT_RAW_END}*?--!?>|{_NOT_RAW_END}*)"
_TAGS = re.compile(
    f"<(?:{_COMMENT}|(?i:{_VOID_NAMES})(?={_BLANK}){_ATTRIBUTES}>?|{_LEAVES}"
    f"|({_LEAF_TOKENS}|{_FORMATTING_WITH_ATTRIBUTES}|{_NAME})(?:(?<!>){_ATTRIBUTES})?)",
    re.S,
)
# Inside SVG and MathML "/>" closes an element and void HTML names are not void, so bodies with
# either keep void tags as tokens, each with its attributes: a self-closed one ends with "/".
_TAGS_FOREIGN = re.compile(
    f"<(?:{_COMMENT}|{_LEAVES}|({_LEAF_TOKENS}|{_FORMATTING_WITH_ATTRIBUTES}|{_NAME}{_ATTRIBUTES}))",
    re.S,
)
_HAS_FOREIGN = re.compile(r"<(?i:svg|math)[\t\n\f\r />]")
_NAME_END = re.compile(r"[\t\n\f\r />]")

(_VOID, _FORMATTING, _SPECIAL, _SCOPE, _MARKER, _RAW_TEXT, _CLOSES_P, _PARAGRAPH, _LIST, _BUTTON, _LIST_ITEM,
 _DEFINITION, _CELL, _ROW, _HEADING, _OPTION, _FOREIGN, _PLAINTEXT, _FORM, _BREAKS_OUT, _TABLE_SCOPE) = (
    1 << b for b in range(21))
_KINDS: dict[str, int] = {}
for _names, _kind in (
    (_VOID_NAMES.replace("|", " "), _VOID),
    ("a b big code em font i nobr s small strike strong tt u", _FORMATTING),
    # The HTML standard's "special" elements, at which an end tag for any other element stops.
    ("address applet area article aside base basefont bgsound blockquote body br button caption center col "
     "colgroup dd details dir div dl dt embed fieldset figcaption figure footer form frame frameset h1 h2 h3 h4 "
     "h5 h6 head header hgroup hr html iframe img input keygen li link listing main marquee menu meta nav noembed "
     "noframes noscript object ol p param plaintext pre script search section select source style summary table "
     "tbody td template textarea tfoot th thead title tr track ul wbr xmp mi mo mn ms mtext annotation-xml "
     "foreignobject desc", _SPECIAL),
    ("applet caption html table td th marquee object template mi mo mn ms mtext annotation-xml foreignobject desc",
     _SCOPE),
    ("applet caption marquee object template td th", _MARKER),
    ("iframe noembed noframes noscript script style textarea title xmp", _RAW_TEXT),
    ("address article aside blockquote center details dialog dir div dl fieldset figcaption figure footer header "
     "hgroup main menu nav ol p search section summary ul h1 h2 h3 h4 h5 h6 pre listing form table xmp dd dt li",
     _CLOSES_P),
    ("p", _PARAGRAPH), ("ol ul", _LIST), ("button", _BUTTON), ("li", _LIST_ITEM), ("dd dt", _DEFINITION),
    ("td th", _CELL), ("tr", _ROW), ("h1 h2 h3 h4 h5 h6", _HEADING), ("option optgroup", _OPTION),
    ("svg math", _FOREIGN), ("plaintext", _PLAINTEXT), ("form", _FORM), ("html table template", _TABLE_SCOPE),
    # HTML tags that end SVG or MathML content: never self-closed there.
    ("b big blockquote body br center code dd div dl dt em embed h1 h2 h3 h4 h5 h6 head hr i img li listing menu "
     "meta nobr ol p pre ruby s small span strong strike sub sup table tt u ul var font", _BREAKS_OUT),
    # Elements of no kind that are common enough to be worth finding at the first lookup.
    ("abbr bdi bdo cite data del dfn ins kbd label mark picture q rp rt samp time", 0),
):
    for _name in _names.split():
        _KINDS[_name] = _KINDS.get(_name, 0) | _kind
_CLOSES_SIBLINGS = _LIST_ITEM | _DEFINITION | _CELL | _ROW | _HEADING | _OPTION
_STARTS_THAT_CLOSE = _CLOSES_P | _CLOSES_SIBLINGS
_HANDLED_STARTS = _VOID | _STARTS_THAT_CLOSE | _RAW_TEXT | _PLAINTEXT
_PLAIN, _SELF_CLOSED, _TEXT_ONLY = range(3)  # forms of a start tag token
_TOO_TANGLED = "markup misnested beyond what can be sanitized in linear time"


class _BodyGuard:
    """The HTML limits for the bodies of one document, and what they cut."""

    __slots__ = ("allowance", "cuts")

    def __init__(self) -> None:
        self.allowance = _UNSCANNED_CUBED_TAGS
        self.cuts: list[tuple[str, str]] = []  # (entry guid, reason)

    def limit(self, html: str, guid: str) -> str:
        """``html``, or its longest prefix within the limits."""
        reasons = []
        if len(html) > BODY_MAX_CHARS:
            html = _cut_at_tag_boundary(html, BODY_MAX_CHARS)
            reasons.append(f"longer than {BODY_MAX_CHARS:,} characters")
        tags = html.count("<")
        if tags < _SCAN_FROM_TAGS and tags**3 <= self.allowance:
            self.allowance -= tags**3
        elif overflow := _html_overflow(html):
            index, reason = overflow
            html = html[: _tag_position(html, index)]
            reasons.append(reason)
        if reasons:
            self.cuts.append((guid, " and ".join(reasons)))
        return html

    def limit_text(self, text: str, guid: str) -> str:
        """A plain-text body costs only its length: ``text`` cut to ``BODY_MAX_CHARS``."""
        if len(text) <= BODY_MAX_CHARS:
            return text
        self.cuts.append((guid, f"longer than {BODY_MAX_CHARS:,} characters"))
        return text[:BODY_MAX_CHARS]

    def warning(self) -> str:
        if not self.cuts:
            return ""
        guid, reason = self.cuts[0]
        count = len(self.cuts)
        what = "1 entry body was" if count == 1 else f"{count} entry bodies were"
        return f"{what} cut short to stay sanitizable (e.g. {guid[:100]!r}: {reason})"


def _cut_at_tag_boundary(html: str, length: int) -> str:
    """The first ``length`` characters of ``html``, less a tag the cut would split."""
    head = html[:length]
    start = head.rfind("<", max(0, length - 65536))
    return head[:start] if start > head.rfind(">") else head


def _tokens(html: str) -> tuple[list[str], bool]:
    """The tags of ``html`` as the scan reads them (see ``_TAGS``), and whether it has SVG or MathML."""
    foreign = _HAS_FOREIGN.search(html) is not None
    return list(filter(None, (_TAGS_FOREIGN if foreign else _TAGS).findall(html))), foreign


def _tag_position(html: str, index: int) -> int:
    """Where the token ``_tokens(html)[0][index]`` starts in ``html``."""
    pattern = _TAGS_FOREIGN if _HAS_FOREIGN.search(html) else _TAGS
    number = 0
    for match in pattern.finditer(html):
        if match.group(1):
            if number == index:
                return match.start()
            number += 1
    return len(html)


def _tag_info(token: str, cache: dict[str, tuple[str, int, int]]) -> tuple[str, int, int]:
    """(lower-cased name, kind, form) of a start tag token or stack entry."""
    info = cache.get(token)
    if info is None:
        end = _NAME_END.search(token)
        name = (token[: end.start()] if end else token).lower()
        kind = _KINDS.get(name, 0)
        if token[-1] == ">":
            form = _TEXT_ONLY
        # "/>" right after the name or a quoted value: "<g d=x/>" is the unquoted value "x/".
        elif token[-1] == "/" and end is not None and (end.start() == len(token) - 1 or token[-2] in "\t\n\f\r \"'") \
                and not kind & _BREAKS_OUT:
            form = _SELF_CLOSED
        else:
            form = _PLAIN
        info = cache[token] = (name, kind, form)
    return info


def _html_overflow(html: str) -> tuple[int, str] | None:
    """Where ``html`` first passes a limit (the index of the tag in ``_tokens(html)``) and why; None
    when it stays within them.

    A simulation of html5ever's stack of open elements and list of formatting elements to reopen,
    in one pass over the tags. An end tag of the current element pops it. Any other tag does what
    the HTML standard says where that pops no more than html5ever: an end tag closes its element
    unless a "special" or scope element is in the way; <p>, <li>, <dt>, <dd>, cells, rows and
    headings close the open ones they end; a formatting element popped by someone else's end tag
    stays to be reopened. Whatever it cannot tell is left open, and counts: the estimate is never
    below html5ever's depth, bar the few <tbody>, <tr> and <colgroup> that tables imply.
    """
    tokens, foreign = _tokens(html)
    stack: list[str] = []
    reopen: list[tuple[str, int]] = []  # (token, stack depth when it was popped)
    cache: dict[str, tuple[str, int, int]] = {}
    kinds = _KINDS.get
    push, pop = stack.append, stack.pop
    room = BODY_MAX_DEPTH
    p_open = 0
    raw_end = ""
    walks = _WALK_PER_TAG * len(tokens) + 1024
    for index, token in enumerate(tokens):
        if raw_end:  # inside <script>, <style>, <textarea>...: text up to its end tag
            if token.lower() == raw_end:
                raw_end = ""
            continue
        if token[0] == "/":
            name = token[1:]
            if stack and stack[-1] == name:
                pop()
                if name == "p" or name == "P":
                    p_open -= 1
                elif reopen:
                    _forget_inside(reopen, len(stack), bool(kinds(name.lower(), 0) & _MARKER))
                continue
            popped_p, steps = _end_tag(stack, reopen, name.lower(), cache)
        else:
            kind = kinds(token)
            form = _PLAIN
            if kind is None:
                name, kind, form = _tag_info(token, cache)
                if form == _SELF_CLOSED:
                    if kind & _VOID or _in_foreign(stack, cache):
                        continue
                    token = name  # in HTML "/>" closes nothing
            if not kind & _HANDLED_STARTS:
                push(token)
                if len(stack) > room:
                    return index, f"elements nested more than {BODY_MAX_DEPTH} deep"
                continue
            if kind & _VOID and not (foreign and _in_foreign(stack, cache)):
                continue
            popped_p = steps = 0
            if kind & _STARTS_THAT_CLOSE:
                if p_open and not kind & _CLOSES_SIBLINGS and stack and stack[-1] == "p" and not reopen:
                    pop()  # the usual case: a paragraph or a block after an unclosed paragraph
                    popped_p = 1
                else:
                    popped_p, steps = _start_tag_closes(stack, reopen, kind, p_open, cache)
            if form == _TEXT_ONLY:  # its end tag is the next token
                raw_end = "/" + _tag_info(token, cache)[0]
            else:
                if kind & _RAW_TEXT:
                    raw_end = "/" + _tag_info(token, cache)[0]
                elif kind & _PLAINTEXT:  # the rest of the body is text
                    break
                push(token)
                if kind & _PARAGRAPH:
                    p_open += 1
        p_open -= popped_p
        walks -= steps
        if walks < 0:
            return index, _TOO_TANGLED
        if len(reopen) > BODY_MAX_REOPENED:
            return index, f"more than {BODY_MAX_REOPENED} formatting elements left open"
        room = BODY_MAX_DEPTH - len(reopen)
        if len(stack) > room:
            return index, f"elements nested more than {BODY_MAX_DEPTH} deep"
    return None


def _end_tag(stack: list[str], reopen: list[tuple[str, int]], name: str, cache) -> tuple[int, int]:
    """Apply the end tag of ``name`` when it is not the current element's: (paragraphs popped, steps)."""
    if name in ("body", "html", "br"):  # html5ever pops nothing for these ("</br>" is a <br>)
        return 0, 0
    kind = _KINDS.get(name, 0)
    if kind & _SPECIAL:
        blockers = _SCOPE | (_LIST if kind & _LIST_ITEM else 0) | (_BUTTON if kind & _PARAGRAPH else 0)
    else:  # formatting and ordinary elements: a special element in the way keeps them open
        blockers = _SPECIAL
    level = len(stack) - 1
    while level >= 0:
        entry_name, entry_kind, _ = _tag_info(stack[level], cache)
        if entry_name == name:
            steps = len(stack) - level
            if kind & _FORM:  # html5ever removes the form element alone, not what it holds
                del stack[level]
                return 0, steps
            return _pop_to(stack, reopen, level, cache), steps
        if entry_kind & blockers:
            return 0, len(stack) - level
        level -= 1
    if kind & _FORMATTING:  # closes the latest one waiting to be reopened
        for position in range(len(reopen) - 1, -1, -1):
            if _tag_info(reopen[position][0], cache)[0] == name:
                del reopen[position]
                break
    return 0, len(stack)


def _start_tag_closes(
    stack: list[str], reopen: list[tuple[str, int]], kind: int, p_open: int, cache
) -> tuple[int, int]:
    """Pop what a start tag of ``kind`` implicitly closes: (paragraphs popped, steps walked)."""
    popped_p = steps = 0
    if kind & (_LIST_ITEM | _DEFINITION):
        # An open <li> (or <dt>, <dd>) is closed unless a special element other than <address>,
        # <div> or <p> comes first.
        wanted = kind & (_LIST_ITEM | _DEFINITION)
        for level in range(len(stack) - 1, -1, -1):
            steps += 1
            name, entry_kind, _ = _tag_info(stack[level], cache)
            if entry_kind & wanted:
                popped_p += _pop_to(stack, reopen, level, cache)
                break
            if entry_kind & _SPECIAL and name not in ("address", "div", "p"):
                break
    if kind & _CLOSES_P and p_open > popped_p:
        if stack and stack[-1] == "p":
            popped_p += _pop_to(stack, reopen, len(stack) - 1, cache)
        else:
            for level in range(len(stack) - 1, -1, -1):  # "close a p element" in button scope
                steps += 1
                entry_kind = _tag_info(stack[level], cache)[1]
                if entry_kind & _PARAGRAPH:
                    popped_p += _pop_to(stack, reopen, level, cache)
                    break
                if entry_kind & (_SCOPE | _BUTTON):
                    break
    if kind & (_CELL | _ROW):
        # A cell or row closes the open cell ("close the cell", in table scope) and a row the open row.
        for wanted in (_CELL, _ROW) if kind & _ROW else (_CELL,):
            for level in range(len(stack) - 1, -1, -1):
                steps += 1
                entry_kind = _tag_info(stack[level], cache)[1]
                if entry_kind & wanted:
                    popped_p += _pop_to(stack, reopen, level, cache)
                    break
                if entry_kind & _TABLE_SCOPE:
                    break
    elif kind & (_HEADING | _OPTION) and stack and _tag_info(stack[-1], cache)[1] & kind & (_HEADING | _OPTION):
        popped_p += _pop_to(stack, reopen, len(stack) - 1, cache)
    return popped_p, steps


def _pop_to(stack: list[str], reopen: list[tuple[str, int]], level: int, cache) -> int:
    """Pop ``stack[level:]``, keeping its formatting elements (but those inside a cell or other
    marker) to be reopened; returns how many <p> were popped."""
    paragraphs = 0
    marker = -1
    for position in range(level, len(stack)):
        token = stack[position]
        kind = _tag_info(token, cache)[1]
        if kind & _PARAGRAPH:
            paragraphs += 1
        if kind & _MARKER:
            if marker < 0:
                marker = position
        elif kind & _FORMATTING and position > level and marker < 0:
            _remember(reopen, token, level)
    del stack[level:]
    _forget_inside(reopen, level, marker >= 0, marker)
    return paragraphs


def _forget_inside(reopen: list[tuple[str, int]], depth: int, marker_closed: bool, marker: int = -1) -> None:
    """The stack is now ``depth`` deep: what was popped inside a closed marker (a cell, a caption...)
    is not reopened (html5ever clears it), and the rest now waits at ``depth``.

    Entries are appended at the depth of the pop that made them, after every older one was brought
    down to it, so depths never decrease along the list and only a tail ever changes.
    """
    if marker_closed:
        limit = depth if marker < 0 else marker
        while reopen and reopen[-1][1] > limit:
            reopen.pop()
    position = len(reopen) - 1
    while position >= 0 and reopen[position][1] > depth:
        reopen[position] = (reopen[position][0], depth)
        position -= 1


def _remember(reopen: list[tuple[str, int]], token: str, depth: int) -> None:
    """Add a formatting element to reopen; of identical ones (same tag, same attributes) html5ever
    keeps the last three."""
    same = [position for position, (other, _) in enumerate(reopen) if other == token]
    if len(same) >= 3:
        del reopen[same[0]]
    reopen.append((token, depth))


def _in_foreign(stack: list[str], cache) -> bool:
    """Whether the current element is SVG or MathML content, looking at the innermost 32 only: inside
    <svg> or <math>, and not back in HTML through <foreignObject>, <mtext>... or an HTML tag."""
    for token in stack[:-33:-1]:
        kind = _tag_info(token, cache)[1]
        if kind & (_SCOPE | _BREAKS_OUT):
            return False
        if kind & _FOREIGN:
            return True
    return False
