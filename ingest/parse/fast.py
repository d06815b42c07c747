"""The fast path: a well-formed RSS/Atom/RDF document read with lxml into feedparser's result, or None.

Owns ``fast_parse``: the same ``(result, base)`` as ``ingest.parse.document.feedparser_parse`` for the
documents it is sure of, else ``None`` (the caller then runs feedparser exactly as before). feedparser
is the reference, and equivalence is the contract: this module replays feedparser's own state machine
(its element stack, xml:base and xml:lang tracking, ``title_depth`` and per-entry property depths,
the summary-as-content rule, guid isPermaLink -> link, author name/email parsing, the latin-1/UTF-8
and cp1252 repairs of every text value, ``looks_like_html`` guessing, its key aliases) over an lxml
tree, with feedparser's own helpers for dates (``_parse_date``) and URI joining. It is faster because
libxml2 builds the tree and each text node arrives whole, where feedparser's SAX handler sees it a
few characters at a time.

Accepts only: no DOCTYPE or ENTITY declaration; UTF-8 (or ASCII) that the HTTP charset, the XML
declaration and feedparser's RFC 3023 rules all agree on, with an XML media type; a document that
both lxml (``resolve_entities=False, no_network=True, load_dtd=False``) and expat read as well-formed;
an ``<rss>``, 2005 Atom ``<feed>`` or RSS 1.0/0.90 ``<rdf:RDF>`` root. Refuses (None) any element
inside a text construct (xhtml content, markup a publisher forgot to escape), base64 or xhtml
content, a generic element whose key the parse package reads (``<date>`` is feedparser's
``updated``), namespace prefixes feedparser would remap, and every element that has a feedparser
handler this module does not replay (georss, psc, cc, ...): a refusal costs only speed, a
difference would be stored data. ``tests/test_parse_equivalence.py`` holds both paths to the same
``ParsedFeed`` over the shared corpus.

``fast_document`` is the same for headers already as feedparser is given them (``feedparser_parse``
calls it). Every step is linear (two C parsers, one walk of the tree; libxml2's default depth and
text-size limits refuse what is beyond them), so a document refused late costs this attempt and
then feedparser's reading.

Must not build stored values (``ingest.parse.feed`` does), sanitize, touch the network or the ORM.
Produces the keys ``ingest.parse`` reads, with feedparser's meaning (and ``language``, ``tags``,
``image`` and the like as feedparser keeps them); keys nothing reads may be missing.
"""

from __future__ import annotations

import copy
import re
import xml.parsers.expat
from collections.abc import Mapping
from functools import lru_cache

from feedparser import FeedParserDict
from feedparser.api import StrictFeedParser
from feedparser.datetimes import _parse_date
from feedparser.encodings import RE_XML_PI_ENCODING, parse_content_type
from feedparser.html import _cp1252
from feedparser.urls import _urljoin, make_safe_absolute_uri
from lxml import etree

__all__ = ["fast_parse", "fast_document"]

_ATOM = "http://www.w3.org/2005/Atom"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_MATCH = StrictFeedParser._matchnamespaces or {k.lower(): v for k, v in StrictFeedParser.namespaces.items()}
_CANONICAL = frozenset(prefix for prefix in _MATCH.values() if prefix)
_KEYMAP = FeedParserDict.keymap
_FP_STARTS = frozenset(name[7:] for name in dir(StrictFeedParser) if name.startswith("_start_"))
_FP_ENDS = frozenset(name[5:] for name in dir(StrictFeedParser) if name.startswith("_end_"))
_looks_like_html = StrictFeedParser.looks_like_html
_join = lru_cache(maxsize=4096)(_urljoin)  # pure: the same base and URI always join alike
_CAN_BE_RELATIVE = StrictFeedParser.can_be_relative_uri
_HTML_TYPES = StrictFeedParser.html_types
_C1 = re.compile("[%s-%s]" % (chr(min(_cp1252)), chr(max(_cp1252))))
_AMP_REF = re.compile("&([A-Za-z0-9_]+);")
_EMAIL = re.compile(r'''(([a-zA-Z0-9\_\-\.\+]+)@((\[[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.)|(([a-zA-Z0-9\-]+\.)+))([a-zA-Z]{2,4}|[0-9]{1,3})(\]?))(\?subject=\S+)?''')  # noqa: E501  feedparser's
_HEAD_DECL = re.compile(rb"<!\s*(?:doctype|entity)", re.IGNORECASE)
_XML_DECLARATION = re.compile(rb"<\?xml[^>]*?>")
_ROOT_START = re.compile(rb"<[A-Za-z_][^>]*>", re.DOTALL)
_XMLNS = re.compile(rb"""xmlns(?::([A-Za-z_][\w.-]*))?\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_APPLICATION_XML = ("application/xml", "application/xml-dtd", "application/xml-external-parsed-entity")
_TEXT_XML = ("text/xml", "text/xml-external-parsed-entity")
_UTF8 = frozenset({"utf-8", "utf8"})
_ASCII = frozenset({"us-ascii", "ascii"})
# Keys the parse package reads: a generic element (one feedparser has no handler for) may store only
# those that this module stores the generic way, and refuses for the others.
_READ_KEYS = frozenset({
    "id", "link", "links", "title", "title_detail", "content", "summary", "summary_detail", "subtitle",
    "subtitle_detail", "published", "updated", "created", "published_parsed", "updated_parsed",
    "created_parsed", "authors", "media_content", "media_thumbnail",
})
_LXML_OPTIONS = dict(resolve_entities=False, no_network=True, recover=False, huge_tree=False, load_dtd=False,
                     remove_comments=False, remove_pis=False, strip_cdata=True)


class _Refuse(Exception):
    """The document holds something this module does not replay exactly."""


def fast_parse(content: bytes, response_headers: Mapping[str, str] | None, url: str):
    """``(result, base)`` as ``feedparser_parse`` returns them, or None when not sure."""
    from ingest.parse.document import base_uri, forwarded_headers

    headers = forwarded_headers(response_headers)
    base = base_uri(headers, url)
    headers.pop("content-location", None)
    parsed = fast_document(content, headers)
    return None if parsed is None else (parsed, base)


def fast_document(content: bytes, headers: Mapping[str, str]) -> FeedParserDict | None:
    """feedparser's result for ``content`` (``headers``: lower-case names, as passed to feedparser,
    Content-Location removed), or None."""
    encoding = _encoding(content, headers)
    if encoding is None:
        return None
    data = content[3:] if content[:3] == b"\xef\xbb\xbf" else content
    first = re.search(rb"<\w", data)
    if first is None or _HEAD_DECL.search(data, 0, first.start()):
        return None
    if (declaration := _XML_DECLARATION.match(data)) and b"1.0" not in declaration.group(0):
        return None  # feedparser rewrites the declaration to XML 1.0
    try:
        _expat_check(data)
        root = etree.fromstring(data, etree.XMLParser(**_LXML_OPTIONS))
    except (xml.parsers.expat.ExpatError, etree.XMLSyntaxError, ValueError, _Refuse):
        return None
    version = _declared_version(data, first.start())
    tag = root.tag
    if tag == "rss":
        if version and version.startswith("rss") and version != "rss":
            return None  # an RSS 1.0/0.90 namespace on <rss>: rare, not replayed
    elif tag == "{%s}feed" % _ATOM:
        if version != "atom10":
            return None
    elif tag == "{%s}RDF" % _RDF:
        if version not in ("rss090", "rss10"):
            return None
    else:
        return None
    state = _State(version or "", encoding, headers.get("content-language"))
    try:
        state.walk(root)
    except (_Refuse, RecursionError, KeyError, IndexError, TypeError, AttributeError, ValueError):
        return None  # a refusal, or a document on which feedparser itself would fail
    result = FeedParserDict(
        bozo=False,
        entries=[FeedParserDict(entry) for entry in state.entries],
        feed=FeedParserDict(state.feeddata),
        headers=dict(headers),
        encoding=encoding,
        version=state.version,
        namespaces={},
    )
    return result


def _expat_check(data: bytes) -> None:
    """feedparser's strict parser is expat with namespaces: a document expat rejects is read by
    feedparser's loose parser instead, which this module does not replay. Its namespace
    declarations are checked on the way: an xlink one adds attributes in feedparser, and a prefix
    bound to a known namespace and to another one (or to two known ones, or a known one under
    another known one's prefix) is remapped by feedparser's ``namespacemap``."""
    known: dict[str, str] = {}
    unknown: set[str] = set()

    def declaration(prefix, uri):
        if not prefix or not uri:
            return
        lowered = uri.lower()
        if "backend.userland.com/rss" in lowered:
            lowered = "http://backend.userland.com/rss"
        canonical = _MATCH.get(lowered)
        if uri == "http://www.w3.org/1999/xlink":
            raise _Refuse()
        if canonical is None:
            if prefix in known:
                raise _Refuse()
            unknown.add(prefix)
        else:
            if prefix in unknown or known.setdefault(prefix, canonical) != canonical:
                raise _Refuse()
            if canonical != prefix and prefix in _CANONICAL:
                raise _Refuse()

    parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
    parser.StartNamespaceDeclHandler = declaration
    parser.Parse(data, True)


def _encoding(content: bytes, headers: Mapping[str, str]) -> str | None:
    """The encoding feedparser settles on, when it is UTF-8 or ASCII with no warning; else None."""
    head = content[:4]
    if head[:3] == b"\xef\xbb\xbf":
        bom = True
        data = content[3:]
    elif head[:2] in (b"\xfe\xff", b"\xff\xfe") or head[:1] in (b"\x00", b"\x4c") or head[1:2] == b"\x00":
        return None
    else:
        bom = False
        data = content
    match = RE_XML_PI_ENCODING.match(data)
    xml_encoding = match.group(1).decode("utf-8", "replace").lower() if match else ""
    media, http_encoding = parse_content_type(headers.get("content-type") or "")
    if media in _APPLICATION_XML or (media.startswith("application/") and media.endswith("+xml")):
        chosen = http_encoding or xml_encoding or "utf-8"
    elif media in _TEXT_XML or (media.startswith("text/") and media.endswith("+xml")):
        chosen = http_encoding or "us-ascii"
    else:
        return None  # feedparser warns (not an XML media type)
    lowered = chosen.lower()
    if xml_encoding and xml_encoding not in _UTF8 | _ASCII:
        return None  # the bytes would be read by lxml per the declaration, feedparser per the header
    if lowered in _UTF8:
        try:
            data.decode(chosen)
        except (UnicodeDecodeError, LookupError):
            return None
    elif lowered in _ASCII and not bom:
        if not data.isascii():
            return None
    else:
        return None
    return chosen


def _declared_version(data: bytes, start: int) -> str:
    """The version feedparser's ``track_namespace`` sets from the root's namespace declarations."""
    root = _ROOT_START.match(data, start)
    if root is None:
        return ""
    for prefix, double, single in _XMLNS.findall(root.group(0)):
        uri = (double or single).decode("utf-8", "replace").lower()
        if not prefix and uri == "http://my.netscape.com/rdf/simple/0.9/":
            return "rss090"
        if uri == "http://purl.org/rss/1.0/":
            return "rss10"
        if uri == "http://www.w3.org/2005/atom":
            return "atom10"
    return ""


def _set(context: dict, key: str, value) -> None:
    """``FeedParserDict.__setitem__``: its key aliases (``date`` is ``updated``, ``url`` ``href``...)."""
    key = _KEYMAP.get(key, key)
    if isinstance(key, list):
        key = key[0]
    context[key] = value


def _map_content_type(content_type: str) -> str:
    content_type = content_type.lower()
    if content_type in ("text", "plain"):
        return "text/plain"
    if content_type == "html":
        return "text/html"
    if content_type == "xhtml":
        return "application/xhtml+xml"
    return content_type


def _attributes(element) -> dict:
    """feedparser's attribute dict: names lower-cased (with feedparser's prefix for a known
    namespace, then again by local name), ``rel`` and ``type`` values lower-cased."""
    attrib = element.attrib
    if not attrib:
        return {}
    out = {}
    items = list(attrib.items())
    for name, value in items:
        if name[0] == "{":
            namespace, local = name[1:].split("}", 1)
            prefix = _MATCH.get(namespace.lower(), "")
            name = prefix + ":" + local if prefix else local
        out[name.lower()] = value
    for name, value in items:  # and by qualified name, as expat reports it (namespace_prefixes)
        if name[0] == "{":
            namespace, local = name[1:].split("}", 1)
            if namespace == _XML_NS:
                name = "xml:" + local
            else:
                prefixes = [prefix for prefix, uri in element.nsmap.items() if uri == namespace and prefix]
                if len(prefixes) != 1:
                    raise _Refuse()
                name = prefixes[0] + ":" + local
        out[name.lower()] = value
    return {k: (v.lower() if k in ("rel", "type") else v) for k, v in out.items()}


def _name(element) -> str:
    tag = element.tag
    if tag[0] != "{":
        return tag.lower()
    namespace, local = tag[1:].split("}", 1)
    lowered = namespace.lower()
    if "backend.userland.com/rss" in lowered:
        lowered = "http://backend.userland.com/rss"
    prefix = _MATCH.get(lowered, element.prefix)
    if prefix:
        return (prefix.lower() + ":" + local).lower()
    return local.lower()


class _State:
    """feedparser's ``_FeedParserMixin`` state, for the elements this module replays."""

    def __init__(self, version: str, encoding: str, lang: str | None) -> None:
        self.version = version
        self.encoding = encoding
        self.feeddata: dict = {}
        self.entries: list[dict] = []
        self.depths: list[dict] = []  # property_depth_map, one per entry
        self.infeed = self.inentry = self.incontent = self.intextinput = self.inimage = 0
        self.inauthor = self.incontributor = self.inpublisher = self.insource = 0
        self.sourcedata: dict = {}
        self.contentparams: dict = {}
        self.summary_key = None
        self.stack: list[list] = []
        self.basestack: list[str] = []
        self.langstack: list = []
        self.baseuri = ""
        self.lang = lang
        if lang:
            self.feeddata["language"] = lang.replace("_", "-")
        self.title_depth = -1
        self.depth = 0
        self.has_content = 0
        self.guidislink = 0

    # -- the walk: feedparser's unknown_starttag / handle_data / unknown_endtag -------------------

    def walk(self, element) -> None:
        name = _name(element)
        self.start(name, element)
        stack = self.stack
        text = element.text
        if text and stack:
            stack[-1][2].append(text)
        for child in element:
            if isinstance(child.tag, str):
                self.walk(child)
            elif not isinstance(child, (etree._Comment, etree._ProcessingInstruction)):
                raise _Refuse()
            tail = child.tail
            if tail and stack:
                stack[-1][2].append(tail)
        self.end(name)

    def start(self, tag: str, element) -> None:
        self.depth += 1
        attrs = _attributes(element)
        baseuri = attrs.get("xml:base", attrs.get("base")) or self.baseuri
        if self.baseuri:
            self.baseuri = make_safe_absolute_uri(self.baseuri, baseuri) or self.baseuri
        else:
            self.baseuri = _join(self.baseuri, baseuri)
        lang = attrs.get("xml:lang", attrs.get("lang"))
        if lang == "":
            lang = None
        elif lang is None:
            lang = self.lang
        if lang and tag in ("feed", "rss", "rdf:RDF"):  # sic: feedparser's tag is lower-case, so never an RDF
            self.feeddata["language"] = lang.replace("_", "-")
        self.lang = lang
        self.basestack.append(self.baseuri)
        self.langstack.append(lang)
        if self.incontent:
            raise _Refuse()  # markup inside a text construct
        prefix, _, suffix = tag.rpartition(":")
        if tag in ("svg", "math"):
            raise _Refuse()
        if not prefix:
            if tag not in ("title", "link", "description", "name"):
                self.intextinput = 0
            if tag not in ("title", "link", "description", "url", "href", "width", "height"):
                self.inimage = 0
        name = prefix + "_" + suffix if prefix else suffix
        handler = _STARTS.get(name)
        if handler is not None:
            handler(self, attrs)
            return
        if name in _FP_STARTS:
            raise _Refuse()  # a feedparser handler not replayed here
        key = _KEYMAP.get(name, name)
        key = key[0] if isinstance(key, list) else key
        if name in _READ_KEYS or key in _READ_KEYS:
            raise _Refuse()
        if attrs:
            if name in _GENERIC_READ:
                raise _Refuse()
            _set(self.context(), name, attrs)
        else:
            self.push(name, 1)

    def end(self, tag: str) -> None:
        prefix, _, suffix = tag.rpartition(":")
        name = prefix + "_" + suffix if prefix else suffix
        handler = _ENDS.get(name)
        if handler is not None:
            handler(self)
        elif name in _FP_ENDS:
            raise _Refuse()
        else:
            self.pop(name)
        if self.basestack:
            self.basestack.pop()
            if self.basestack and self.basestack[-1]:
                self.baseuri = self.basestack[-1]
        if self.langstack:
            self.langstack.pop()
            if self.langstack:
                self.lang = self.langstack[-1]
        self.depth -= 1

    # -- feedparser's push / pop and helpers -----------------------------------------------------

    def push(self, element: str, expecting_text) -> None:
        self.stack.append([element, expecting_text, []])

    def pop(self, element: str, strip_whitespace: int = 1):
        stack = self.stack
        if not stack or stack[-1][0] != element:
            return None
        element, expecting_text, pieces = stack.pop()
        output = "".join(pieces)
        if strip_whitespace:
            output = output.strip()
        if not expecting_text:
            return output
        if element in _CAN_BE_RELATIVE and output:
            if element != "id" or self.guidislink:
                output = _join(self.baseuri or "", output)
        params = self.contentparams
        if not self.version.startswith("atom") and params.get("type") == "text/plain":
            if _looks_like_html(output):
                params["type"] = "text/html"
        try:
            output = output.encode("iso-8859-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        if _C1.search(output):  # str.translate with a dict costs per character: only when it can apply
            output = output.translate(_cp1252)
        if element in ("category", "tags", "itunes_keywords"):
            return output
        if element == "title" and -1 < self.title_depth <= self.depth:
            return output
        if self.inentry and not self.insource:
            entry = self.entries[-1]
            if element == "content":
                entry.setdefault("content", []).append({**params, "value": output})
            elif element == "link":
                if not self.inimage:
                    if "&" in output:
                        output = _AMP_REF.sub(r"&\g<1>", output.replace("&amp;", "&"))
                    entry["link"] = output
                    if output:
                        entry["links"][-1]["href"] = output
            else:
                if element == "description":
                    element = "summary"
                depths = self.depths[-1]
                old = depths.get(element)
                if old is None or self.depth <= old:
                    depths[element] = self.depth
                    _set(entry, element, output)
                if self.incontent:
                    _set(entry, element + "_detail", {**params, "value": output})
        elif self.infeed or self.insource:
            context = self.context()
            if element == "description":
                element = "subtitle"
            _set(context, element, output)
            if element == "link":
                if "&" in output:
                    output = _AMP_REF.sub(r"&\g<1>", output)
                context[element] = output
                context["links"][-1]["href"] = output
            elif self.incontent:
                _set(context, element + "_detail", {**params, "value": output})
        return output

    def push_content(self, tag: str, attrs: dict, default_type: str, expecting_text) -> None:
        self.incontent += 1
        if self.lang:
            self.lang = self.lang.replace("_", "-")
        content_type = _map_content_type(attrs.get("type", default_type))
        if attrs.get("mode", "") == "base64" or "mode" in attrs:
            raise _Refuse()
        if not (content_type.startswith("text/") or content_type.endswith(("+xml", "/xml"))):
            raise _Refuse()  # feedparser would decode it as base64
        if content_type == "application/xhtml+xml" or content_type.endswith("xml"):
            raise _Refuse()  # xhtml content: escaped and div-stripped by feedparser
        self.contentparams = {"type": content_type, "language": self.lang, "base": self.baseuri}
        self.push(tag, expecting_text)

    def pop_content(self, tag: str):
        value = self.pop(tag)
        self.incontent -= 1
        self.contentparams = {}
        return value

    def context(self) -> dict:
        if self.insource:
            return self.sourcedata
        if self.inimage and "image" in self.feeddata:
            return self.feeddata["image"]
        if self.intextinput:
            return self.feeddata["textinput"]
        if self.inentry:
            return self.entries[-1]
        return self.feeddata

    def save(self, key: str, value, overwrite: bool = False) -> None:
        context = self.context()
        if overwrite:
            _set(context, key, value)
        elif key not in context:
            _set(context, key, value)

    def save_author(self, key: str, value, prefix: str = "author") -> None:
        context = self.context()
        context.setdefault(prefix + "_detail", {})
        context[prefix + "_detail"][key] = value
        self.sync_author_detail()
        context.setdefault("authors", [{}])
        context["authors"][-1][key] = value

    def save_contributor(self, key: str, value) -> None:
        context = self.context()
        context.setdefault("contributors", [{}])
        context["contributors"][-1][key] = value

    def sync_author_detail(self, key: str = "author") -> None:
        context = self.context()
        detail = context.get(key + "s", [{}])[-1]
        if detail:
            name = detail.get("name")
            email = detail.get("email")
            if name and email:
                context[key] = "%s (%s)" % (name, email)
            elif name:
                context[key] = name
            elif email:
                context[key] = email
        else:
            author, email = context.get(key), None
            if not author:
                return
            match = _EMAIL.search(author)
            if match:
                email = match.group(0)
                author = author.replace(email, "").replace("()", "").replace("<>", "").replace("&lt;&gt;", "")
                author = author.strip()
                if author and author[0] == "(":
                    author = author[1:]
                if author and author[-1] == ")":
                    author = author[:-1]
                author = author.strip()
            if author or email:
                context.setdefault(key + "_detail", detail)
            if author:
                detail["name"] = author
            if email:
                detail["email"] = email

    def add_tag(self, term, scheme, label) -> None:
        tags = self.context().setdefault("tags", [])
        if not term and not scheme and not label:
            return
        value = {"term": term, "scheme": scheme, "label": label}
        if value not in tags:
            tags.append(value)


def _enforce_href(attrs: dict) -> dict:
    href = attrs.get("url", attrs.get("uri", attrs.get("href", None)))
    if href:
        attrs.pop("url", None)
        attrs.pop("uri", None)
        attrs["href"] = href
    return attrs


# -- the handlers: feedparser's _start_* / _end_* for the elements replayed ---------------------

def _start_rss(s: _State, attrs: dict) -> None:
    if not s.version or not s.version.startswith("rss"):
        attr_version = attrs.get("version", "")
        version = {"0.91": "rss091u", "0.92": "rss092", "0.93": "rss093", "0.94": "rss094"}.get(attr_version)
        if version:
            s.version = version
        elif attr_version.startswith("2."):
            s.version = "rss20"
        else:
            s.version = "rss"


def _cdf_common(attrs: dict) -> None:
    if "lastmod" in attrs or "href" in attrs:
        raise _Refuse()


def _start_channel(s: _State, attrs: dict) -> None:
    s.infeed = 1
    _cdf_common(attrs)


def _start_feed(s: _State, attrs: dict) -> None:
    s.infeed = 1
    if not s.version:
        s.version = {"0.1": "atom01", "0.2": "atom02", "0.3": "atom03"}.get(attrs.get("version")) or "atom"


def _end_channel(s: _State) -> None:
    s.infeed = 0


def _start_image(s: _State, attrs: dict) -> None:
    context = s.context()
    if not s.inentry:
        context.setdefault("image", {})
    s.inimage = 1
    s.title_depth = -1
    s.push("image", 0)


def _end_image(s: _State) -> None:
    s.pop("image")
    s.inimage = 0


def _start_textinput(s: _State, attrs: dict) -> None:
    context = s.context()
    context.setdefault("textinput", {})
    s.intextinput = 1
    s.title_depth = -1
    s.push("textinput", 0)


def _end_textinput(s: _State) -> None:
    s.pop("textinput")
    s.intextinput = 0


def _start_author(s: _State, attrs: dict) -> None:
    s.inauthor = 1
    s.push("author", 1)
    s.context().setdefault("authors", []).append({})


def _end_author(s: _State) -> None:
    s.pop("author")
    s.inauthor = 0
    s.sync_author_detail()


def _start_contributor(s: _State, attrs: dict) -> None:
    s.incontributor = 1
    s.context().setdefault("contributors", []).append({})
    s.push("contributor", 0)


def _end_contributor(s: _State) -> None:
    s.pop("contributor")
    s.incontributor = 0


def _start_name(s: _State, attrs: dict) -> None:
    s.push("name", 0)


def _end_name(s: _State) -> None:
    value = s.pop("name")
    if s.inpublisher:
        s.save_author("name", value, "publisher")
    elif s.inauthor:
        s.save_author("name", value)
    elif s.incontributor:
        s.save_contributor("name", value)
    elif s.intextinput:
        s.context()["name"] = value


def _int_end(key: str):
    def end(s: _State) -> None:
        value = s.pop(key)
        try:
            value = int(value)
        except ValueError:
            value = 0
        if s.inimage:
            s.context()[key] = value
    return end


def _start_url(s: _State, attrs: dict) -> None:
    s.push("href", 1)


def _end_url(s: _State) -> None:
    value = s.pop("href")
    if s.inauthor:
        s.save_author("href", value)
    elif s.incontributor:
        s.save_contributor("href", value)


def _start_email(s: _State, attrs: dict) -> None:
    s.push("email", 0)


def _end_email(s: _State) -> None:
    value = s.pop("email")
    if s.inpublisher:
        s.save_author("email", value, "publisher")
    elif s.inauthor:
        s.save_author("email", value)
    elif s.incontributor:
        s.save_contributor("email", value)


def _content_start(tag: str, default_type: str):
    def start(s: _State, attrs: dict) -> None:
        s.push_content(tag, attrs, default_type, 1)
    return start


def _content_end(tag: str):
    def end(s: _State) -> None:
        s.pop_content(tag)
    return end


def _start_item(s: _State, attrs: dict) -> None:
    s.entries.append({})
    s.depths.append({})
    s.push("item", 0)
    s.inentry = 1
    s.guidislink = 0
    s.title_depth = -1
    about = attrs.get("rdf:about")
    if about:
        s.context()["id"] = about
    _cdf_common(attrs)


def _end_item(s: _State) -> None:
    s.pop("item")
    s.inentry = 0
    s.has_content = 0


def _start_language(s: _State, attrs: dict) -> None:
    s.push("language", 1)


def _end_language(s: _State) -> None:
    s.lang = s.pop("language")


def _start_webmaster(s: _State, attrs: dict) -> None:
    s.push("publisher", 1)


def _end_webmaster(s: _State) -> None:
    s.pop("publisher")
    s.sync_author_detail("publisher")


def _date_start(key: str):
    def start(s: _State, attrs: dict) -> None:
        s.push(key, 1)
    return start


def _date_end(key: str, parsed_key: str):
    def end(s: _State) -> None:
        value = s.pop(key)
        s.save(parsed_key, _parse_date(value), overwrite=True)
    return end


def _start_category(s: _State, attrs: dict) -> None:
    s.add_tag(attrs.get("term"), attrs.get("scheme", attrs.get("domain")), attrs.get("label"))
    s.push("category", 1)


def _start_media_category(s: _State, attrs: dict) -> None:
    attrs.setdefault("scheme", "http://search.yahoo.com/mrss/category_schema")
    _start_category(s, attrs)


def _start_itunes_category(s: _State, attrs: dict) -> None:
    s.add_tag(attrs.get("text"), "http://www.itunes.com/", None)
    s.push("category", 1)


def _end_category(s: _State) -> None:
    value = s.pop("category")
    if not value:
        return
    tags = s.context()["tags"]
    if value and len(tags) and not tags[-1]["term"]:
        tags[-1]["term"] = value
    else:
        s.add_tag(value, None, None)


def _start_cloud(s: _State, attrs: dict) -> None:
    s.context()["cloud"] = dict(attrs)


def _start_link(s: _State, attrs: dict) -> None:
    attrs.setdefault("rel", "alternate")
    if attrs["rel"] == "self":
        attrs.setdefault("type", "application/atom+xml")
    else:
        attrs.setdefault("type", "text/html")
    context = s.context()
    attrs = _enforce_href(attrs)
    if "href" in attrs:
        attrs["href"] = _join(s.baseuri or "", attrs["href"])
    expecting_text = s.infeed or s.inentry or s.insource
    context.setdefault("links", [])
    if not (s.inentry and s.inimage):
        context["links"].append(dict(attrs))
    if "href" in attrs:
        if attrs.get("rel") == "alternate" and _map_content_type(attrs.get("type")) in _HTML_TYPES:
            context["link"] = attrs["href"]
    else:
        s.push("link", expecting_text)


def _end_link(s: _State) -> None:
    s.pop("link")


def _start_guid(s: _State, attrs: dict) -> None:
    s.guidislink = attrs.get("ispermalink", "true") == "true"
    s.push("id", 1)


def _end_guid(s: _State) -> None:
    value = s.pop("id")
    s.save("guidislink", s.guidislink and "link" not in s.context())
    if s.guidislink:
        s.save("link", value)


def _start_title(s: _State, attrs: dict) -> None:
    s.push_content("title", attrs, "text/plain", s.infeed or s.inentry or s.insource)


def _end_title(s: _State) -> None:
    value = s.pop_content("title")
    if not value:
        return
    s.title_depth = s.depth


def _end_media_title(s: _State) -> None:
    title_depth = s.title_depth
    _end_title(s)
    s.title_depth = title_depth


def _start_description(s: _State, attrs: dict) -> None:
    context = s.context()
    if "summary" in context and not s.has_content:
        s.summary_key = "content"
        _start_content(s, attrs)
    else:
        s.push_content("description", attrs, "text/html", s.infeed or s.inentry or s.insource)


def _start_abstract(s: _State, attrs: dict) -> None:
    s.push_content("description", attrs, "text/plain", s.infeed or s.inentry or s.insource)


def _end_description(s: _State) -> None:
    if s.summary_key == "content":
        _end_content(s)
    else:
        s.pop_content("description")
    s.summary_key = None


def _start_generator(s: _State, attrs: dict) -> None:
    if attrs:
        attrs = _enforce_href(attrs)
        if "href" in attrs:
            attrs["href"] = _join(s.baseuri or "", attrs["href"])
    s.context()["generator_detail"] = dict(attrs)
    s.push("generator", 1)


def _end_generator(s: _State) -> None:
    value = s.pop("generator")
    context = s.context()
    if "generator_detail" in context:
        context["generator_detail"]["name"] = value


def _start_summary(s: _State, attrs: dict) -> None:
    context = s.context()
    if "summary" in context and not s.has_content:
        s.summary_key = "content"
        _start_content(s, attrs)
    else:
        s.summary_key = "summary"
        s.push_content("summary", attrs, "text/plain", 1)


def _end_summary(s: _State) -> None:
    if s.summary_key == "content":
        _end_content(s)
    else:
        s.pop_content(s.summary_key or "summary")
    s.summary_key = None


def _start_enclosure(s: _State, attrs: dict) -> None:
    attrs = _enforce_href(attrs)
    attrs["rel"] = "enclosure"
    s.context().setdefault("links", []).append(dict(attrs))


def _refuse(s: _State, attrs: dict | None = None) -> None:
    raise _Refuse()


def _start_source(s: _State, attrs: dict) -> None:
    if "url" in attrs:
        s.sourcedata["href"] = attrs["url"]
    s.push("source", 1)
    s.insource = 1
    s.title_depth = -1


def _end_source(s: _State) -> None:
    s.insource = 0
    value = s.pop("source")
    if value:
        s.sourcedata["title"] = value
    s.context()["source"] = copy.deepcopy(s.sourcedata)
    s.sourcedata.clear()


def _start_content(s: _State, attrs: dict) -> None:
    s.has_content = 1
    s.push_content("content", attrs, "text/plain", 1)
    src = attrs.get("src")
    if src:
        s.contentparams["src"] = src
    s.push("content", 1)


def _start_content_encoded(s: _State, attrs: dict) -> None:
    s.has_content = 1
    s.push_content("content", attrs, "text/html", 1)


def _end_content(s: _State) -> None:
    copy_to_summary = _map_content_type(s.contentparams.get("type") or "") in ({"text/plain"} | _HTML_TYPES)
    value = s.pop_content("content")
    if copy_to_summary:
        s.save("summary", value)


def _start_newlocation(s: _State, attrs: dict) -> None:
    s.push("newlocation", 1)


def _end_newlocation(s: _State) -> None:
    url = s.pop("newlocation")
    context = s.context()
    if context is not s.feeddata:
        return
    context["newlocation"] = make_safe_absolute_uri(s.baseuri, url.strip())


def _start_itunes_owner(s: _State, attrs: dict) -> None:
    s.inpublisher = 1
    s.push("publisher", 0)


def _end_itunes_owner(s: _State) -> None:
    s.pop("publisher")
    s.inpublisher = 0
    s.sync_author_detail("publisher")


def _keywords_end(key: str, scheme):
    def end(s: _State) -> None:
        value = s.pop(key)
        for term in (value or "").split(","):
            if term.strip():
                s.add_tag(term.strip(), scheme, None)
    return end


def _start_itunes_image(s: _State, attrs: dict) -> None:
    s.push("itunes_image", 0)
    if attrs.get("href"):
        s.context()["image"] = {"href": attrs.get("href")}
    elif attrs.get("url"):
        s.context()["image"] = {"href": attrs.get("url")}


def _end_itunes_block(s: _State) -> None:
    value = s.pop("itunes_block", 0)
    s.context()["itunes_block"] = (value == "yes" or value == "Yes") and 1 or 0


def _end_itunes_explicit(s: _State) -> None:
    value = s.pop("itunes_explicit", 0)
    s.context()["itunes_explicit"] = (None, False, True)[(value == "yes" and 2) or value == "clean" or 0]


def _noop(s: _State, attrs: dict) -> None:
    return None


def _start_media_content(s: _State, attrs: dict) -> None:
    s.context().setdefault("media_content", []).append(attrs)


def _start_media_thumbnail(s: _State, attrs: dict) -> None:
    context = s.context()
    context.setdefault("media_thumbnail", [])
    s.push("url", 1)
    context["media_thumbnail"].append(attrs)


def _end_media_thumbnail(s: _State) -> None:
    url = s.pop("url")
    context = s.context()
    if url is not None and url.strip():
        if "url" not in context["media_thumbnail"][-1]:
            context["media_thumbnail"][-1]["url"] = url


def _media_attrs_start(key: str, pushed: str, as_list: bool = False):
    def start(s: _State, attrs: dict) -> None:
        context = s.context()
        if as_list:
            context.setdefault(key, []).append(attrs)
        else:
            context.setdefault(key, attrs)
        s.push(pushed, 1)
    return start


def _media_attrs_end(key: str, pushed: str, as_list: bool = False, transform=None):
    def end(s: _State) -> None:
        value = s.pop(pushed)
        if value is not None and value.strip():
            target = s.context()[key]
            target = target[-1] if as_list else target
            target["content"] = transform(value) if transform else value
    return end


def _start_media_player(s: _State, attrs: dict) -> None:
    s.push("media_player", 0)
    s.context()["media_player"] = dict(attrs)


def _end_media_player(s: _State) -> None:
    value = s.pop("media_player")
    s.context()["media_player"]["content"] = value


def _start_tags(s: _State, attrs: dict) -> None:
    s.push("tags", 1)


def _end_tags(s: _State) -> None:
    for term in s.pop("tags").split(","):
        s.add_tag(term.strip(), None, None)


_STARTS = {
    "rss": _start_rss, "channel": _start_channel, "feed": _start_feed,
    "image": _start_image, "textinput": _start_textinput,
    "author": _start_author, "managingeditor": _start_author, "dc_author": _start_author,
    "dc_creator": _start_author, "itunes_author": _start_author,
    "contributor": _start_contributor,
    "name": _start_name, "itunes_name": _start_name,
    "width": lambda s, a: s.push("width", 0), "height": lambda s, a: s.push("height", 0),
    "url": _start_url, "homepage": _start_url, "uri": _start_url,
    "email": _start_email, "itunes_email": _start_email,
    "subtitle": _content_start("subtitle", "text/plain"), "tagline": _content_start("subtitle", "text/plain"),
    "itunes_subtitle": _content_start("subtitle", "text/plain"),
    "rights": _content_start("rights", "text/plain"), "copyright": _content_start("rights", "text/plain"),
    "dc_rights": _content_start("rights", "text/plain"),
    "info": _content_start("info", "text/plain"), "feedburner_browserfriendly": _content_start("info", "text/plain"),
    "item": _start_item, "entry": _start_item,
    "language": _start_language, "dc_language": _start_language,
    "webmaster": _start_webmaster, "dc_publisher": _start_webmaster,
    "published": _date_start("published"), "issued": _date_start("published"), "pubdate": _date_start("published"),
    "dcterms_issued": _date_start("published"),
    "updated": _date_start("updated"), "modified": _date_start("updated"),
    "lastbuilddate": _date_start("updated"), "dc_date": _date_start("updated"),
    "dcterms_modified": _date_start("updated"),
    "created": _date_start("created"), "dcterms_created": _date_start("created"),
    "expirationdate": _date_start("expired"),
    "category": _start_category, "keywords": _start_category, "dc_subject": _start_category,
    "media_category": _start_media_category, "itunes_category": _start_itunes_category,
    "cloud": _start_cloud, "link": _start_link, "guid": _start_guid, "id": _start_guid,
    "title": _start_title, "dc_title": _start_title, "media_title": _start_title,
    "description": _start_description, "dc_description": _start_description,
    "media_description": _start_description, "abstract": _start_abstract,
    "generator": _start_generator, "summary": _start_summary, "itunes_summary": _start_summary,
    "enclosure": _start_enclosure, "source": _start_source, "body": _refuse, "xhtml_body": _refuse,
    "content": _start_content, "content_encoded": _start_content_encoded, "fullitem": _start_content_encoded,
    "newlocation": _start_newlocation,
    "itunes_owner": _start_itunes_owner, "itunes_image": _start_itunes_image, "itunes_link": _start_itunes_image,
    "media_group": _noop, "media_content": _start_media_content, "media_thumbnail": _start_media_thumbnail,
    "media_rating": _media_attrs_start("media_rating", "rating"),
    "media_credit": _media_attrs_start("media_credit", "credit", as_list=True),
    "media_restriction": _media_attrs_start("media_restriction", "restriction"),
    "media_license": _media_attrs_start("media_license", "license"),
    "media_player": _start_media_player, "tags": _start_tags,
}
_ENDS = {
    "channel": _end_channel, "feed": _end_channel, "image": _end_image, "textinput": _end_textinput,
    "author": _end_author, "managingeditor": _end_author, "dc_author": _end_author, "dc_creator": _end_author,
    "itunes_author": _end_author, "contributor": _end_contributor,
    "name": _end_name, "itunes_name": _end_name, "width": _int_end("width"), "height": _int_end("height"),
    "url": _end_url, "homepage": _end_url, "uri": _end_url, "email": _end_email, "itunes_email": _end_email,
    "subtitle": _content_end("subtitle"), "tagline": _content_end("subtitle"),
    "itunes_subtitle": _content_end("subtitle"),
    "rights": _content_end("rights"), "copyright": _content_end("rights"), "dc_rights": _content_end("rights"),
    "info": _content_end("info"), "feedburner_browserfriendly": _content_end("info"),
    "item": _end_item, "entry": _end_item, "language": _end_language, "dc_language": _end_language,
    "webmaster": _end_webmaster, "dc_publisher": _end_webmaster,
    "published": _date_end("published", "published_parsed"), "issued": _date_end("published", "published_parsed"),
    "pubdate": _date_end("published", "published_parsed"),
    "dcterms_issued": _date_end("published", "published_parsed"),
    "updated": _date_end("updated", "updated_parsed"), "modified": _date_end("updated", "updated_parsed"),
    "lastbuilddate": _date_end("updated", "updated_parsed"), "dc_date": _date_end("updated", "updated_parsed"),
    "dcterms_modified": _date_end("updated", "updated_parsed"),
    "created": _date_end("created", "created_parsed"), "dcterms_created": _date_end("created", "created_parsed"),
    "expirationdate": _date_end("expired", "expired_parsed"),
    "category": _end_category, "keywords": _end_category, "dc_subject": _end_category,
    "media_category": _end_category, "itunes_category": _end_category,
    "link": _end_link, "guid": _end_guid, "id": _end_guid,
    "title": _end_title, "dc_title": _end_title, "media_title": _end_media_title,
    "description": _end_description, "dc_description": _end_description, "media_description": _end_description,
    "abstract": _end_description, "generator": _end_generator, "summary": _end_summary,
    "itunes_summary": _end_summary, "content": _end_content, "content_encoded": _end_content,
    "fullitem": _end_content, "source": _end_source, "newlocation": _end_newlocation, "itunes_owner": _end_itunes_owner,
    "itunes_keywords": _keywords_end("itunes_keywords", "http://www.itunes.com/"),
    "media_keywords": _keywords_end("media_keywords", None),
    "itunes_block": _end_itunes_block, "itunes_explicit": _end_itunes_explicit,
    "media_thumbnail": _end_media_thumbnail,
    "media_rating": _media_attrs_end("media_rating", "rating"),
    "media_credit": _media_attrs_end("media_credit", "credit", as_list=True),
    "media_restriction": _media_attrs_end(
        "media_restriction", "restriction", transform=lambda v: [cc.strip().lower() for cc in v.split(" ")]),
    "media_license": _media_attrs_end("media_license", "license"),
    "media_player": _end_media_player, "tags": _end_tags,
}
# Generic elements (no feedparser handler) whose text the parse package reads: stored the generic way
# only when they carry no attribute (with one, feedparser stores the attribute dict instead).
_GENERIC_READ = frozenset({"ttl", "sy_updateperiod", "sy_updatefrequency", "slash_comments", "thr_total",
                           "wfw_commentrss"})
