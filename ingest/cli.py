"""Presentation helpers shared by the management commands: progress bar, tables, colour, JSON,
verbosity, exit codes.

Interface code only: no domain decisions. Everything is written through the command's
``self.stdout`` / ``self.stderr`` (or the file they wrap) so ``call_command(stdout=...)`` captures
it. Terminal-ness is decided from that file: piped output is plain text, no escape codes, no bar.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from django import db
from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from rich.color import ColorSystem
from rich.console import Console
from rich.progress import Progress, ProgressColumn
from rich.style import Style
from rich.text import Text

from ingest.db import no_query_log
from ingest.errors import RunError, UsageError, first_line

# Exit statuses shared by every pipeline command (documented in the README).
EXIT_OK = 0  # the run completed (some sources may have failed: they are reported and recorded)
EXIT_RUN_FAILED = 1  # the run itself could not work (database unreachable)
EXIT_USAGE = 2  # bad arguments; manage.py also exits 2 on a configuration error
EXIT_UNHEALTHY = 3  # pipeline_status: the pipeline needs attention
EXIT_SOURCES_UNHEALTHY = 4  # pipeline_status: the pipeline works, too many feeds are failing or blocked


log = logging.getLogger(__name__)
# What the "command started" debug record leaves out of the options (Django's own, or streams).
_NOT_OPTIONS = {"stdout", "stderr", "skip_checks", "settings", "pythonpath", "traceback", "no_color", "force_color"}


class PipelineCommand(BaseCommand):
    """Base of the pipeline's commands, and the one place where errors become what the user sees.

    A ``UsageError`` (bad arguments, an unknown --source) ends the command with its sentence and
    exit status 2; a ``RunError`` (the run cannot work) with its sentence and exit status 1, and
    with --json stdout still gets its one JSON object, so a script reading stdout always gets a
    status. On the command line a database error that got through (unreachable, or refusing the
    work) is treated like a ``RunError`` instead of a traceback; callers of ``call_command``
    (Azure timers, tests) keep getting the database's own exception. Every command runs without
    Django's DEBUG query log (``ingest.db.no_query_log``), the Azure timers' too (``call_command``).
    """

    translate_database_errors = False  # set on the command line only (run_from_argv)

    def run_from_argv(self, argv):
        self.translate_database_errors = True
        return super().run_from_argv(argv)

    options: dict = {}  # this run's options, for the printing helpers (--no-color, --force-color)

    def execute(self, *args, **options):
        self.options = options
        # A command may run for minutes (an ingest run, a recount, a prune): with DJANGO_DEBUG=1
        # Django would keep every statement's SQL in memory (ingest.db.no_query_log).
        with log_verbosity(options.get("verbosity", 1)), no_query_log():
            log.debug("command started", extra={"command": self.__module__.rsplit(".", 1)[-1],
                                                "options": {k: v for k, v in options.items() if k not in _NOT_OPTIONS}})
            return self._execute(*args, **options)

    def _execute(self, *args, **options):
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


# Verbosity 3 shows DEBUG records of the project's loggers (LOGGING names them in pipeline/settings.py).
PROJECT_LOGGERS = ("ingest", "pipeline")


@contextmanager
def log_verbosity(verbosity):
    """For the command's duration: at verbosity 0 the "stderr" log handler shows WARNING and above
    only; at 3 it and the project's loggers show DEBUG. Restored afterwards."""
    try:
        verbosity = int(verbosity)
    except (TypeError, ValueError):
        verbosity = 1
    handler = stderr_log_handler()
    saved_handler = handler.level if handler else None
    saved_loggers = {name: logging.getLogger(name).level for name in PROJECT_LOGGERS}
    if handler is not None and verbosity <= 0:
        handler.setLevel(max(handler.level, logging.WARNING))
    elif verbosity >= 3:
        if handler is not None:
            handler.setLevel(logging.DEBUG)
        for name in PROJECT_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield
    finally:
        if handler is not None:
            handler.setLevel(saved_handler)
        for name, level in saved_loggers.items():
            logging.getLogger(name).setLevel(level)


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


def underlying(stream):
    """The file an ``OutputWrapper`` writes to (terminal-ness is decided from it)."""
    return getattr(stream, "_out", stream)


def is_terminal(stream) -> bool:
    return bool(getattr(underlying(stream), "isatty", lambda: False)())


# --- colour: for meaning only, and only on a terminal ----------------------------------------------

# What a colour means; nothing else is coloured (no bold, no colour on plain lines).
MEANINGS = {"error": "red", "warning": "yellow", "success": "green"}


def wants_colour(stream, options: dict | None = None) -> bool:
    """Colour on a terminal, unless --no-color or NO_COLOR (https://no-color.org) says otherwise."""
    options = options or {}
    if options.get("no_color") or os.environ.get("NO_COLOR"):
        return False
    return bool(options.get("force_color")) or is_terminal(stream)


def paint(text: str, meaning: str | None, *, colour: bool) -> str:
    if not colour or not meaning:
        return text
    return Style.parse(MEANINGS[meaning]).render(text, color_system=ColorSystem.STANDARD)


def say(stream: OutputWrapper, text: str, meaning: str | None = None, *, options: dict | None = None,
        ending: str | None = None) -> None:
    """One line on ``stream``, coloured for its meaning on a terminal. Django's own styling of stderr
    (everything bold red, as if an error) is not applied."""
    stream.write(paint(text, meaning, colour=wants_colour(stream, options)), style_func=lambda x: x, ending=ending)


@dataclass(frozen=True)
class Styled:
    """A table cell with a meaning (``error``, ``warning``, ``success``): coloured on a terminal,
    measured without the colour's escape codes."""

    text: str
    meaning: str | None = None

    def __str__(self) -> str:
        return self.text


# --- progress: a live bar on stderr, log records and per-item lines printed above it ---------------


class _ConsoleLines(io.TextIOBase):
    """A stream for the log handler while a bar is live: whole lines, printed above the bar."""

    def __init__(self, console: Console):
        self.console = console
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            *whole, self._partial = (self._partial + text).split("\n")
        for line in whole:
            self.console.print(Text(line), soft_wrap=True, highlight=False)
        return len(text)

    def flush(self) -> None:
        pass


def stderr_log_handler() -> logging.Handler | None:
    """The console handler of LOGGING (pipeline/settings.py), by its name "stderr"."""
    return logging._handlers.get("stderr")  # noqa: SLF001 (logging.getHandlerByName is 3.12+)


class _BarLine(ProgressColumn):
    """``ingest [#######-------] 3/7 1.2s The Index Page``: plain text, no colour (it means nothing)."""

    def __init__(self, label: str, width: int = 30):
        super().__init__()
        self.label, self.width = label, width

    def render(self, task) -> Text:
        total = task.total or 0
        filled = int(self.width * (task.completed / total if total else 1.0))
        bar = "#" * filled + "-" * (self.width - filled)
        return Text(f"{self.label} [{bar}] {int(task.completed)}/{int(total)} {task.elapsed or 0.0:5.1f}s "
                    f"{task.fields.get('note', '')}")


class ProgressBar:
    """A live progress bar (rich) on a terminal; silent when disabled.

    While it runs, the records of the "stderr" log handler (formatted by the project's formatter, as
    always) and the per-item lines of ``line()`` are printed as whole lines above the bar, and the
    bar is erased when it finishes: no log text on the bar's line, no stale bars in the scrollback.
    Use it as a context manager so the terminal is restored whatever happens.
    """

    def __init__(self, stream: OutputWrapper | None, *, label: str, enabled: bool):
        self.stream = stream
        self.label = label
        self.enabled = enabled and stream is not None
        self.total = 0
        self._progress: Progress | None = None
        self._task = None
        self._handler: logging.StreamHandler | None = None
        self._handler_stream = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    @property
    def live(self) -> bool:
        return self._progress is not None

    def start(self, total: int) -> None:
        self.total = total
        if not self.enabled or self.live:
            return
        console = Console(file=underlying(self.stream), force_terminal=True, highlight=False,
                          no_color=not wants_colour(self.stream))
        self._progress = Progress(
            _BarLine(self.label), console=console, transient=True, redirect_stdout=False, redirect_stderr=False,
        )
        self._task = self._progress.add_task(self.label, total=total, note="")
        self._progress.start()
        handler = stderr_log_handler()
        if isinstance(handler, logging.StreamHandler) and is_terminal(handler.stream):
            self._handler = handler
            self._handler_stream = handler.setStream(_ConsoleLines(console))

    def update(self, done: int, note: str = "") -> None:
        if self.live:
            self._progress.update(self._task, completed=done, note=shorten(note, 40))

    def line(self, out: OutputWrapper, text: str) -> None:
        """A per-item line (verbosity 2) on ``out``; above the bar when both share the terminal."""
        if self.live and is_terminal(out):
            self._progress.console.print(Text(text), soft_wrap=True, highlight=False)
        else:
            out.write(text)

    def finish(self) -> None:
        if not self.live:
            return
        try:
            self._progress.update(self._task, completed=self.total)
            self._progress.stop()
        finally:
            if self._handler is not None:
                self._handler.setStream(self._handler_stream)
                self._handler = None
            self._progress = None


def table(headers: Sequence[str], rows: Sequence[Sequence], *, align_right: set[int] = frozenset(),
          colour: bool = False) -> str:
    """Columns two spaces apart, widths measured on the text (``Styled`` cells' colour is not counted)."""
    cells = [list(headers)] + [list(row) for row in rows]
    widths = [max(len(str(row[i])) for row in cells) for i in range(len(headers))]
    last = len(headers) - 1

    def fmt(row):
        out = []
        for i, cell in enumerate(row):
            text = str(cell)
            if i in align_right:
                text = text.rjust(widths[i])
            elif i != last:
                text = text.ljust(widths[i])
            out.append(paint(text, getattr(cell, "meaning", None), colour=colour))
        return "  ".join(out).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(row) for row in cells[1:]]
    return "\n".join(lines)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
