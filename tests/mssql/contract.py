"""The T-SQL contract: would SQL Server accept this batch, and does it stay inside the pipeline's limits?

``check(sql)`` returns the reasons a batch is rejected (an empty list: accepted). Two layers, and
both read the text exactly as the driver sends it; nothing is rewritten by a tool first:

1. **Grammar**: sqlfluff's ``tsql`` dialect parses the batch; any unparsable section rejects it.
   To keep that affordable, sqlfluff reads the batch's *shape* (``shape``): ``?`` becomes ``@p``
   (what the ODBC driver sends to sp_prepexec is ``@P1, @P2, ...``), string and number literals
   become ``'s'`` and ``0``, mssql-django's ``@var17`` variables become ``@var``, and a run of
   three or more identical list items (``@p, @p, @p``; identical ``(...)`` rows; identical
   ``WHEN ... THEN @p`` branches; identical ``DECLARE`` items) is cut to two. That changes no
   grammar (a delimited list of identical items parses as well with two as with 2,000), and it
   makes every bulk batch of one table one shape: each distinct shape is parsed once (cached).
2. **Token checks on the original text**, for what no grammar rejects (and what sqlfluff accepts
   although SQL Server does not): the limits below, counted on the real statement, and syntax of
   other dialects.

Limits, and where each comes from:

* ``MAX_PARAMS`` 2,050 parameters per batch: SQL Server's hard limit is 2,100, but sp_executesql
  takes some of them; mssql-django keeps to 2,050 itself (``DatabaseOperations.bulk_batch_size``).
* ``MAX_VALUES_ROWS`` 1,000 rows in one ``VALUES`` list (SQL Server error 10738).
* ``MAX_CASE_NESTING`` 10 levels of nested CASE (and IIF, which is a CASE; error 125).
* ``MAX_WHEN_PER_STATEMENT`` 1,024 ``WHEN`` branches per statement. SQL Server documents no limit,
  but a huge CASE fails to compile ("an expression services limit has been reached", error 8632).
  Django's ``bulk_update`` writes one ``WHEN pk = ? THEN ?`` per row and field, in mssql-django's
  batches of ``min(1000, 2050 // (fields + 2) // 2)`` rows (``bulk_update_when_bound``): 341
  branches for one field, 850 for the pipeline's widest (10 entry fields, 85 rows), and never more
  than 1,023 for any number of fields. So a statement above 1,024 was not written by bulk_update
  (a hand-built Case() with a branch per row of a 2,000-id chunk, literal THENs); parameterized
  branches hit the parameter limit first.
* ``MAX_ROWS_PER_WRITE`` 5,000 rows per UPDATE or DELETE, where an ``IN`` list or ``VALUES`` in its
  WHERE shows how many: at about 5,000 locks one statement escalates to a table lock.
* ``#Temp_params``: mssql-django turns an ``IN`` list of more than 2,048 values into a temporary
  table filled in the same transaction (mssql-django issue 156); the pipeline must never send one.
* Not T-SQL although sqlfluff reads it: ``LIMIT``, ``RETURNING``, ``ON CONFLICT``, ``ON DUPLICATE
  KEY``, ``TRUE``/``FALSE``, ``UPDATE ... JOIN ... SET``, ``OFFSET`` without ``ORDER BY`` or without
  ``ROWS``, ``FETCH`` without ``OFFSET``, ``::`` casts, ``||`` (only SQL Server 2025 has it),
  ``ILIKE``, ``EXISTS`` as a value, ``GO``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

MAX_PARAMS = 2050
MAX_VALUES_ROWS = 1000
MAX_CASE_NESTING = 10
MAX_WHEN_PER_STATEMENT = 1024
MAX_ROWS_PER_WRITE = 5000
MSSQL_MAX_INSERT_ROWS = 1000  # mssql-django's bulk_batch_size: max_insert_rows


def bulk_update_when_bound(fields: int) -> int:
    """WHEN branches of one Django ``bulk_update`` statement of ``fields`` fields on mssql-django.

    Django asks ``bulk_batch_size(["pk", "pk"] + fields, objs)``; mssql-django answers
    ``min(1000, 2050 // len(fields) // 2)`` rows, and each row adds one branch per field.
    """
    rows = min(MSSQL_MAX_INSERT_ROWS, MAX_PARAMS // (fields + 2) // 2)
    return rows * fields


@dataclass(frozen=True)
class Rejection:
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"


# --- Tokens ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>--[^\n]*|/\*.*?\*/)
    | (?P<string>[Nn]?'(?:[^']|'')*')
    | (?P<name>\[(?:[^\]]|\]\])*\]|"(?:[^"]|"")*")
    | (?P<param>\?)
    | (?P<variable>@@?[\w$#@]+)
    | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<word>[^\W\d][\w$#@]*|\#{1,2}[\w$#@]+)
    | (?P<op>::|\|\||<=|>=|<>|!=|!<|!>|\S)
    """,
    re.X | re.S,
)


@dataclass(frozen=True)
class Token:
    kind: str  # word, name, string, number, param, variable, op (spaces and comments are dropped)
    text: str
    depth: int  # parentheses open around it (an "(" has the depth outside it)

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


@functools.lru_cache(maxsize=512)
def tokens(sql: str) -> tuple[Token, ...]:
    out: list[Token] = []
    depth = 0
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup
        if kind in ("space", "comment"):
            continue
        text = match.group()
        if text == ")":
            depth = max(depth - 1, 0)
        out.append(Token(kind, text, depth))
        if text == "(":
            depth += 1
    return tuple(out)


def placeholder_count(sql: str) -> int:
    """The ``?`` the driver binds a parameter to (outside strings, names and comments)."""
    return sum(1 for token in tokens(sql) if token.kind == "param")


# --- Shape: what sqlfluff parses -------------------------------------------------------------------

_SAVEPOINT = re.compile(r"^s\d+_x\d+$")  # Django's savepoint names: s140363545385856_x1
_ATOM = r"(?:@p|@var|N's'|'s'|0|NULL|DEFAULT)"
_COLLAPSE = (
    # a, a, a, ... -> a, a  (IN lists, VALUES rows of parameters, DECLARE lists)
    (re.compile(rf"(?<![\w@#$'])({_ATOM})(?:\s*,\s*\1){{2,}}(?![\w@#$'])"), ", "),
    # (..), (..), (..) -> (..), (..)  (identical VALUES rows)
    (re.compile(r"(\([^()]*\))(?:\s*,\s*\1){2,}"), ", "),
    # WHEN x THEN @p WHEN x THEN @p ... -> two of them  (bulk_update's CASE)
    (re.compile(rf"(\bWHEN\b(?:(?!\b(?:WHEN|CASE|END|ELSE)\b)[^;])*?\bTHEN\s+{_ATOM})(?:\s+\1){{2,}}", re.I), " "),
    # DECLARE @var INT = @p, @var INT = @p, ... -> two of them
    (re.compile(r"(@var\s+\w+(?:\s*\([^()]*\))?\s*=\s*@p)(?:\s*,\s*\1){2,}"), ", "),
)


def _shape_token(match: re.Match) -> str:
    kind, text = match.lastgroup, match.group()
    if kind == "comment":
        return " "
    if kind == "param":
        return "@p"
    if kind == "string":
        return "N's'" if text[0] in "Nn" else "'s'"
    if kind == "number":
        return "0"
    if kind == "variable" and re.fullmatch(r"@var\d+", text):
        return "@var"
    if kind == "word" and _SAVEPOINT.match(text):
        return "s_x"
    return text


@functools.lru_cache(maxsize=512)
def shape(sql: str) -> str:
    text = _TOKEN.sub(_shape_token, sql)
    while True:
        before = text
        for pattern, separator in _COLLAPSE:
            text = pattern.sub(lambda m, sep=separator: m.group(1) + sep + m.group(1), text)
        if text == before:
            return text.strip()


@functools.cache
def _linter():
    from sqlfluff.core import FluffConfig, Linter

    # The raw templater: a '{' in a name must not be read as Jinja. No local config files.
    config = FluffConfig(overrides={"dialect": "tsql", "templater": "raw"}, ignore_local_config=True)
    return Linter(config=config)


@functools.lru_cache(maxsize=None)
def grammar_errors(shape_text: str) -> tuple[str, ...]:
    """sqlfluff's parse errors for one shape (cached: bulk batches share their shape)."""
    parsed = _linter().parse_string(shape_text)
    return tuple(" ".join(v.desc().split()) for v in parsed.violations)


def grammar_cache_info():
    return grammar_errors.cache_info()


# --- The checks -----------------------------------------------------------------------------------


def check(sql: str, *, params: int | None = None) -> list[Rejection]:
    """Why SQL Server (or the pipeline's limits) would reject this batch; [] when it passes.

    ``params``: how many parameters were bound to it, when known; must equal its ``?`` count.
    """
    found = list(_text_rejections(sql))
    if params is not None:
        marks = placeholder_count(sql)
        if marks != params:
            found.append(Rejection("placeholders", f"{params} parameters bound to {marks} placeholders"))
    return found


@functools.lru_cache(maxsize=512)
def _text_rejections(sql: str) -> tuple[Rejection, ...]:
    toks = tokens(sql)
    found: list[Rejection] = []
    found += _parameters(toks)
    found += _foreign(toks)
    found += _offset_fetch(toks)
    found += _update_join(toks)
    found += _case(toks)
    found += _values(toks)
    found += _write_bounds(toks)
    for error in grammar_errors(shape(sql)):
        found.append(Rejection("grammar", f"sqlfluff (tsql) cannot parse it: {error}"))
    return tuple(found)


def _parameters(toks: tuple[Token, ...]) -> list[Rejection]:
    count = sum(1 for t in toks if t.kind == "param")
    if count > MAX_PARAMS:
        return [Rejection("parameters", f"{count:,} parameters; at most {MAX_PARAMS:,} per statement "
                                        "(SQL Server allows 2,100 per request, mssql-django keeps to 2,050)")]
    return []


_FOREIGN_WORDS = {
    "LIMIT": ("limit", "LIMIT is not T-SQL: use TOP (n), or ORDER BY ... OFFSET n ROWS FETCH NEXT m ROWS ONLY"),
    "RETURNING": ("returning", "RETURNING is not T-SQL: use OUTPUT INSERTED.<column>"),
    "TRUE": ("boolean-literal", "TRUE is not a T-SQL literal: a bit column takes 1"),
    "FALSE": ("boolean-literal", "FALSE is not a T-SQL literal: a bit column takes 0"),
    "ILIKE": ("foreign-operator", "ILIKE is PostgreSQL: T-SQL's LIKE follows the column's collation"),
    "GO": ("go", "GO is a batch separator of sqlcmd and SSMS, not T-SQL: the server rejects it"),
}
_FOREIGN_OPS = {
    "::": "'::' casts are PostgreSQL: use CAST(x AS type)",
    "||": "'||' concatenation exists only from SQL Server 2025 on: use + or CONCAT()",
    "`": "backquoted names are MySQL: use [name]",
}


def _next_word(toks, i: int) -> str:
    return toks[i + 1].word if i + 1 < len(toks) else ""


def _bare_name(token: Token) -> str:
    """A word or a quoted name, upper-cased, without its brackets or quotes."""
    return token.word or (token.text[1:-1].upper() if token.kind == "name" else "")


def _foreign(toks: tuple[Token, ...]) -> list[Rejection]:
    found = []
    for i, t in enumerate(toks):
        word = t.word
        if word in _FOREIGN_WORDS:
            found.append(Rejection(*_FOREIGN_WORDS[word]))
        elif word == "ON" and _next_word(toks, i) == "CONFLICT":
            found.append(Rejection("on-conflict", "INSERT ... ON CONFLICT is not T-SQL: use MERGE, or insert "
                                                  "and handle the duplicate key (2627/2601)"))
        elif word == "ON" and _next_word(toks, i) == "DUPLICATE":
            found.append(Rejection("on-duplicate-key", "ON DUPLICATE KEY UPDATE is MySQL, not T-SQL: use MERGE"))
        elif _bare_name(t).startswith("#TEMP_PARAMS"):
            found.append(Rejection("temp-params", "mssql-django spilled an IN list of more than 2,048 values into "
                                                  "#Temp_params (mssql-django issue 156): keep IN lists at 2,048 or fewer"))
        elif word == "EXISTS" and i > 0 and (toks[i - 1].word in ("SELECT", "THEN", "ELSE") or toks[i - 1].text in (",", "=")):
            found.append(Rejection("boolean-value", "EXISTS(...) is a predicate, not a value, in T-SQL: "
                                                    "CASE WHEN EXISTS(...) THEN 1 ELSE 0 END"))
        elif t.kind == "op" and t.text in _FOREIGN_OPS:
            found.append(Rejection("foreign-operator", _FOREIGN_OPS[t.text]))
    return _unique(found)


def _unique(found: list[Rejection]) -> list[Rejection]:
    return list(dict.fromkeys(found))


def _offset_fetch(toks: tuple[Token, ...]) -> list[Rejection]:
    """OFFSET needs an ORDER BY of the same query before it and ROW(S) after its count; FETCH
    FIRST/NEXT needs OFFSET ... ROWS before it."""
    found = []
    ordered: dict[int, bool] = {}
    offset: dict[int, bool] = {}
    for i, t in enumerate(toks):
        word, depth = t.word, t.depth
        if word == "SELECT":
            ordered[depth] = offset[depth] = False
        elif word == "ORDER" and _next_word(toks, i) == "BY":
            ordered[depth] = True
        elif word == "OFFSET":
            if not ordered.get(depth):
                found.append(Rejection("offset", "OFFSET without ORDER BY: T-SQL pages only an ordered query "
                                                 "(ORDER BY ... OFFSET n ROWS)"))
            rows = False
            for later in toks[i + 1:]:
                if later.depth < depth or later.text == ";" or later.word in ("FETCH", "SELECT", "LIMIT", "UNION"):
                    break
                if later.depth == depth and later.word in ("ROW", "ROWS"):
                    rows = True
                    break
            if not rows:
                found.append(Rejection("offset", "OFFSET n without ROWS is not T-SQL: OFFSET n ROWS"))
            offset[depth] = True
        elif word == "FETCH" and _next_word(toks, i) in ("FIRST", "NEXT") and not offset.get(depth):
            found.append(Rejection("fetch", "FETCH FIRST/NEXT without OFFSET ... ROWS is not T-SQL: "
                                            "ORDER BY ... OFFSET 0 ROWS FETCH NEXT n ROWS ONLY, or TOP (n)"))
    return _unique(found)


def _statement_starts(toks: tuple[Token, ...], keyword: str):
    """Indexes of ``keyword`` (UPDATE, DELETE) where it starts a statement: not ON DELETE CASCADE,
    FOR UPDATE, INSTEAD OF / AFTER UPDATE (triggers)."""
    for i, t in enumerate(toks):
        if t.word == keyword and not (i > 0 and toks[i - 1].word in ("ON", "FOR", "OF", "AFTER")):
            yield i


def _update_join(toks: tuple[Token, ...]) -> list[Rejection]:
    for start in _statement_starts(toks, "UPDATE"):
        depth = toks[start].depth
        for t in toks[start + 1:]:
            if t.depth < depth or t.text == ";" or (t.depth == depth and t.word == "SET"):
                break
            if t.depth == depth and t.word == "JOIN":
                return [Rejection("update-join", "UPDATE ... JOIN ... SET is MySQL: T-SQL writes "
                                                 "UPDATE t SET ... FROM t JOIN u ON ...")]
    return []


_NO_END_AFTER_BEGIN = {"TRAN", "TRANSACTION", "DISTRIBUTED", "DIALOG", "CONVERSATION"}


def _case(toks: tuple[Token, ...]) -> list[Rejection]:
    found = []
    stack: list[tuple[str, int]] = []  # ("CASE" | "IIF" | "BEGIN", depth)
    deepest, branches = 0, 0
    for i, t in enumerate(toks):
        word = t.word
        if word == "CASE":
            stack.append(("CASE", t.depth))
        elif word == "IIF" and i + 1 < len(toks) and toks[i + 1].text == "(":
            stack.append(("IIF", t.depth + 1))
        elif word == "BEGIN" and _next_word(toks, i) not in _NO_END_AFTER_BEGIN:
            stack.append(("BEGIN", t.depth))
        elif word == "END":
            while stack and stack[-1][0] == "IIF":
                stack.pop()  # an unclosed IIF cannot span an END; the grammar check reports it
            if stack:
                stack.pop()
        elif t.text == ")":
            while stack and stack[-1][0] == "IIF" and stack[-1][1] > t.depth:
                stack.pop()
        elif word == "WHEN" and _next_word(toks, i) not in ("MATCHED", "NOT"):
            branches += 1
        deepest = max(deepest, sum(1 for kind, _ in stack if kind != "BEGIN"))
    if deepest > MAX_CASE_NESTING:
        found.append(Rejection("case-nesting", f"CASE expressions nested {deepest} deep; SQL Server allows "
                                               f"{MAX_CASE_NESTING} (IIF counts as a CASE)"))
    if branches > MAX_WHEN_PER_STATEMENT:
        found.append(Rejection("case-branches", f"{branches:,} WHEN branches in one statement; at most "
                                                f"{MAX_WHEN_PER_STATEMENT:,} (bulk_update on mssql-django writes at most 1,023; "
                                                "larger CASE expressions fail to compile, error 8632)"))
    return found


def _close(toks: tuple[Token, ...], i: int) -> int:
    """Index of the ")" that closes the "(" at ``i``."""
    depth = toks[i].depth
    for j in range(i + 1, len(toks)):
        if toks[j].text == ")" and toks[j].depth == depth:
            return j
    return len(toks) - 1


def _values_rows(toks: tuple[Token, ...], i: int) -> int:
    """Rows of the VALUES list whose keyword is at ``i``."""
    rows, j = 0, i + 1
    while j < len(toks) and toks[j].text == "(":
        rows += 1
        j = _close(toks, j) + 1
        if j < len(toks) and toks[j].text == "," and j + 1 < len(toks) and toks[j + 1].text == "(":
            j += 1
        else:
            break
    return rows


def _values(toks: tuple[Token, ...]) -> list[Rejection]:
    largest = max((_values_rows(toks, i) for i, t in enumerate(toks) if t.word == "VALUES"), default=0)
    if largest > MAX_VALUES_ROWS:
        return [Rejection("values-rows", f"{largest:,} rows in one VALUES list; SQL Server allows "
                                         f"{MAX_VALUES_ROWS:,} (error 10738)")]
    return []


def _in_list_items(toks: tuple[Token, ...], i: int) -> int | None:
    """Items of the ``IN (...)`` whose IN is at ``i``; None for ``IN (SELECT ...)``."""
    if i + 2 >= len(toks) or toks[i + 1].text != "(" or toks[i + 2].word == "SELECT":
        return None
    end, depth = _close(toks, i + 1), toks[i + 1].depth + 1
    return 1 + sum(1 for t in toks[i + 2:end] if t.text == "," and t.depth == depth)


_STATEMENT_WORDS = {"SELECT", "INSERT", "UPDATE", "DELETE", "DECLARE", "MERGE", "IF", "BEGIN", "COMMIT", "ROLLBACK",
                    "SAVE"}


def _statement_end(toks: tuple[Token, ...], start: int) -> int:
    """Index just past the statement that starts at ``start`` (T-SQL needs no ';' between two)."""
    depth = toks[start].depth
    for j in range(start + 1, len(toks)):
        t = toks[j]
        if t.depth < depth or t.text == ";":
            return j
        if t.depth == depth and t.word in _STATEMENT_WORDS and toks[j - 1].word not in ("ON", "FOR", "OF", "AFTER"):
            return j
    return len(toks)


def _write_bounds(toks: tuple[Token, ...]) -> list[Rejection]:
    """An UPDATE or DELETE whose WHERE names more than MAX_ROWS_PER_WRITE rows in an IN list or
    VALUES (the smallest such list bounds it: they are ANDed in what the ORM writes)."""
    found = []
    for keyword in ("UPDATE", "DELETE"):
        for start in _statement_starts(toks, keyword):
            end = _statement_end(toks, start)
            where = next((j for j in range(start, end) if toks[j].word == "WHERE" and toks[j].depth == toks[start].depth), None)
            if where is None:
                continue
            bounds = []
            for j in range(where + 1, end):
                if toks[j].word == "IN":
                    items = _in_list_items(toks, j)
                    if items is not None:
                        bounds.append(items)
                elif toks[j].word == "VALUES":
                    bounds.append(_values_rows(toks, j))
            if bounds and min(bounds) > MAX_ROWS_PER_WRITE:
                found.append(Rejection("lock-escalation", f"{keyword} of up to {min(bounds):,} rows in one statement; "
                                                          f"at most {MAX_ROWS_PER_WRITE:,} (about 5,000 locks escalate "
                                                          "to a table lock)"))
    return found


def check_script(script: str) -> list[tuple[str, list[Rejection]]]:
    """(statement, rejections) for every statement of a ``sqlmigrate`` script that is rejected."""
    from tests.mssql.tsql import script_statements

    return [(text, problems) for text in script_statements(script) if (problems := check(text))]
