"""Presentation helpers shared by the management commands: progress bar, tables, JSON, exit codes.

Interface code only: no domain decisions. Everything is written through the command's
``self.stdout`` / ``self.stderr`` so ``call_command(stdout=...)`` captures it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from contextlib import contextmanager

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError, OperationalError

# Exit statuses shared by every pipeline command (documented in the README).
EXIT_OK = 0  # the run completed (some sources may have failed: they are reported and recorded)
EXIT_RUN_FAILED = 1  # the run itself could not work (database unreachable, configuration)
EXIT_USAGE = 2  # bad arguments
EXIT_UNHEALTHY = 3  # pipeline_status: the pipeline needs attention


class PipelineCommand(BaseCommand):
    """Base of the pipeline's commands: on the command line, a database that cannot be reached (or
    refuses the work) ends the command with one sentence and exit status 1, wherever it happens,
    instead of a traceback; with --json, stdout still gets its one JSON object. Callers of
    call_command (Azure timers, tests) keep getting the database's own exception."""

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except DatabaseError as exc:
            if not getattr(self, "_called_from_command_line", False):
                raise
            text = str(exc).strip()
            detail = text.splitlines()[0][:300] if text else type(exc).__name__
            what = "The database is unreachable" if isinstance(exc, OperationalError) else "The database refused the work"
            message = f"{what}: {detail}"
            if options.get("json"):
                print_json(self.stdout, {"run_id": None, "status": "failed", "error": message})
            raise run_error(message) from exc


def usage_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_USAGE)


def run_error(message: str) -> CommandError:
    return CommandError(message, returncode=EXIT_RUN_FAILED)


def source_ids(selectors: Sequence[str]) -> list[int]:
    """``--source`` values (ids or feed URLs) to ids; an unknown one is a usage error."""
    from ingest.errors import RunError
    from ingest.services import sources_resolve

    try:
        return sources_resolve(selectors) if selectors else []
    except RunError as exc:
        raise usage_error(str(exc)) from exc


@contextmanager
def run_errors(json_out: OutputWrapper | None = None):
    """Turn a ``RunError`` (the run itself cannot work) into a CommandError with exit status 1.

    With ``json_out`` (``--json``), a failed run still prints its one JSON object there first,
    so a script reading stdout always gets a status.
    """
    from ingest.errors import RunError

    try:
        yield
    except RunError as exc:
        if json_out is not None:
            print_json(json_out, {"run_id": None, "status": "failed", "error": str(exc)})
        raise run_error(str(exc)) from exc


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
