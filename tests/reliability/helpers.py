"""Shared helpers of the reliability suite: commands in real processes, database snapshots, feeds.

Nothing here fakes a component: commands run as ``manage.py`` processes (behind the network
tripwire) or through ``call_command``; feeds are served over 127.0.0.1; the database is the test
database of the current backend pass.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from io import StringIO
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from django.core.management import call_command
from django.db import connection

from tests.reliability import tripwire
from tests import workers
from tests.workers import database_url  # noqa: F401  (re-exported: one definition for every suite)

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
OBSERVED = ROOT / "var" / "reliability" / "observed.jsonl"

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a real PostgreSQL")

VENDOR_NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB", "sqlite": "SQLite", "microsoft": "SQL Server"}


def vendor() -> str:
    return VENDOR_NAMES.get(connection.vendor, connection.vendor)


# --- Observations: what a run saw, for docs/reliability.md ---------------------------------------


def observe(scenario: str, text: str, **data) -> None:
    """Record what this run observed for ``scenario`` (rendered by ``python -m tests.reliability.report``);
    ``data`` holds numbers the report tabulates (the load test's elapsed times)."""
    OBSERVED.parent.mkdir(parents=True, exist_ok=True)
    entry = {"scenario": scenario, "vendor": vendor(), "text": text, "data": data,
             "at": datetime.now(UTC).isoformat(timespec="seconds")}
    with OBSERVED.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


# --- Commands -------------------------------------------------------------------------------------



def call(command: str, *args, **options) -> dict:
    """``call_command(command, "--json", ...)`` in this process; the parsed JSON object."""
    out = StringIO()
    call_command(command, "--json", *args, stdout=out, stderr=StringIO(), **options)
    return json.loads(out.getvalue())


@dataclass
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    max_rss_mb: float  # peak resident memory of the process and the children it waited for
    tripped: list[dict] = field(default_factory=list)  # network tripwire records

    def json(self) -> dict:
        return json.loads(self.stdout)

    def explain(self) -> str:
        return (f"$ manage.py {' '.join(self.args)}\nexit {self.returncode} in {self.elapsed_s:.1f}s\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}")


def manage(*args: str, env: dict[str, str] | None = None, database: str | None = None, timeout: float = 300,
           stdin: bytes | None = None) -> Completed:
    """Run ``manage.py *args`` in its own process behind the network tripwire.

    ``database`` is its DATABASE_URL (default: the current test database). Its peak memory comes
    from wait4(), which includes the parse processes it spawned and joined.
    """
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        log = Path(tmp) / "tripwire.jsonl"
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database if database is not None else database_url(),
            "RELIABILITY_TRIPWIRE_LOG": str(log),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.guarded_manage", *args], cwd=ROOT, env=full_env,
                stdout=out, stderr=err, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
            if stdin is not None:
                proc.stdin.write(stdin)
                proc.stdin.close()
            status, rusage = _wait(proc, timeout)
        elapsed = time.monotonic() - started
        return Completed(
            args=list(args),
            returncode=os.waitstatus_to_exitcode(status),
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
            elapsed_s=elapsed,
            max_rss_mb=rusage.ru_maxrss / 1024,
            tripped=tripwire.read_log(log),
        )


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, rusage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"manage.py {' '.join(proc.args[3:])} did not finish within {timeout}s")
        time.sleep(0.02)


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \"", re.MULTILINE)
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* +(DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")


def assert_one_sentence_error(result: Completed, *, returncode: int) -> str:
    """The command failed with ``returncode`` and said why in one line, without a traceback."""
    assert result.returncode == returncode, result.explain()
    assert not TRACEBACK.search(result.stderr), result.explain()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("CommandError: ") or ": error: " in line]
    assert len(errors) == 1, result.explain()
    # Besides the error: argparse's usage line, and the run's log records (logs go to stderr).
    others = [line for line in lines if line not in errors and not line.startswith(("usage: ", " "))
              and not LOG_RECORD.match(line)]
    assert others == [], result.explain()
    return errors[0].removeprefix("CommandError: ")


# --- Database state -------------------------------------------------------------------------------


def snapshot(*, runs: bool = True) -> dict:
    """Everything the pipeline stores, without ids or timestamps that differ between two runs."""
    from ingest.models import (
        Author,
        Comment,
        CommentFeed,
        Entry,
        EntryLink,
        IngestRun,
        Pingback,
        TechnicalArticle,
    )

    sources = sorted(
        TechnicalArticle.objects.values_list(
            "feed_url", "name", "tagline", "site_url", "active", "etag", "last_modified", "last_status",
            "consecutive_failures", "last_error", "lease_owner", "lease_expires_at")
    )
    entries = sorted(
        (e.technical_article.feed_url, e.guid, e.headline, e.body_text, e.link, e.link_key, e.published_at,
         e.pub_date, e.content_hash, e.comments_feed_url, e.reported_comments, e.number_of_comments,
         e.number_of_pingbacks, tuple(sorted((a.name, a.email) for a in e.authors.all())))
        for e in Entry.objects.select_related("technical_article").prefetch_related("authors")
    )
    state = {
        "sources": sources,
        "entries": entries,
        "authors": sorted(Author.objects.values_list("name", "email")),
        "pingbacks": sorted(Pingback.objects.values_list("source_url", "target__guid")),
        "links": sorted(EntryLink.objects.values_list("entry__guid", "link_key")),
        "counts": {m.__name__: m.objects.count() for m in (Author, Comment, CommentFeed, Entry, EntryLink, Pingback)},
    }
    if runs:
        state["runs"] = list(IngestRun.objects.order_by("pk").values_list(
            "command", "trigger", "status", "sources_total", "sources_fetched", "sources_not_modified",
            "sources_failed", "entries_created", "entries_updated", "entries_unchanged", "error"))
    return state


def entry_keys() -> set[tuple[str, str]]:
    """(feed URL, guid) of every stored entry."""
    from ingest.models import Entry

    return set(Entry.objects.values_list("technical_article__feed_url", "guid"))


def wipe() -> None:
    """Delete everything the pipeline wrote (for a second, undisturbed run in the same test)."""
    from ingest.models import (
        Author,
        Comment,
        CommentFeed,
        Entry,
        EntryLink,
        IngestRun,
        Pingback,
        TechnicalArticle,
    )

    for model in (IngestRun, Pingback, Comment, CommentFeed, EntryLink, Entry, Author, TechnicalArticle):
        model.objects.all().delete()


def wait_until(predicate, *, timeout: float = 30.0, **options):
    """``tests.workers.wait_until`` with the longer default these end-to-end scenarios need."""
    return workers.wait_until(predicate, timeout=timeout, **options)


# --- Feeds ----------------------------------------------------------------------------------------

WHEN = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def rss_item(guid: str, title: str, body: str = "", *, link: str = "", date: datetime | str | None = WHEN,
             author: str = "", raw: bool = False) -> str:
    """One RSS <item>; ``raw`` puts title and body in unescaped (the caller wrote the XML)."""
    text = (lambda s: s) if raw else escape
    when = format_datetime(date) if isinstance(date, datetime) else date
    return ("<item>"
            f"<guid isPermaLink=\"false\">{text(guid)}</guid><title>{text(title)}</title>"
            + (f"<link>{escape(link)}</link>" if link else "")
            + (f"<description>{text(body)}</description>" if body else "")
            + (f"<pubDate>{when}</pubDate>" if when else "")
            + (f"<author>{escape(author)}</author>" if author else "")
            + "</item>")


def rss(items: list[str] | str, *, title: str = "Feed", link: str = "http://feeds.example/", encoding: str | None = "utf-8",
        extra: str = "") -> str:
    head = f'<?xml version="1.0" encoding="{encoding}"?>\n' if encoding else ""
    body = items if isinstance(items, str) else "\n".join(items)
    return (f'{head}<rss version="2.0"><channel><title>{escape(title)}</title><link>{escape(link)}</link>{extra}\n'
            f"{body}\n</channel></rss>\n")
