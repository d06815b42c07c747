"""Plain text out of feed markup: titles, taglines and author names.

Owns the rule that no element survives in a headline however many times it was escaped
(``plain_text``), the reading of a feedparser text construct as markup or as words
(``text_field``), and the authors of an entry (``authors``: deduplicated, names as plain text, an
email kept only when it is one and fits its column, never cut).

Must not sanitize bodies (``ingest.parse.html`` does), touch the network or the ORM.
"""

from __future__ import annotations

import re
from html import unescape

import nh3
from feedparser import FeedParserDict

from ingest.parse.html import HTML_TYPES, BodyGuard
from ingest.types import AUTHOR_NAME_MAX, EMAIL_MAX, ParsedAuthor

_SPACES = re.compile(r"[\s\x00-\x1f\x7f]+")
_MAX_ESCAPE_LEVELS = 4  # markup escaped more often than this in a title is not text anyone wrote
_BRACKETED = re.compile(r"<\s*(/?\s*[A-Za-z!?][^<>]*)>")
_TAG_LIKE = re.compile(r"<[A-Za-z!/?]")
_TEXT_CLEANER = nh3.Cleaner(tags=set())  # every tag stripped, script/style content dropped


def text_field(item: FeedParserDict, key: str, *, untyped: bool) -> str:
    """A feedparser text construct as plain text: tags stripped when it is markup, entities decoded,
    whitespace collapsed.

    In an untyped (RSS, RDF) title anything that looks like a tag is markup: feedparser guesses
    "HTML" only when every tag is one it considers safe, so without this a title holding
    <script> or an onerror= attribute would be the one kept verbatim.
    """
    value = dict.get(item, key) or ""
    detail = dict.get(item, key + "_detail")
    declared_html = bool(detail) and detail.get("type") in HTML_TYPES
    return plain_text(value, markup=declared_html or (untyped and bool(_TAG_LIKE.search(value))))


def plain_text(value: str, *, markup: bool) -> str:
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
            cleaned = unescape(_TEXT_CLEANER.clean(BodyGuard().limit(value, "")))
            if cleaned == value or not _TAG_LIKE.search(cleaned):
                value = cleaned
                break
            value = cleaned
    if _TAG_LIKE.search(value):
        value = _BRACKETED.sub(r"\1", value)
        if _TAG_LIKE.search(value):  # a lone "<b" without its ">"
            value = _TAG_LIKE.sub(lambda match: match.group(0)[1:], value)
    return _SPACES.sub(" ", value).strip()


def authors(entry: FeedParserDict) -> tuple[ParsedAuthor, ...]:
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
        name = plain_text(item.get("name") or "", markup=True) or email.partition("@")[0] or email
        if not name:
            continue
        author = ParsedAuthor(name=name[:AUTHOR_NAME_MAX].rstrip(), email=email)
        found.setdefault((author.name.casefold(), email.casefold()), author)
    with_email = {name for name, email in found if email}
    return tuple(author for (name, email), author in found.items() if email or name not in with_email)
