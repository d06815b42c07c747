"""A stand-in for the pyodbc connection: it records every statement mssql-django sends, and answers.

mssql-django builds its T-SQL exactly as it would for a real server (the server version and the
Azure flag come from its own cache, filled in by ``install``); only the last step, the driver, is
replaced. To give plausible answers (ids of new rows, the rows a run reads back, row counts), each
statement is translated by sqlglot from T-SQL to SQLite and run on a SQLite database that has the
project's schema. So the pipeline runs for real, reads its own writes, and its reports can be
checked, while every statement it sent is kept as SQL Server would have received it.

This is not a model of SQL Server: locking, isolation, implicit transactions and error numbers are
not emulated; atomic blocks map to SQLite transactions only so that a rollback undoes its writes.
"""

from __future__ import annotations

import re
import sqlite3
import threading
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


class Shadow:
    """The SQLite database that answers; one for every connection of the process."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.identity = None
        self.db.create_function("SCOPE_IDENTITY", 0, lambda: self.identity)
        self.db.create_function("SCHEMA_NAME", 0, lambda: "dbo")
        self._catalog()
        self.lock = threading.RLock()
        self.log: list[Recorded] = []
        self.phase = "setup"
        self.connection_strings: list[str] = []

    def _catalog(self) -> None:
        """The bits of SQL Server's catalog that mssql-django's introspection reads (table list)."""
        self.db.execute("ATTACH DATABASE ':memory:' AS INFORMATION_SCHEMA")
        self.db.execute("ATTACH DATABASE ':memory:' AS sys")
        self.db.execute("CREATE TABLE INFORMATION_SCHEMA.TABLES "
                        "(TABLE_CATALOG TEXT, TABLE_SCHEMA TEXT, TABLE_NAME TEXT, TABLE_TYPE TEXT)")
        self.db.execute("INSERT INTO INFORMATION_SCHEMA.TABLES SELECT 'pipeline', 'dbo', name, "
                        "CASE type WHEN 'view' THEN 'VIEW' ELSE 'BASE TABLE' END FROM main.sqlite_master "
                        "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'")
        self.db.execute("CREATE TABLE sys.tables (name TEXT, object_id INTEGER)")
        self.db.execute("CREATE TABLE sys.extended_properties (major_id INTEGER, minor_id INTEGER, name TEXT, value TEXT)")

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
