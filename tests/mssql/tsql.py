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
    r"|^\s*COMMIT\s*;?\s*$"
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


@functools.lru_cache(maxsize=256)
def tokens(sql: str) -> tuple:
    return tuple(_DIALECT.tokenize(sql))


def placeholder_count(sql: str) -> int:
    return sum(1 for token in tokens(sql) if token.token_type == TokenType.PLACEHOLDER)


_QUOTED = re.compile(r"'(?:[^']|'')*'|\[[^\]]*\]|\"[^\"]*\"")
_FOREIGN = re.compile(r"\b(LIMIT|RETURNING|ON\s+CONFLICT)\b", re.I)


def foreign_syntax(sql: str) -> list[str]:
    """Keywords of other dialects in the text as sent (outside strings and quoted names):
    LIMIT (PostgreSQL, MySQL, SQLite), ON CONFLICT and RETURNING (PostgreSQL, SQLite)."""
    return [" ".join(match.group(1).upper().split()) for match in _FOREIGN.finditer(_QUOTED.sub(" ", sql))]


def inserted_rows(tree: exp.Expression) -> int:
    values = tree.find(exp.Values)
    return len(values.expressions) if values is not None else 0


def row_bound(tree: exp.Update | exp.Delete, pk: str) -> int | None:
    """How many rows this UPDATE or DELETE can touch, read from its WHERE on the primary key, or
    from the derived table it is joined to on the primary key.

    ``pk IN (?, ?, ...)`` bounds it by the list's length, ``pk = ?`` by one; ``UPDATE t ... FROM t
    JOIN (derived) s ON t.pk = s.x`` by the derived table's rows (``derived_rows``: each of its
    rows meets at most one row of t). Anything else (a filter on another column) leaves it
    unbounded: None.
    """
    bounds = []
    where = tree.args.get("where")
    for node in (where.find_all(exp.In, exp.EQ) if where is not None else ()):
        if node.find_ancestor(exp.Select) is not None:
            continue  # inside a subquery: it filters other rows
        column = node.this if isinstance(node, exp.In) else node.left
        if not isinstance(column, exp.Column) or column.name != pk:
            continue
        if isinstance(node, exp.In) and node.expressions:
            bounds.append(len(node.expressions))
        elif isinstance(node, exp.EQ) and isinstance(node.right, (exp.Placeholder, exp.Literal)):
            bounds.append(1)
    joined = _joined_on_pk(tree, pk)
    if joined is not None:
        bounds.append(joined)
    return min(bounds) if bounds else None


def _joined_on_pk(tree: exp.Expression, pk: str) -> int | None:
    source = tree.args.get("from_")
    if not isinstance(tree, exp.Update) or source is None or not isinstance(source.this, exp.Table):
        return None
    target = source.this
    if target.name != tree.this.name:
        return None
    found = []
    for join in target.args.get("joins") or []:
        on, derived = join.args.get("on"), join.this
        if join.side or not isinstance(on, exp.EQ) or not isinstance(derived, exp.Subquery):
            continue
        sides = {(column.table, column.name) for column in (on.left, on.right) if isinstance(column, exp.Column)}
        if (target.alias_or_name, pk) in sides and any(table == derived.alias for table, _ in sides):
            rows = derived_rows(derived.this)
            if rows is not None:
                found.append(rows)
    return min(found) if found else None


def derived_rows(select: exp.Expression) -> int | None:
    """At most how many rows a derived table has: its TOP (n), or that of the derived table it
    selects from when every other table is LEFT JOINed on its one GROUP BY key (one row at most
    per row it meets); None when neither shows a bound."""
    if not isinstance(select, exp.Select):
        return None
    limit = select.args.get("limit")
    if limit is not None and isinstance(limit.expression, exp.Literal) and not limit.expression.is_string:
        return int(limit.expression.this)
    source = select.args.get("from_")
    if source is None or not isinstance(source.this, exp.Subquery):
        return None
    if not all(_grouped_on_its_key(join) for join in select.args.get("joins") or []):
        return None
    return derived_rows(source.this.this)


def _grouped_on_its_key(join: exp.Join) -> bool:
    """``LEFT JOIN (SELECT x AS k, ... GROUP BY x) a ON a.k = ...``: at most one row per row it meets."""
    on, derived = join.args.get("on"), join.this
    if join.side != "LEFT" or not isinstance(on, exp.EQ) or not isinstance(derived, exp.Subquery):
        return False
    inner, group = derived.this, derived.this.args.get("group")
    if not isinstance(inner, exp.Select) or group is None or len(group.expressions) != 1:
        return False
    column = next((c for c in (on.left, on.right) if isinstance(c, exp.Column) and c.table == derived.alias), None)
    if column is None:
        return False
    output = next((e for e in inner.expressions if e.alias_or_name == column.name), None)
    if output is None:
        return False
    return (output.this if isinstance(output, exp.Alias) else output) == group.expressions[0]


def analyse(sql: str, pk_columns: dict[str, str]) -> dict:
    """What the contract checks need to know about one batch, as plain data."""
    result: dict = {"placeholders": None, "foreign": foreign_syntax(sql), "error": None, "statements": []}
    try:
        statements = parse_batch(sql)
    except NotTSQL as exc:
        result["error"] = str(exc)
        result["placeholders"] = placeholder_count(sql)
        return result
    result["placeholders"] = sum(1 for s in statements if s.tree is not None for _ in s.tree.find_all(exp.Placeholder))
    for statement in statements:
        tree = statement.tree
        info = {"type": "Control" if tree is None else type(tree).__name__, "text": statement.text[:600]}
        if isinstance(tree, (exp.Insert, exp.Update, exp.Delete)):
            table = tree.find(exp.Table)
            info["table"] = table.name if table is not None else None
        if isinstance(tree, exp.Insert):
            info["rows"] = inserted_rows(tree)
        if isinstance(tree, (exp.Update, exp.Delete)):
            info["row_bound"] = row_bound(tree, pk_columns.get(info["table"], "id"))
        result["statements"].append(info)
    return result


def script_statements(script: str) -> list[str]:
    """The statements of a ``sqlmigrate`` script: comment lines dropped, one statement per ';'."""
    lines = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("--")]
    statements: list[str] = []
    current: list[str] = []
    for line in lines:
        if CONTROL.match(line) and not current:
            statements.append(line.strip())
            continue
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    if current:
        statements.append("\n".join(current).strip())
    return statements


# Bytes per key column as SQL Server stores it; nvarchar is UTF-16 (2 bytes a character).
_FIXED_WIDTH = {"BIGINT": 8, "INT": 4, "SMALLINT": 2, "TINYINT": 1, "BIT": 1, "DATE": 3, "DATETIME2": 8,
                "DATETIMEOFFSET": 10, "TIMESTAMPTZ": 10, "DATETIME": 8, "UNIQUEIDENTIFIER": 16, "FLOAT": 8, "DOUBLE": 8}
INDEX_KEY_LIMIT = 1700  # bytes, nonclustered index key (SQL Server 2016 and later, Azure SQL)


def _width(kind: exp.DataType) -> int | None:
    """Bytes of a column of this type in an index key; None for (max) types, which cannot be keys."""
    name = kind.this.name if hasattr(kind.this, "name") else str(kind.this)
    params = kind.expressions
    if name in ("NVARCHAR", "NCHAR", "VARCHAR", "CHAR", "VARBINARY", "BINARY", "TEXT"):
        if not params or params[0].sql(dialect=_DIALECT).upper() == "MAX":
            return None
        length = int(params[0].sql(dialect=_DIALECT))
        return length * (2 if name.startswith("N") or name == "TEXT" else 1)
    return _FIXED_WIDTH[name]


def index_keys(script: str) -> list[tuple[str, list[str], int | None]]:
    """(name, columns, key bytes) of every UNIQUE constraint and index a migration script creates."""
    widths: dict[tuple[str, str], int | None] = {}
    keys: list[tuple[str, str, list[str]]] = []
    for text in script_statements(script):
        if CONTROL.match(text):
            continue
        for statement in parse_batch(text):
            tree = statement.tree
            if not isinstance(tree, (exp.Create, exp.Alter)):
                continue
            if isinstance(tree, exp.Create) and tree.args.get("kind") == "INDEX":
                index = tree.this
                table = index.args["table"].name
                columns = [c.name for c in index.find(exp.IndexParameters).args.get("columns", [])]
                keys.append((index.name, table, columns))
                continue
            table = tree.find(exp.Table).name
            for column in tree.find_all(exp.ColumnDef):
                kind = column.args.get("kind")
                if kind is not None:
                    widths[(table, column.name)] = _width(kind)
                if any(isinstance(c.args.get("kind"), exp.UniqueColumnConstraint) for c in column.args.get("constraints", [])):
                    keys.append((f"{table}.{column.name} UNIQUE", table, [column.name]))
            for unique in tree.find_all(exp.UniqueColumnConstraint):
                if unique.this is not None and unique.find_ancestor(exp.ColumnDef) is None:
                    columns = [c.name for c in unique.this.expressions] if isinstance(unique.this, exp.Schema) else []
                    name = unique.find_ancestor(exp.Constraint)
                    keys.append((name.name if name is not None else "UNIQUE", table, columns))
    result = []
    for name, table, columns in keys:
        sizes = [widths.get((table, column)) for column in columns]
        result.append((name, columns, None if None in sizes or not sizes else sum(sizes)))
    return result
