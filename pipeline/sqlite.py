"""SQLite connections that create their database file's folder when they first open it.

Settings write nothing to disk at import (a read-only package, such as Azure Functions' Flex
Consumption or a read-only container, must be able to import them), so the default database's
``var/`` is not made there. SQLite itself creates a missing file but not a missing folder ("unable
to open database file"), so the folder is made here, right before connecting: only a process that
really opens a SQLite database writes anything, and only where that database lives.

Used as Django's ``OPTIONS["factory"]`` (handed to ``sqlite3.connect``) rather than a custom
``ENGINE``, so the engine stays ``django.db.backends.sqlite3`` for everything that checks it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def _file_path(database: str) -> Path | None:
    """The file behind ``database`` (a path or a ``file:`` URI), or None for in-memory databases."""
    if database == ":memory:" or database == "":
        return None
    if database.startswith("file:"):
        # Django's in-memory test databases (file:memorydb_default?mode=memory&cache=shared).
        if "mode=memory" in database:
            return None
        database = database[len("file:"):].split("?", 1)[0]
    return Path(database)


class ParentCreatingConnection(sqlite3.Connection):
    def __init__(self, database, *args, **kwargs):
        path = _file_path(str(database))
        if path is not None and not path.parent.is_dir():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                # A sqlite3 error, so that Django reports it as the database being unavailable
                # (OperationalError), like any other database that cannot be opened.
                raise sqlite3.OperationalError(
                    f"unable to open database file {path}: cannot create its folder ({exc.strerror}); "
                    "on a read-only install set DATABASE_URL to a writable place"
                ) from exc
        super().__init__(database, *args, **kwargs)
