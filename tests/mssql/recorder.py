"""A stand-in for the pyodbc connection: it records every statement mssql-django sends, and answers.

mssql-django builds its T-SQL exactly as it would for a real server (the server version and the
Azure flag come from its own cache, filled in by ``install``); only the last step, the driver, is
replaced. To give plausible answers (ids of new rows, the rows a run reads back, row counts), each
statement is translated by sqlglot from T-SQL to SQLite and run on a SQLite database that has the
project's schema. So the pipeline runs for real, reads its own writes, and its reports can be
checked, while every statement it sent is kept as SQL Server would have received it.
T-SQL's ``UPDATE t SET ... FROM t JOIN (...) s ON ...`` (the recount) is answered as SQLite's
``UPDATE t SET ... FROM (...) s WHERE ...``, which names the target once.

This is not a model of SQL Server: locking, isolation, implicit transactions and error numbers are
not emulated; atomic blocks map to SQLite transactions only so that a rollback undoes its writes.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from uuid import UUID

from sqlglot import exp

from tests.mssql import tsql

DRIVER_NAME = "libmsodbcsql-18.5.so.1.1"  # what the Microsoft driver reports; mssql-django checks it
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:[+-]\d{2}:\d{2})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Recorded:
    phase: str
    sql: str  # as the driver received it: '?' placeholders
    params: int  # parameters bound to this execution
    rowcount: int  # rows the last statement of the batch touched (-1 for a SELECT)
    many: bool = False  # one execution of an executemany()

    def as_dict(self) -> dict:
        return asdict(self)


def _adapt(value):
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.isoformat(" ", timespec="microseconds")
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value


def _convert(value):
    if isinstance(value, str):
        if _DATETIME.match(value):
            moment = datetime.fromisoformat(value)
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        if _DATE.match(value):
            return date.fromisoformat(value)
    return value


# The catalog views mssql-django's schema editor reads to find constraint and index names before
# it alters a column (ALTER COLUMN must not touch a column an index or constraint covers), with
# the columns it reads. ``Shadow.describe`` fills them from a SQLite schema.
_CATALOG = {
    "INFORMATION_SCHEMA.KEY_COLUMN_USAGE": "table_schema, table_name, constraint_name, column_name, ordinal_position",
    "INFORMATION_SCHEMA.TABLE_CONSTRAINTS": "table_schema, table_name, constraint_name, constraint_type",
    "INFORMATION_SCHEMA.CONSTRAINT_COLUMN_USAGE": "table_schema, table_name, constraint_name, column_name",
    "sys.tables": "name, object_id, schema_id",
    "sys.schemas": "schema_id, name",
    "sys.columns": "object_id, column_id, name",
    "sys.indexes": "object_id, index_id, name, is_unique, is_unique_constraint, is_primary_key, type, type_desc, "
                   "has_filter, filter_definition",
    "sys.index_columns": "object_id, index_id, index_column_id, key_ordinal, column_id, is_descending_key, "
                         "is_included_column",
    "sys.foreign_keys": "object_id, name, parent_object_id, referenced_object_id",
    "sys.foreign_key_columns": "constraint_object_id, parent_object_id, parent_column_id, referenced_object_id, "
                               "referenced_column_id",
    "sys.default_constraints": "name, parent_object_id, parent_column_id",
}
# sqlglot writes T-SQL's SCHEMA_NAME() as this literal for SQLite, so catalog rows carry it.
_SCHEMA = "main"
_NAMED_UNIQUE = re.compile(r'CONSTRAINT "([^"]+)" UNIQUE \(([^)]*)\)')
_COLUMN_CHECK = re.compile(r'CHECK \("(\w+)"')
_INDEX_FILTER = re.compile(r"\sWHERE\s(.+)$", re.S)


class Shadow:
    """The SQLite database that answers; one for every connection of the process."""

    def __init__(self, path: str):
        self.identity = None
        self._objects: dict[str, int] = {}  # catalog: table name -> object_id
        self._columns: dict[tuple[int, int], str] = {}  # (object_id, column_id) -> column name
        self.db = self._open(path)
        self.lock = threading.RLock()
        self.log: list[Recorded] = []
        self.phase = "setup"
        self.connection_strings: list[str] = []

    def _open(self, path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.create_function("SCOPE_IDENTITY", 0, lambda: self.identity)
        db.create_function("SCHEMA_NAME", 0, lambda: "dbo")
        db.create_function("SCHEMA_ID", 1, lambda name: 1)
        db.create_function("OBJECT_ID", 1, lambda name: self._objects.get(re.sub(r"[\[\]]", "", str(name)).removeprefix("dbo.")))
        db.create_function("OBJECT_NAME", 1, lambda oid: next((n for n, o in self._objects.items() if o == oid), None))
        db.create_function("COL_NAME", 2, lambda oid, cid: self._columns.get((oid, cid)))
        self._catalog(db)
        self.describe(db)
        return db

    def _catalog(self, db: sqlite3.Connection) -> None:
        """The bits of SQL Server's catalog that mssql-django's introspection reads (table list,
        constraints and indexes: see ``describe``)."""
        db.execute("ATTACH DATABASE ':memory:' AS INFORMATION_SCHEMA")
        db.execute("ATTACH DATABASE ':memory:' AS sys")
        db.execute("CREATE TABLE INFORMATION_SCHEMA.TABLES "
                   "(TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, TABLE_TYPE TEXT)")
        db.execute("INSERT INTO INFORMATION_SCHEMA.TABLES SELECT 'pipeline', 'dbo', name, "
                   "CASE type WHEN 'view' THEN 'VIEW' ELSE 'BASE TABLE' END FROM main.sqlite_master "
                   "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")
        db.execute("CREATE TABLE sys.extended_properties (major_id INTEGER, minor_id INTEGER, name TEXT, value TEXT)")
        for table, columns in _CATALOG.items():
            db.execute(f"CREATE TABLE {table} ({columns})")

    def describe(self, db: sqlite3.Connection | None = None, *, path: str | None = None) -> None:
        """Fill the catalog with the schema of the SQLite database at ``path`` (default: the one
        answering) as SQL Server would list it: a primary key per table, each UNIQUE constraint,
        index, foreign key and CHECK constraint, under the names Django gave them (SQLite keeps no
        name for a column's UNIQUE or CHECK: those get SQL Server-like ones).

        mssql-django reads it while writing ``ALTER COLUMN`` (also for ``sqlmigrate``, which a
        real server answers from the database the migration is about to change): ``path`` lets
        the capture describe the schema as it is before each migration.
        """
        db = db or self.db
        source = sqlite3.connect(path) if path else db
        prefix = "" if path else "main."
        tables = [name for (name,) in source.execute(
            f"SELECT name FROM {prefix}sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        objects = {table: number for number, table in enumerate(tables, 1)}
        columns: dict[tuple[int, int], str] = {}
        column_ids: dict[str, dict[str, int]] = {}
        for table in tables:
            info = source.execute(f'PRAGMA {prefix}table_info("{table}")').fetchall()
            column_ids[table] = {name: cid + 1 for cid, name, *_ in info}
            columns.update({(objects[table], cid + 1): name for cid, name, *_ in info})
        rows: dict[str, list[tuple]] = {name: [] for name in _CATALOG}
        rows["sys.schemas"].append((1, "dbo"))
        fk_number = 1_000_000

        for table in tables:
            oid, ids = objects[table], column_ids[table]
            sql = source.execute(f"SELECT sql FROM {prefix}sqlite_master WHERE type = 'table' AND name = ?",
                                 (table,)).fetchone()[0] or ""
            rows["sys.tables"].append((table, oid, 1))
            rows["sys.columns"] += [(oid, cid, name) for name, cid in ids.items()]

            def constraint(name: str, kind: str, cols: list[str]) -> None:
                rows["INFORMATION_SCHEMA.TABLE_CONSTRAINTS"].append((_SCHEMA, table, name, kind))
                usage = "KEY_COLUMN_USAGE" if kind != "CHECK" else "CONSTRAINT_COLUMN_USAGE"
                for position, col in enumerate(cols, 1):
                    rows[f"INFORMATION_SCHEMA.{usage}"].append(
                        (_SCHEMA, table, name, col) + ((position,) if kind != "CHECK" else ()))

            def index(name: str, cols: list[str], *, unique: bool, unique_constraint=False, primary=False,
                      condition: str | None = None) -> None:
                number = len([r for r in rows["sys.indexes"] if r[0] == oid]) + 1
                kind, desc = (1, "CLUSTERED") if primary else (2, "NONCLUSTERED")
                rows["sys.indexes"].append((oid, number, name, int(unique), int(unique_constraint), int(primary),
                                            kind, desc, int(condition is not None), condition))
                rows["sys.index_columns"] += [(oid, number, position, position, ids[col], 0, 0)
                                              for position, col in enumerate(cols, 1)]

            info = source.execute(f'PRAGMA {prefix}table_info("{table}")').fetchall()
            pk = [name for _, name, _, _, _, position in sorted(info, key=lambda r: r[5]) if position]
            if pk:
                constraint(f"PK__{table}", "PRIMARY KEY", pk)
                index(f"PK__{table}", pk, unique=True, primary=True)
            named = {tuple(c.strip().strip('"') for c in cols.split(",")): name for name, cols in _NAMED_UNIQUE.findall(sql)}
            for _, name, unique, origin, _ in source.execute(f'PRAGMA {prefix}index_list("{table}")').fetchall():
                if origin == "pk":
                    continue
                cols = [col for _, _, col in sorted(source.execute(f'PRAGMA {prefix}index_info("{name}")').fetchall())]
                if origin == "u":  # a UNIQUE constraint of the CREATE TABLE statement
                    name = named.get(tuple(cols), f"UQ__{table}__{'_'.join(cols)}")
                    constraint(name, "UNIQUE", cols)
                    index(name, cols, unique=True, unique_constraint=True)
                else:
                    text = source.execute(f"SELECT sql FROM {prefix}sqlite_master WHERE type = 'index' AND name = ?",
                                          (name,)).fetchone()[0] or ""
                    found = _INDEX_FILTER.search(text)
                    index(name, cols, unique=bool(unique), condition=found.group(1) if found else None)
            for fk in source.execute(f'PRAGMA {prefix}foreign_key_list("{table}")').fetchall():
                _, _, referenced, column, to = fk[:5]
                fk_number += 1
                name = f"{table}_{column}_fk_{referenced}_{to}"
                constraint(name, "FOREIGN KEY", [column])
                rows["sys.foreign_keys"].append((fk_number, name, oid, objects[referenced]))
                rows["sys.foreign_key_columns"].append(
                    (fk_number, oid, ids[column], objects[referenced], column_ids[referenced][to]))
            for column in dict.fromkeys(_COLUMN_CHECK.findall(sql)):
                constraint(f"{table}_{column}_check", "CHECK", [column])

        if path:
            source.close()
        for table, values in rows.items():
            db.execute(f"DELETE FROM {table}")
            if values:
                marks = ", ".join("?" * len(values[0]))
                db.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
        self._objects, self._columns = objects, columns

    @contextmanager
    def answering_from(self, path: str) -> Iterator[None]:
        """Answer from the SQLite database at ``path`` for a while; the log goes on as before."""
        with self.lock:
            saved, self.db = self.db, self._open(path)
        try:
            yield
        finally:
            with self.lock:
                self.db.close()
                self.db = saved
                self.describe()

    def record(self, sql: str, params, rowcount: int, *, many: bool = False) -> None:
        self.log.append(Recorded(self.phase, sql, len(params or ()), rowcount, many))

    def run(self, sql: str, params, connection: RecordingConnection) -> tuple[list | None, list | None, int]:
        """Execute one batch; returns (description, rows of the last result set, rowcount)."""
        params = [_adapt(value) for value in params or ()]
        steps = _plan(sql, len(params))
        description, rows, rowcount = None, None, -1
        position, variables = 0, {}
        for kind, arg, count in steps:
            bound, position = params[position:position + count], position + count
            if kind == "declare":
                variables.update(zip(arg, bound))
            elif kind == "control":
                self._control(arg)
            elif kind == "script":
                self.db.execute(arg)
            elif kind == "trancount":
                description, rows, rowcount = [("value",)], [(0 if connection.autocommit else 1,)], -1
            elif kind == "now":
                description, rows, rowcount = [("value",)], [(datetime.now(),)], -1
            else:
                cursor = self.db.execute(arg, variables if kind == "with-variables" else bound)
                if cursor.description is not None:
                    description = cursor.description
                    rows = [tuple(_convert(v) for v in row) for row in cursor.fetchall()]
                    rowcount = -1
                else:
                    rowcount = cursor.rowcount
                    if kind == "insert":
                        self.identity = cursor.lastrowid
        return description, rows, rowcount

    def _control(self, text: str) -> None:
        words = text.upper().replace("[", "").replace("]", "").split()
        if words[0] == "SAVE":
            self.db.execute(f'SAVEPOINT "{words[2]}"')
        elif words[0] == "ROLLBACK" and len(words) > 2:
            self.db.execute(f'ROLLBACK TO "{words[2]}"')

    # --- transactions, driven by the connection's autocommit / commit / rollback ---

    def begin(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")


def _sqlite_compatible(node: exp.Expression):
    if isinstance(node, exp.ColumnConstraint) and isinstance(node.args.get("kind"), exp.CollateColumnConstraint):
        return None  # COLLATE DATABASE_DEFAULT: SQLite has no such collation
    return node


def _update_from_joined_target(tree: exp.Expression) -> exp.Expression:
    """T-SQL's ``UPDATE t SET ... FROM t JOIN s ON c WHERE w`` names the target twice; SQLite's
    ``UPDATE ... FROM`` (as PostgreSQL's) names it once, a second ``t`` in FROM would be another
    instance of the table: written ``UPDATE t SET ... FROM s WHERE c AND w`` for SQLite."""
    source = tree.args.get("from_")
    if not isinstance(tree, exp.Update) or source is None or not isinstance(source.this, exp.Table):
        return tree
    if source.this.name != tree.this.name or source.this.alias:
        return tree
    joins = source.this.args.get("joins") or []
    if len(joins) != 1 or joins[0].side or joins[0].args.get("on") is None:
        raise AssertionError(f"the recorder reads UPDATE t ... FROM t INNER JOIN s ON ... only: {tree.sql(dialect='tsql')[:200]}")
    tree = tree.copy()
    join = tree.args["from_"].this.args["joins"][0]
    where = tree.args.get("where")
    condition = join.args["on"] if where is None else exp.and_(join.args["on"], where.this)
    tree.set("from_", exp.From(this=join.this))
    tree.set("where", exp.Where(this=condition))
    return tree


_PLANS: dict[str, list[tuple[str, object, int]]] = {}


def _plan(sql: str, count: int) -> list[tuple[str, object, int]]:
    """How to answer a batch on SQLite: (kind, SQLite text or data, parameters it takes) per step.

    Cached by text, like the parse (bulk batches of one size share their SQL). sqlglot writes the
    '?' placeholders in the order they were read, so each step takes the next ``count`` values.
    """
    steps = _PLANS.get(sql)
    if steps is None:
        steps = []
        for statement in tsql.parse_batch(sql):
            tree = statement.tree
            marks = 0 if tree is None else sum(1 for _ in tree.find_all(exp.Placeholder))
            if tree is None:
                steps.append(("control", statement.text, 0))
            elif isinstance(tree, exp.Set):
                continue
            elif isinstance(tree, exp.Declare):
                names = [variable.name for item in tree.expressions
                         for variable in (item.this if isinstance(item.this, list) else [item.this])]
                steps.append(("declare", names, marks))
            elif isinstance(tree, exp.IfBlock):
                # mssql-django's "IF OBJECT_ID(...) IS NOT NULL DROP TABLE #t" before a temp table.
                drops = [drop.copy() for drop in tree.args["true"].find_all(exp.Drop)]
                for drop in drops:
                    drop.set("exists", True)
                    steps.append(("script", drop.sql(dialect="sqlite"), 0))
            elif isinstance(tree, exp.Select) and "@@TRANCOUNT" in statement.text.upper():
                # The driver's manual-commit mode keeps a transaction open; mssql-django relies on
                # it (it turns autocommit back on only when @@TRANCOUNT > 0).
                steps.append(("trancount", None, 0))
            elif isinstance(tree, exp.Select) and re.search(r"\b(SYSDATETIME|GETDATE)\s*\(", statement.text, re.I):
                steps.append(("now", None, 0))
            else:
                if tree.find(exp.CollateColumnConstraint) is not None:
                    tree = tree.transform(_sqlite_compatible)
                tree = _update_from_joined_target(tree)
                text = tree.sql(dialect="sqlite")
                kind = "insert" if isinstance(tree, exp.Insert) else "statement"
                if marks == 0 and "@" in text:
                    kind = "with-variables"  # the SELECT after a DECLARE
                steps.append((kind, text, marks))
        _PLANS[sql] = steps
    expected = sum(step[2] for step in steps)
    if expected != count:
        raise AssertionError(f"{expected} placeholders but {count} parameters in: {sql[:200]}")
    return steps


class RecordingCursor:
    def __init__(self, shadow: Shadow, connection: RecordingConnection):
        self.shadow = shadow
        self.connection = connection
        self.description = None
        self.rowcount = -1
        self._rows: list = []

    def execute(self, sql: str, params=()):
        with self.shadow.lock:
            self.connection.before_statement()
            try:
                description, rows, rowcount = self.shadow.run(sql, params, self.connection)
            except Exception as exc:
                self.shadow.record(sql, params, -2)
                exc.add_note(f"T-SQL batch: {sql[:2000]}")
                raise
            self.shadow.record(sql, params, rowcount)
        self.description = description
        self._rows = list(rows or [])
        self.rowcount = rowcount
        return self

    def executemany(self, sql: str, seq_of_params):
        total = 0
        for params in seq_of_params:
            self.execute(sql, params)
            self.shadow.log[-1].many = True
            total += max(self.rowcount, 0)
        self.rowcount = total
        return self

    def fetchone(self):
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int = 1):
        rows, self._rows = self._rows[:size], self._rows[size:]
        return rows

    def fetchall(self):
        rows, self._rows = self._rows, []
        return rows

    def nextset(self):
        return False

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # pyodbc commits on leaving a cursor's with-block when autocommit is off and all went well.
        if exc_type is None and not self.connection.autocommit:
            self.connection.commit()
        self.close()

    def close(self) -> None:
        self._rows = []

    def __iter__(self):
        while self._rows:
            yield self._rows.pop(0)


class RecordingConnection:
    def __init__(self, shadow: Shadow):
        self.shadow = shadow
        self._autocommit = False  # pyodbc.connect's default
        self._pending_begin = True
        self.timeout = 0

    def cursor(self) -> RecordingCursor:
        return RecordingCursor(self.shadow, self)

    def getinfo(self, kind):
        return DRIVER_NAME

    def add_output_converter(self, *args) -> None:
        pass

    def setencoding(self, **kwargs) -> None:
        pass

    def setdecoding(self, *args, **kwargs) -> None:
        pass

    @property
    def autocommit(self) -> bool:
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value: bool) -> None:
        if value and not self._autocommit:
            self.shadow.commit()  # ODBC: turning autocommit on commits the open transaction
        self._autocommit = value
        self._pending_begin = not value

    def before_statement(self) -> None:
        if not self._autocommit and self._pending_begin:
            self.shadow.begin()
            self._pending_begin = False

    def commit(self) -> None:
        self.shadow.commit()
        self._pending_begin = not self._autocommit

    def rollback(self) -> None:
        self.shadow.rollback()
        self._pending_begin = not self._autocommit

    def close(self) -> None:
        pass


_SHADOW: Shadow | None = None


def install(*, shadow_path: str, alias: str, version: int, azure: bool) -> Shadow:
    """Make mssql-django connect through the recorder, as SQL Server ``version`` (or Azure SQL).

    ``pyodbc.connect`` itself is replaced, so mssql-django's own ``get_new_connection`` runs:
    the ODBC connection string it builds is kept (password masked) in ``Shadow.connection_strings``.
    """
    global _SHADOW
    import pyodbc
    from mssql.base import DatabaseWrapper

    _SHADOW = Shadow(shadow_path)
    DatabaseWrapper._known_versions[alias] = version
    DatabaseWrapper._known_azures[alias] = azure

    def connect(connection_string: str, **kwargs) -> RecordingConnection:
        _SHADOW.connection_strings.append(re.sub(r"(PWD=)(\{[^}]*\}|[^;]*)", r"\1***", connection_string))
        return RecordingConnection(_SHADOW)

    pyodbc.connect = connect
    return _SHADOW
