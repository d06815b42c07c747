"""URL and link helpers: the one place that says how a link is compared, joined, kept or named.

Owns the comparison form of a URL (``normalize_url``) and its indexed key (``link_key``), joining a
value against a document's base URI (``absolute``), the rule for a storable link (``http_url``:
absolute http(s), fitting the widest URL column, never cut), the links of a sanitized body
(``extract_links``, ``outbound_link_keys``) and the default display name of a feed (``default_name``).
``ingest.parse``, ``ingest.fetch``, ``ingest.identity`` and the services use these, so that no two
places disagree on what "the same link" is.

Pure: standard library and ``ingest.types`` only. No Django, no ORM, no network, no DNS; it must
not judge whether a URL may be fetched (that is ``ingest.fetch.guard``'s job, with DNS).
"""

from __future__ import annotations

import hashlib
import re
from html import unescape
from urllib.parse import urljoin, urlsplit, urlunsplit

from ingest.types import LINK_MAX, SOURCE_NAME_MAX

__all__ = [
    "DEFAULT_PORTS",
    "HTTP_SCHEMES",
    "absolute",
    "default_name",
    "extract_links",
    "http_url",
    "link_key",
    "normalize_url",
    "outbound_link_keys",
]

HTTP_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}

# Exact on the bodies ingest.parse produces: html5ever serializes every attribute double-quoted and
# escapes every literal "<" in text, so an "<a" here is always a real start tag.
_ANCHOR_HREF = re.compile(
    r"""<a\s(?:[^>"']|"[^"]*"|'[^']*')*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""",
    re.IGNORECASE,
)


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
    if scheme not in HTTP_SCHEMES or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at:
        netloc = f"{userinfo}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), parts.query, ""))


def link_key(url: str) -> str:
    """sha256 hex of ``normalize_url(url)``: the indexed key links are matched on; "" when there is none."""
    normalized = normalize_url(url)
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest() if normalized else ""


def absolute(base: str, value: str | None) -> str:
    """``value`` resolved against the document's base URI (unchanged when already absolute)."""
    value = (value or "").strip()
    if not value or not base:
        return value
    try:
        return urljoin(base, value)
    except ValueError:  # a malformed URL (bad IPv6 literal, port): http_url drops it
        return value


def http_url(value: str | None) -> str:
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
    return value if parts.scheme.lower() in HTTP_SCHEMES and parts.netloc else ""


def extract_links(html: str, *, base_url: str = "") -> tuple[str, ...]:
    """Absolute http(s) targets of the ``<a href>`` links in a body produced by ``ingest.parse``, in
    order, without repeats; relative ones are resolved against ``base_url``."""
    links: dict[str, None] = {}
    for match in _ANCHOR_HREF.finditer(html):
        href = (match.group(1) or match.group(2) or match.group(3) or "").strip()
        if "&" in href:
            href = unescape(href)
        if href:
            target = http_url(urljoin(base_url, href) if base_url else href)
            if target:
                links[target] = None
    return tuple(links)


def outbound_link_keys(body: str, link: str) -> tuple[str, ...]:
    """``link_key`` of each link in ``body``, without the entry's own link, sorted."""
    own = link_key(link)
    keys = {link_key(url) for url in extract_links(body, base_url=link)}
    keys.discard(own)
    keys.discard("")
    return tuple(sorted(keys))


def default_name(url: str) -> str:
    """The name a feed registered without one is shown under: its host, else the URL, cut to the column."""
    return (urlsplit(url).hostname or url)[:SOURCE_NAME_MAX]
