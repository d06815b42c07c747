"""Presentation helpers shared by the management commands: progress bar, tables, JSON, exit codes.

Interface code only: no domain decisions. Everything is written through the command's
``self.stdout`` / ``self.stderr`` so ``call_command(stdout=...)`` captures it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from django import db
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from ingest.errors import RunError, UsageError, first_line

# Exit statuses shared by every pipeline command (documented in the README).
EXIT_OK = 0  # the run completed (some sources may have failed: they are reported and recorded)
EXIT_RUN_FAILED = 1  # the run itself could not work (database unreachable)
EXIT_USAGE = 2  # bad arguments; manage.py also exits 2 on a configuration error
EXIT_UNHEALTHY = 3  # pipeline_status: the pipeline needs attention


class PipelineCommand(BaseCommand):
    """Base of the pipeline's commands, and the one place where errors become what the user sees.

    A ``UsageError`` (bad arguments, an unknown --source) ends the command with its sentence and
    exit status 2; a ``RunError`` (the run cannot work) with its sentence and exit status 1, and
    with --json stdout still gets its one JSON object, so a script reading stdout always gets a
    status. On the command line a database error that got through (unreachable, or refusing the
    work) is treated like a ``RunError`` instead of a traceback; callers of ``call_command``
    (Azure timers, tests) keep getting the database's own exception.
    """

    translate_database_errors = False  # set on the command line only (run_from_argv)

    def run_from_argv(self, argv):
        self.translate_database_errors = True
        return super().run_from_argv(argv)

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except UsageError as exc:
            raise usage_error(str(exc)) from exc
        except RunError as exc:
            raise self._run_failed(missing_driver_sentence(exc) or str(exc), options) from exc
        except db.Error as exc:
            # The base class: through ODBC Driver 18 a deadlock arrives as django.db.Error itself,
            # which is not a DatabaseError.
            if not self.translate_database_errors:
                raise
            raise self._run_failed(database_sentence(exc), options) from exc

    def _run_failed(self, message: str, options: dict) -> CommandError:
        if options.get("json"):
            print_json(self.stdout, {"run_id": None, "status": "failed", "error": message})
        return run_error(message)


def database_sentence(exc: BaseException) -> str:
    """One sentence for a database error: a missing ODBC driver, unreachable, or refusing the work."""
    unreachable = isinstance(exc, (db.OperationalError, db.InterfaceError))
    what = "The database is unreachable" if unreachable else "The database refused the work"
    return missing_driver_sentence(exc) or f"{what}: {first_line(exc, 300)}"


# Primary keys are BigAutoField on every backend: a larger id overflows in the database itself.
ID_MAX = 2**63 - 1


def missing_driver_sentence(exc: BaseException) -> str | None:
    """One sentence for "Can't open lib 'ODBC Driver 18 for SQL Server'" (no ODBC driver), or None."""
    from ingest.retry import missing_odbc_driver

    driver = missing_odbc_driver(exc)
    if driver is None:
        return None
    named = f" {driver!r}" if driver else ""
    return (f"The ODBC driver{named} is not installed: install msodbcsql18 from Microsoft's package repository "
            "(README, \"Installing the driver\"), or use the driver inside the mssql-python wheel (it brings "
            "mssql-python-odbc) by adding python_driver=mssql_python to DATABASE_URL.")


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_USAGE)


def int_option(value, option: str, *, low: int, high: int) -> int:
    """An integer option within ``low``..``high``, or a usage error before the database is touched.

    Commands check every integer option here, in ``handle``: argparse's ``type=int`` only runs on
    the command line, while ``call_command(limit=...)`` hands the keyword over unparsed.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value).strip())
        except ValueError:
            raise usage_error(f"{option} must be a whole number, not {value!r}.") from None
    if not low <= value <= high:
        raise usage_error(f"{option} must be between {low} and {high}, not {value}.")
    return value


def seconds_option(value, option: str, *, high: float) -> float:
    """A number of seconds above 0 and at most ``high`` (finite: nan and inf are refused), as
    ``int_option`` does for integers."""
    try:
        seconds = float(str(value).strip()) if not isinstance(value, (int, float)) or isinstance(value, bool) else float(value)
    except ValueError:
        raise usage_error(f"{option} must be a number of seconds, not {value!r}.") from None
    if not 0 < seconds <= high:  # also false for nan
        raise usage_error(f"{option} must be between 0 and {high:g} seconds, not {value}.")
    return seconds


def id_options(values, option: str, *, what: str) -> list[int]:
    """Repeatable id options (``--entry 3 --entry 5``): each a positive id that fits the database."""
    ids = []
    for value in values:
        try:
            ids.append(int_option(value, option, low=1, high=ID_MAX))
        except CommandError:
            raise usage_error(f"{option} takes positive {what} ids (1 to {ID_MAX}), not {value}.") from None
    return ids


def run_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_RUN_FAILED)


def source_ids(selectors: Sequence[str]) -> list[int]:
    """``--source`` values (ids or feed URLs) to ids; a malformed or unknown one is a usage error."""
    from ingest.services.sources import sources_resolve

    for value in selectors:
        text = str(value).strip()
        if text.isdigit() and not (text.isdecimal() and 1 <= int(text) <= ID_MAX):
            raise usage_error(f"--source takes a source id from 1 to {ID_MAX} or a feed URL, not {text!r}.")
    return sources_resolve(selectors) if selectors else []


def progress_bar(stream: OutputWrapper, *, label: str, options: dict) -> ProgressBar:
    """A bar on a terminal only: not with --json, not at verbosity 0, not when piped."""
    enabled = not options.get("json") and options.get("verbosity", 1) >= 1 and is_terminal(stream)
    return ProgressBar(stream, label=label, enabled=enabled)


def print_json(out: OutputWrapper, payload: dict) -> None:
    out.write(json.dumps(payload, default=str, ensure_ascii=False), ending="\n")


def is_terminal(stream) -> bool:
    target = getattr(stream, "_out", stream)
    return bool(getattr(target, "isatty", lambda: False)())


class ProgressBar:
    """A one-line progress bar redrawn in place on a terminal; silent when disabled."""

    def __init__(self, stream: OutputWrapper | None, *, label: str, enabled: bool, width: int = 30):
        self.stream = stream
        self.label = label
        self.enabled = enabled and stream is not None
        self.width = width
        self.total = 0
        self.started = time.monotonic()
        self._last_draw = 0.0

    def start(self, total: int) -> None:
        self.total = total
        self.started = time.monotonic()
        self.update(0)

    def update(self, done: int, note: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and done < self.total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = done / self.total if self.total else 1.0
        filled = int(self.width * fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        elapsed = now - self.started
        line = f"\r{self.label} [{bar}] {done}/{self.total} {elapsed:5.1f}s {note[:40]:<40}"
        self.stream.write(line, ending="")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.total, force=True)
            self.stream.write("", ending="\n")


def table(headers: Sequence[str], rows: Sequence[Sequence], *, align_right: set[int] = frozenset()) -> str:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def fmt(row):
        return "  ".join(cell.rjust(widths[i]) if i in align_right else cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in cells[1:]]
    return "\n".join(lines)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
