"""HTML bodies: sanitized with nh3, after the limits that keep sanitizing linear.

Owns what an entry or comment body becomes (``body``): the richest content of the entry (an HTML
``content`` over plain text, longer over shorter, any ``content`` over ``summary``), sanitized by
nh3 with relative URLs resolved against the document's base (or its xml:base), or plain text
escaped; and the HTML limits of one document (``BodyGuard``): before nh3 sees a body, it is cut
just before the first tag that ``ingest.parse.htmlscan`` finds past ``BODY_MAX_DEPTH`` (512)
elements nested, ``BODY_MAX_REOPENED`` (12) formatting elements left open, or misnesting beyond
linear time; and any body to its first ``BODY_MAX_CHARS`` (16 Mi) characters, above the 10 MiB
fetch cap so that a long but flat body is stored whole. Bodies of fewer than 2,048 tags are
scanned only once a document's allowance is spent (``_SCAN_FROM_TAGS``): they cannot cost much.
The guard records each cut (entry guid, reason) for the document's warning.

Must not read feedparser's document structure beyond one entry, touch the network or the ORM.
"""

from __future__ import annotations

from functools import lru_cache
from html import escape

import nh3
from feedparser import FeedParserDict

from ingest.links import absolute
from ingest.parse.htmlscan import BODY_MAX_DEPTH, BODY_MAX_REOPENED, html_overflow, tag_position

__all__ = ["BODY_MAX_CHARS", "BODY_MAX_DEPTH", "BODY_MAX_REOPENED", "HTML_TYPES", "BodyGuard", "body"]

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})

# Length alone costs html5ever linear time (a 10 MB flat body sanitizes in about a second), so this
# is only a backstop above INGEST_MAX_BYTES' default: the fetch cap bounds a body first. The longest
# body of the shared corpus's 200 real feeds is 762,498 characters.
BODY_MAX_CHARS = 16 * 1024 * 1024
# A body with fewer tags than this is not scanned while the document's allowance lasts: the worst
# such body measured costs html5ever about 5e-11 s x tags**3 (0.45 s at 2,048 tags), so the
# allowance, in tags**3, keeps what is not scanned under about 2 s per document.
_SCAN_FROM_TAGS = 2048
_UNSCANNED_CUBED_TAGS = 4 * 10**10

# feedparser runs with sanitize_html=False and resolve_relative_uris=False and nh3 does both jobs: both
# feedparser passes re-parse every body in pure Python. Shared corpus, 200 real feeds, 6,555 entries:
# feedparser sanitizing 13.3 s, ingest.parse in all 5.3 s (nh3's share 0.9 s).
_BODY_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()} | {
    "*": {"title", "lang", "dir"}
}


@lru_cache(maxsize=128)
def _body_cleaner(base: str) -> nh3.Cleaner:
    """A sanitizer resolving relative URLs against ``base`` (one per xml:base, in practice one per feed)."""
    if base.startswith(("http://", "https://")):
        try:
            return nh3.Cleaner(attributes=_BODY_ATTRIBUTES, url_relative=("rewrite_with_base", base))
        except ValueError:  # a base the URL standard rejects: leave relative URLs as they are
            pass
    return nh3.Cleaner(attributes=_BODY_ATTRIBUTES)


def body(entry: FeedParserDict, base: str, guard: BodyGuard | None = None, guid: str = "") -> str:
    """Sanitized HTML of the richest content: an HTML ``content`` over plain text, longer over shorter,
    any ``content`` over ``summary``; cut to the HTML limits first (``guard`` records the cut)."""
    contents = [detail for detail in dict.get(entry, "content") or () if (detail.get("value") or "").strip()]
    if contents:
        detail = max(contents, key=lambda item: (item.get("type") in HTML_TYPES, len(item["value"])))
    else:
        detail = dict.get(entry, "summary_detail")
        if not detail:
            return ""
    value = detail.get("value") or ""
    guard = guard or BodyGuard()
    if detail.get("type") in HTML_TYPES:
        return _body_cleaner(absolute(base, detail.get("base")) or base).clean(guard.limit(value, guid))
    return escape(guard.limit_text(value, guid).replace("\x00", ""), quote=False)


class BodyGuard:
    """The HTML limits for the bodies of one document, and what they cut."""

    __slots__ = ("allowance", "cuts", "scan_from_tags")

    def __init__(self, *, scan_from_tags: int | None = None) -> None:
        """``scan_from_tags``: bodies with fewer tags are scanned only once the allowance is spent
        (0 scans every body; ``bench/parse_guard.py`` measures both)."""
        self.allowance = _UNSCANNED_CUBED_TAGS
        self.scan_from_tags = _SCAN_FROM_TAGS if scan_from_tags is None else scan_from_tags
        self.cuts: list[tuple[str, str]] = []  # (entry guid, reason)

    def limit(self, html: str, guid: str) -> str:
        """``html``, or its longest prefix within the limits."""
        reasons = []
        if len(html) > BODY_MAX_CHARS:
            html = _cut_at_tag_boundary(html, BODY_MAX_CHARS)
            reasons.append(f"longer than {BODY_MAX_CHARS:,} characters")
        tags = html.count("<")
        if tags < self.scan_from_tags and tags**3 <= self.allowance:
            self.allowance -= tags**3
        elif overflow := html_overflow(html):
            index, reason = overflow
            html = html[: tag_position(html, index)]
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
