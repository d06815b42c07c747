"""The linear-time scan that finds where an HTML body would make sanitizing superlinear.

html5ever (inside nh3) walks its stack of open elements for most tags, and reopens every "active
formatting element" (b, i, font...) that a block end tag closed at each later run of text, so
nested or misnested markup makes sanitizing superlinear: 1.1 MB of nested <div> keeps it busy for
40-76 s. ``html_overflow`` is a simulation of that stack, in one pass over the tags, that never
pops more than html5ever would; it returns the first tag that would take a body past
``BODY_MAX_DEPTH`` elements nested, ``BODY_MAX_REOPENED`` formatting elements left open, or
misnesting that would cost the scan itself more than linear time. ``tag_position`` says where
that tag starts, so ``ingest.parse.html`` can cut the body just before it.

Real feeds stay far below: of the 6,258 bodies of the shared corpus's 200 real feeds, the deepest
reaches 48 (KaTeX markup, whose <span/> html5ever leaves open), none leaves more than one
formatting element to reopen.

Pure and self-contained: it reads a string and returns numbers; it must not sanitize, cut or log
(``ingest.parse.html`` does), and imports nothing of the app.
"""

from __future__ import annotations

import re

BODY_MAX_DEPTH = 512  # Blink's HTML parser stops nesting at this depth too
# Each is reopened at every run of text until closed, multiplying the output; sloppy markup leaves
# at most three identical ones (HTML's "Noah's ark" rule) per tag it forgets to close.
BODY_MAX_REOPENED = 12
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


def _tokens(html: str) -> tuple[list[str], bool]:
    """The tags of ``html`` as the scan reads them (see ``_TAGS``), and whether it has SVG or MathML."""
    foreign = _HAS_FOREIGN.search(html) is not None
    return list(filter(None, (_TAGS_FOREIGN if foreign else _TAGS).findall(html))), foreign


def tag_position(html: str, index: int) -> int:
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


def html_overflow(html: str) -> tuple[int, str] | None:
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
