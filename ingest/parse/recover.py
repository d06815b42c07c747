"""The recovering path: a feed that is not well-formed XML, repaired so that feedparser can read it.

Owns ``xml_repair``: the bytes of a document feedparser read nothing from (bozo, no entries) made
well-formed, to be given to feedparser again, so that every rule of what an entry becomes (guid,
dates, sanitizing, link keys) stays feedparser's and ``ingest.parse``'s. Real feeds break in ways a
recovering XML parser alone does not mend, so the text is first mended where libxml2 would give up
or drop content:

* every XML declaration, well-formed or not (``<?xml?xml version="1.0" ??>``, one after a comment),
  is removed: the encoding feedparser detected (HTTP header, BOM, declaration) decodes the text, and
  the output declares UTF-8;
* an unquoted attribute value (``<rss version=2.0>``) is quoted;
* a stray ``&`` becomes ``&amp;``, and an HTML named entity (``&nbsp;``) its numeric reference;
  CDATA sections and comments are left as they are.

Then lxml's recovering parser reads it (``recover=True``; no entity resolved, no DTD loaded, no
network, libxml2's default limits: ``huge_tree=False``), which closes a truncated document and
drops what it cannot place; an element or attribute with an undeclared prefix (``<rss:item>``) gets
the namespace feedparser knows for that prefix (``dc:``, ``content:``...) or, unknown (``rss:``),
loses the prefix; an entity reference still left is dropped, never expanded. Only the root element
is serialized (comments, processing instructions and any doctype outside it are gone).

Guards: a document with an internal DTD subset or an entity declaration is never repaired (its
refusal, or what feedparser made of it, stands as before), nor one over ``REPAIR_MAX_BYTES``. The
repair runs inside the parse, so within the parse budget (``ingest.parsepool``). Pure: no network,
no ORM, no clock.
"""

from __future__ import annotations

import codecs
import re
from html.entities import html5

from feedparser.mixin import _FeedParserMixin
from lxml import etree

REPAIR_MAX_BYTES = 16 * 1024 * 1024  # beyond every fetched body (INGEST_MAX_BYTES, 10 MiB by default)

# An internal DTD subset or an entity declaration: the billion laughs and XXE shapes.
_DTD_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[|<!ENTITY", re.IGNORECASE)
_DECLARATION = re.compile(r"<\?xml(?![\w.:-])[^<>]*>", re.IGNORECASE)
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})
# One pass over the text: sections left alone, start tags, and ampersands.
_TOKENS = re.compile(
    r"(?P<keep><!\[CDATA\[.*?(?:\]\]>|\Z)|<!--.*?(?:-->|\Z))"
    r"|(?P<tag><[A-Za-z_][^\s<>/]*)(?P<attrs>\s[^<>]*?)?(?P<end>/?>)"
    r"|&(?P<ref>#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z_][\w.-]*;)?",
    re.DOTALL,
)
_AMPERSAND = re.compile(r"&(?P<ref>#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z_][\w.-]*;)?")
_ATTRIBUTE = re.compile(r"""([^\s=]+)(\s*=\s*)("[^"]*"|'[^']*'|[^\s"']+)""")
# feedparser's namespaces by the prefix it gives them (the first URI of a prefix wins).
_KNOWN_PREFIXES: dict[str, str] = {}
for _uri, _prefix in _FeedParserMixin.namespaces.items():
    if _prefix and _uri.startswith("http"):
        _KNOWN_PREFIXES.setdefault(_prefix, _uri)


def xml_repair(content: bytes, encoding: str | None) -> bytes | None:
    """``content`` as a well-formed UTF-8 XML document (see module), or None when it is not to be
    repaired (a DTD subset or entity declaration, over ``REPAIR_MAX_BYTES``) or nothing could be
    recovered from it. ``encoding`` is the one feedparser detected (else UTF-8)."""
    if len(content) > REPAIR_MAX_BYTES or _DTD_SUBSET.search(content):
        return None
    text = _TOKENS.sub(_mend, _DECLARATION.sub("", _decode(content, encoding)))
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(text, parser)
    except (etree.XMLSyntaxError, ValueError):
        return None
    if root is None or not isinstance(root.tag, str):
        return None
    _declare_prefixes(root)
    return etree.tostring(root, encoding="utf-8", xml_declaration=True)


def _decode(content: bytes, encoding: str | None) -> str:
    try:
        codec = codecs.lookup(encoding or "utf-8").name
    except LookupError:
        codec = "utf-8"
    text = content.decode(codec, errors="replace")
    # The characters XML 1.0 forbids (C0 controls but tab, newline, carriage return) make libxml2 stop.
    return text.lstrip("\ufeff").translate(_CONTROLS)


_CONTROLS = {code: None for code in range(32) if code not in (9, 10, 13)}


def _mend(match: re.Match) -> str:
    if match.group("keep") is not None:
        return match.group("keep")
    if match.group("tag") is not None:
        attrs = match.group("attrs") or ""
        return match.group("tag") + _AMPERSAND.sub(_reference, _ATTRIBUTE.sub(_quote, attrs)) + match.group("end")
    return _reference(match)


def _reference(match: re.Match) -> str:
    """A stray ``&`` escaped, an HTML named entity as numeric references, anything else as it is."""
    ref = match.group("ref")
    if ref is None:
        return "&amp;"
    name = ref[:-1]
    if ref.startswith("#") or name in _XML_ENTITIES or ref not in html5:
        return "&" + ref  # a character reference, XML's own, or unknown (dropped by the parse)
    return "".join(f"&#{ord(char)};" for char in html5[ref])


def _quote(match: re.Match) -> str:
    name, equals, value = match.groups()
    if value[0] in "\"'":
        return match.group(0)
    return f'{name}{equals}"{value.replace(chr(34), "&quot;")}"'


def _declare_prefixes(root: etree._Element) -> None:
    """Give every undeclared prefix the namespace feedparser knows it by, else strip it; drop the
    entity references the parse left unexpanded."""
    unexpanded = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            if element.tag is etree.Entity:
                unexpanded.append(element)
            continue
        if ":" in element.tag and not element.tag.startswith("{"):
            element.tag = _qualified(element.tag)
        for name in [name for name in element.attrib if ":" in name and not name.startswith("{")]:
            value = element.attrib.pop(name)
            if _qualified(name) not in element.attrib:
                element.set(_qualified(name), value)
    for entity in unexpanded:
        parent = entity.getparent()
        if parent is not None:
            _remove_keeping_tail(parent, entity)


def _qualified(name: str) -> str:
    prefix, _, local = name.partition(":")
    local = local.replace(":", "") or prefix
    uri = _KNOWN_PREFIXES.get(prefix.lower())
    return f"{{{uri}}}{local}" if uri else local


def _remove_keeping_tail(parent: etree._Element, node: etree._Element) -> None:
    tail = node.tail or ""
    previous = node.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(node)
