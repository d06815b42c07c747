"""Reading the T-SQL that mssql-django sends: split a batch, parse it with sqlglot, measure it.

A T-SQL batch may hold several statements with no ``;`` between them; SQL Server accepts that,
sqlglot does not. mssql-django sends two such shapes, split here before parsing:

* ``SET NOCOUNT ON INSERT ...; SELECT CAST(SCOPE_IDENTITY() AS bigint)`` (and ``SET NOCOUNT OFF``
  before UPDATE and DELETE);
* ``DECLARE @var0 INT = ?, ... \\n SELECT ... GROUP BY ...`` (parameters of GROUP BY queries are
  bound to variables, because SQL Server cannot group by a parameter).

Transaction control (``SAVE TRANSACTION``, ``ROLLBACK TRANSACTION``) is not modelled by sqlglot;
those statements are recognised by an exact pattern instead.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.tokens import TokenType

_DIALECT = TSQL()
_NOCOUNT = re.compile(r"^\s*SET\s+NOCOUNT\s+(?:ON|OFF)\b\s*;?", re.I)
_DECLARE = re.compile(r"^\s*DECLARE\s+@", re.I)
CONTROL = re.compile(
    r"^\s*(?:SAVE|ROLLBACK|COMMIT|BEGIN)\s+TRAN(?:SACTION)?(?:\s+\[?\w+\]?)?\s*;?\s*$"
    r"|^\s*SET\s+IDENTITY_INSERT\s+\[\w+\]\s+(?:ON|OFF)\s*;?\s*$",
    re.I,
)


@dataclass(frozen=True)
class Statement:
    text: str
    tree: exp.Expression | None  # None for transaction control


def split_batch(sql: str) -> list[str]:
    parts: list[str] = []
    rest = sql
    while True:
        match = _NOCOUNT.match(rest)
        if match:
            parts.append(match.group(0).rstrip(" ;\n"))
            rest = rest[match.end():]
            continue
        if _DECLARE.match(rest) and "\n" in rest:
            declare, rest = rest.split("\n", 1)
            parts.append(declare.strip().rstrip(";"))
            continue
        break
    if rest.strip():
        parts.append(rest.strip())
    return parts


class NotTSQL(Exception):
    """sqlglot could not read a statement as T-SQL."""


@functools.lru_cache(maxsize=None)
def parse_batch(sql: str) -> tuple[Statement, ...]:
    """The batch's statements, parsed as T-SQL; raises NotTSQL. Cached: bulk batches repeat."""
    statements: list[Statement] = []
    for part in split_batch(sql):
        if CONTROL.match(part):
            statements.append(Statement(part, None))
            continue
        try:
            trees = sqlglot.parse(part, dialect=_DIALECT, error_level=sqlglot.ErrorLevel.RAISE)
        except sqlglot.errors.SqlglotError as exc:
            raise NotTSQL(f"{exc}\n  in: {part[:300]}") from exc
        for tree in trees:
            if tree is None:
                continue
            if isinstance(tree, exp.Command):
                raise NotTSQL(f"sqlglot fell back to an opaque command for: {part[:300]}")
            statements.append(Statement(part, tree))
    return tuple(statements)


def tokens(sql: str):
    return _DIALECT.tokenize(sql)


def placeholder_count(sql: str) -> int:
    return sum(1 for token in tokens(sql) if token.token_type == TokenType.PLACEHOLDER)


def foreign_syntax(sql: str) -> list[str]:
    """Keywords of other dialects in the text as sent: LIMIT, ON CONFLICT, RETURNING."""
    found = []
    toks = [t for t in tokens(sql) if t.token_type not in (TokenType.STRING, TokenType.IDENTIFIER)]
    for i, token in enumerate(toks):
        word = token.text.upper()
        if word in ("LIMIT", "RETURNING"):
            found.append(word)
        if word == "ON" and i + 1 < len(toks) and toks[i + 1].text.upper() == "CONFLICT":
            found.append("ON CONFLICT")
    return found


def inserted_rows(tree: exp.Expression) -> int:
    values = tree.find(exp.Values)
    return len(values.expressions) if values is not None else 0


def row_bound(tree: exp.Update | exp.Delete, pk: str) -> int | None:
    """How many rows this UPDATE or DELETE can touch, read from its WHERE on the primary key.

    ``pk IN (?, ?, ...)`` bounds it by the list's length, ``pk = ?`` by one; anything else (a
    filter on another column) leaves it unbounded: None.
    """
    where = tree.args.get("where")
    if where is None:
        return None
    bounds = []
    for node in where.find_all(exp.In, exp.EQ):
        if node.find_ancestor(exp.Select) is not None:
            continue  # inside a subquery: it filters other rows
        column = node.this if isinstance(node, exp.In) else node.left
        if not isinstance(column, exp.Column) or column.name != pk:
            continue
        if isinstance(node, exp.In) and node.expressions:
            bounds.append(len(node.expressions))
        elif isinstance(node, exp.EQ) and isinstance(node.right, (exp.Placeholder, exp.Literal)):
            bounds.append(1)
    return min(bounds) if bounds else None


def analyse(sql: str, pk_columns: dict[str, str]) -> dict:
    """What the contract checks need to know about one batch, as plain data."""
    result: dict = {"placeholders": placeholder_count(sql), "foreign": foreign_syntax(sql), "error": None,
                    "statements": []}
    try:
        statements = parse_batch(sql)
    except NotTSQL as exc:
        result["error"] = str(exc)
        return result
    for statement in statements:
        tree = statement.tree
        info = {"type": "Control" if tree is None else type(tree).__name__, "text": statement.text[:300]}
        if isinstance(tree, (exp.Insert, exp.Update, exp.Delete)):
            table = tree.find(exp.Table)
            info["table"] = table.name if table is not None else None
        if isinstance(tree, exp.Insert):
            info["rows"] = inserted_rows(tree)
        if isinstance(tree, (exp.Update, exp.Delete)):
            info["row_bound"] = row_bound(tree, pk_columns.get(info["table"], "id"))
        result["statements"].append(info)
    return result
