"""JSON Feed 1.0 and 1.1: the bytes read into the shape feedparser gives an RSS or Atom document.

Owns the reading of a JSON Feed (``jsonfeed_parse``): the JSON itself, bounded (nesting deeper than
``JSON_MAX_DEPTH`` levels is refused before ``json`` sees it, so hostile nesting costs a linear
scan, not a recursion), the refusal of JSON that is not a JSON Feed (a ``ParseError`` sentence: not
an object, no ``version`` under https://jsonfeed.org/version/, no ``items`` list), and the mapping
of its fields onto feedparser's keys, so that ``ingest.parse.feed`` builds every entry by the XML
path's own rules (guid, headline, sanitized body, link, dates, authors, content hash, link keys):

* feed: ``title``; ``home_page_url`` as the link; ``description`` as the subtitle; ``feed_url`` as
  ``rel="self"``; a hub of type ``WebSub`` (any case) as ``rel="hub"``;
* item: ``id`` (a number as its text; absent or empty, the XML fallbacks: the link, then title and
  date) as the id; ``url``, else ``external_url``, as the link; ``content_html`` as an HTML
  content and ``content_text`` as a plain-text one (the XML rule prefers HTML), ``summary`` as the
  summary; ``date_published`` / ``date_modified`` as published / updated, read by feedparser's date
  parser; ``authors`` (1.1), else ``author`` (1.0), else the feed's, as authors (a name only: JSON
  Feed has no email); ``attachments`` as ``ParsedEnclosure`` values (``JSON_ENCLOSURES``).

Titles are plain text (the spec says so), never markup. A field of the wrong type (a number where a
string belongs, an item that is not an object) is ignored and counted in the document's warning.
Extensions (keys starting with ``_``) are ignored. Must not touch the network or the ORM.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Mapping
from itertools import accumulate

from feedparser.datetimes import _parse_date

from ingest.errors import ParseError
from ingest.links import absolute, http_url
from ingest.parse.document import base_uri
from ingest.parse.enclosures import MAX_ENCLOSURES
from ingest.types import ENCLOSURE_TYPE_MAX, ParsedEnclosure

JSON_FEED_VERSION = "https://jsonfeed.org/version/"
JSON_MAX_DEPTH = 64  # a real feed nests 5 levels (feed, items, item, authors, author)
# The key of an entry (in feedparser's shape) holding its ParsedEnclosure values.
JSON_ENCLOSURES = "jsonfeed_enclosures"

_STRING = re.compile(rb'"[^"]*"')  # once escaped backslashes and quotes are gone
_NOT_BRACKET = bytes(byte for byte in range(256) if byte not in b"[]{}")
_SQUARE = bytes.maketrans(b"{}", b"[]")
_STEPS = bytes.maketrans(b"[]", b"\x01\xff")  # +1 and -1 as signed bytes
_INT64_MAX = 2**63 - 1


def jsonfeed_parse(content: bytes, headers: Mapping[str, str] | None, url: str) -> tuple[dict, str]:
    """The document in feedparser's shape (``feed``, ``entries``, ``version``, ``bozo``), and its
    base URI, as ``ingest.parse.document.feedparser_parse`` returns them for XML."""
    base = base_uri(headers, url)
    document = _load(content)
    if not isinstance(document, dict):
        raise ParseError(f"The response is JSON but not a JSON Feed: the document is {_kind(document)}, not an object.")
    version = document.get("version")
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION):
        raise ParseError(f'The response is JSON but not a JSON Feed: its "version" does not start with '
                         f"{JSON_FEED_VERSION}.")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError(f'The JSON Feed has no "items" list (it is {_kind(items)}).')
    ignored: list[str] = []
    fields = _Fields(ignored)
    feed = {
        "title": fields.string(document, "title"),
        "link": fields.string(document, "home_page_url"),
        "subtitle": fields.string(document, "description"),
        "links": _hubs(document, fields) + [{"rel": "self", "href": fields.string(document, "feed_url")}],
    }
    feed_authors = _authors(document, "", fields)
    entries = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            entries.append(_entry(item, f"items[{index}].", base, feed_authors, fields))
        else:
            ignored.append(f"items[{index}]")
    parsed = {
        "version": "jsonfeed" + version.removeprefix(JSON_FEED_VERSION).replace(".", ""),
        "feed": feed,
        "entries": entries,
        "bozo": 0,
    }
    if ignored:
        parsed["bozo"] = 1
        parsed["bozo_exception"] = ValueError(
            f"{len(ignored)} JSON Feed field(s) of the wrong type were ignored (e.g. {ignored[0][:80]})")
    return parsed, base


# --- the JSON, bounded ----------------------------------------------------------------------------


def _load(content: bytes) -> object:
    if not content or content.isspace():
        raise ParseError("The response body is empty.")
    encoding = json.detect_encoding(content)
    try:
        text = content.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"The JSON document is not valid {encoding.upper()} text (byte {exc.start}).") from None
    if too_deep(content if encoding.startswith("utf-8") else text.encode("utf-8", "surrogatepass")):
        raise ParseError(f"The JSON document nests deeper than {JSON_MAX_DEPTH} levels.")
    try:
        return json.loads(text)
    except RecursionError:  # not reached after the scan above; kept as the backstop
        raise ParseError(f"The JSON document nests deeper than {JSON_MAX_DEPTH} levels.") from None
    except json.JSONDecodeError as exc:
        raise ParseError(f"The response is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300 digits
        raise ParseError(f"The response is not valid JSON: {exc}.") from None


def too_deep(data: bytes) -> bool:
    """Whether arrays and objects nest deeper than ``JSON_MAX_DEPTH`` in the UTF-8 JSON ``data``
    (brackets inside strings do not count). Linear, in C, with no recursion: escapes and strings
    are removed, the brackets kept; a run of openers past the limit answers at once, else one
    level is peeled off every innermost pair and the rest is summed as +1 / -1."""
    if data.count(b"[") + data.count(b"{") <= JSON_MAX_DEPTH:
        return False
    brackets = _STRING.sub(b"", data.replace(b"\\\\", b"").replace(b'\\"', b"")).translate(_SQUARE, _NOT_BRACKET)
    if b"[" * (JSON_MAX_DEPTH + 1) in brackets:
        return True
    brackets, limit = brackets.replace(b"[]", b""), JSON_MAX_DEPTH - 1
    if brackets.count(b"[") <= limit:
        return False
    return max(accumulate(array("b", brackets.translate(_STEPS)))) > limit


def _kind(value: object) -> str:
    if value is None:
        return "missing or null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object"}.get(type(value), type(value).__name__)


# --- fields ---------------------------------------------------------------------------------------


class _Fields:
    """Reads optional fields; one of the wrong type is ignored and its path recorded."""

    __slots__ = ("ignored",)

    def __init__(self, ignored: list[str]) -> None:
        self.ignored = ignored

    def get(self, obj: dict, key: str, kinds: tuple[type, ...], path: str = ""):
        value = obj.get(key)
        if value is None:
            return None
        if isinstance(value, kinds) and not isinstance(value, bool):  # True is an int to Python, not to JSON
            return value
        self.ignored.append(path + key)
        return None

    def string(self, obj: dict, key: str, path: str = "") -> str:
        return self.get(obj, key, (str,), path) or ""


def _entry(item: dict, path: str, base: str, feed_authors: list[dict], fields: _Fields) -> dict:
    entry: dict = {}
    guid = fields.get(item, "id", (str, int, float), path)
    if guid is not None:
        entry["id"] = guid if isinstance(guid, str) else str(guid)
    entry["link"] = fields.string(item, "url", path) or fields.string(item, "external_url", path)
    entry["title"] = fields.string(item, "title", path)
    contents = []
    if html := fields.string(item, "content_html", path):
        contents.append({"type": "text/html", "value": html})
    if text := fields.string(item, "content_text", path):
        contents.append({"type": "text/plain", "value": text})
    entry["content"] = contents
    if summary := fields.string(item, "summary", path):
        entry["summary_detail"] = {"type": "text/plain", "value": summary}
    for key, name in (("date_published", "published"), ("date_modified", "updated")):
        if raw := fields.string(item, key, path):
            entry[name] = raw
            entry[name + "_parsed"] = _parse_date(raw)
    entry["authors"] = _authors(item, path, fields) or feed_authors
    entry[JSON_ENCLOSURES] = _enclosures(item, path, base, fields)
    return entry


def _authors(obj: dict, path: str, fields: _Fields) -> list[dict]:
    """1.1's ``authors`` list, else 1.0's ``author`` object, as feedparser's ``authors`` items."""
    listed = fields.get(obj, "authors", (list,), path)
    if listed is None:
        single = fields.get(obj, "author", (dict,), path)
        listed, where = ([single] if single else []), path + "author"
    else:
        where = path + "authors"
    authors = []
    for index, author in enumerate(listed):
        if not isinstance(author, dict):
            fields.ignored.append(f"{where}[{index}]")
            continue
        if name := fields.string(author, "name", f"{where}[{index}]."):
            authors.append({"name": name})
    return authors


def _hubs(document: dict, fields: _Fields) -> list[dict]:
    links = []
    for index, hub in enumerate(fields.get(document, "hubs", (list,)) or ()):
        if not isinstance(hub, dict):
            fields.ignored.append(f"hubs[{index}]")
            continue
        kind, url = fields.string(hub, "type", f"hubs[{index}]."), fields.string(hub, "url", f"hubs[{index}].")
        if kind.strip().lower() == "websub" and url:
            links.append({"rel": "hub", "href": url})
    return links


def _enclosures(item: dict, path: str, base: str, fields: _Fields) -> tuple[ParsedEnclosure, ...]:
    found: dict[str, ParsedEnclosure] = {}
    for index, attachment in enumerate(fields.get(item, "attachments", (list,), path) or ()):
        where = f"{path}attachments[{index}]"
        if not isinstance(attachment, dict):
            fields.ignored.append(where)
            continue
        url = http_url(absolute(base, fields.string(attachment, "url", where + ".")))  # within LINK_MAX
        if not url:
            continue
        mime = fields.string(attachment, "mime_type", where + ".").strip().replace("\x00", "")
        size = fields.get(attachment, "size_in_bytes", (int,), where + ".")
        found.setdefault(url, ParsedEnclosure(
            url=url,
            type=mime if len(mime) <= ENCLOSURE_TYPE_MAX else "",
            length=size if size is not None and 0 <= size <= _INT64_MAX else None,
            kind="enclosure",
        ))
    return tuple(found.values())[:MAX_ENCLOSURES]
