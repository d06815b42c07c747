"""Helpers shared by every test suite: paths, waiting, the test database's URL, commands through
``call_command``, database snapshots, and feed builders.

Owns small functions that more than one test module uses. It must not hold fixtures (those live
in conftest.py), test cases, or infrastructure with a life of its own (the HTTP feed server is
``samples.feedserver``; Celery workers are tests/workers.py and tests/reliability/celery_harness.py;
processes behind the network tripwire are tests/reliability/runner.py). No test module imports
another test module: what two of them share moves here (tests/test_layout.py checks it).
"""

from __future__ import annotations

import json
import random
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from io import StringIO
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs a real PostgreSQL")

VENDOR_NAMES = {"postgresql": "PostgreSQL", "mysql": "MariaDB", "sqlite": "SQLite", "microsoft": "SQL Server"}


def vendor() -> str:
    return VENDOR_NAMES.get(connection.vendor, connection.vendor)


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"):
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def database_url() -> str:
    """DATABASE_URL of the test database, for a process (worker, command) started by a test."""
    settings = connection.settings_dict
    engine = settings["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        name = str(settings["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            pytest.skip("an in-memory SQLite database is not reachable from another process")
        return "sqlite:///" + name
    schemes = {"django.db.backends.postgresql": "postgres", "django.db.backends.mysql": "mysql"}
    if engine not in schemes:
        pytest.skip(f"no worker-process test for {engine}")
    auth = quote(settings["USER"] or "", safe="")
    if settings["PASSWORD"]:
        auth += ":" + quote(settings["PASSWORD"], safe="")
    host = settings["HOST"] or "127.0.0.1"
    port = f":{settings['PORT']}" if settings["PORT"] else ""
    return f"{schemes[engine]}://{auth}@{host}{port}/{quote(settings['NAME'], safe='')}"


# --- Commands in this process ---------------------------------------------------------------------


def call(command: str, *args, **options) -> dict:
    """``call_command(command, "--json", ...)`` in this process; the parsed JSON object."""
    out = StringIO()
    call_command(command, "--json", *args, stdout=out, stderr=StringIO(), **options)
    return json.loads(out.getvalue())


def ingest(*args) -> dict:
    """``ingest_feeds --json *args`` in this process; its JSON report."""
    return call("ingest_feeds", *args)


def serve_wordpress(server, *, fetch_comments=True):
    """Serve tests/data/comments (a WordPress feed and two per-post comment feeds) and register it."""
    from ingest.models import TechnicalArticle

    comments = DATA / "comments"
    body = recent_dates((comments / "wordpress.rss").read_text().replace("__BASE__", server.base_url))
    server.add("/wp.rss", body)
    for name in ("covering", "filtered"):
        server.add(f"/comments/{name}.rss", recent_dates((comments / f"{name}.rss").read_text()).encode(), etag=f'"{name}"')
    return TechnicalArticle.objects.create(name="wp", feed_url=server.url("/wp.rss"), fetch_comments=fetch_comments)


_SAMPLE_DAY = datetime(2026, 11, 20, tzinfo=UTC)  # the latest day the WordPress sample's dates name
_PUB_DATE = re.compile(r"<pubDate>([^<]+)</pubDate>")


def recent_dates(body: str) -> str:
    """The sample's dates moved by whole days so that its latest day is yesterday: comment feeds are
    polled only for posts of the last INGEST_COMMENTS_DAYS days, whatever day the tests run."""
    shift = timedelta(days=(datetime.now(UTC) - _SAMPLE_DAY).days - 1)
    return _PUB_DATE.sub(
        lambda match: f"<pubDate>{format_datetime(parsedate_to_datetime(match.group(1)) + shift)}</pubDate>", body)


def entries_make(n: int, article=None, *, moment: datetime = datetime(2026, 11, 20, tzinfo=UTC)) -> list:
    """``n`` bare entries of ``article`` (a new source by default), in pk order: what the counter tests count on."""
    from ingest.models import Entry, TechnicalArticle

    article = article or TechnicalArticle.objects.create(name="a", feed_url=f"https://a.example/{random.random()}")
    Entry.objects.bulk_create(
        Entry(technical_article=article, guid=f"g{i}", headline=f"h{i}", body_text="", pub_date=moment.date(),
              published_at=moment, content_hash="x", link=f"https://a.example/{article.pk}/{i}")
        for i in range(n)
    )
    return list(Entry.objects.filter(technical_article=article).order_by("pk"))


# --- Database state -------------------------------------------------------------------------------


def snapshot(*, runs: bool = True) -> dict:
    """Everything the pipeline stores, without ids or timestamps that differ between two runs."""
    from ingest.models import Author, Comment, CommentFeed, Entry, EntryLink, IngestRun, Pingback, TechnicalArticle

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
    from ingest.models import Author, Comment, CommentFeed, Entry, EntryLink, IngestRun, Pingback, TechnicalArticle

    for model in (IngestRun, Pingback, Comment, CommentFeed, EntryLink, Entry, Author, TechnicalArticle):
        model.objects.all().delete()


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


def generate_feeds(count: int, entries: int, *, seed: int = 7) -> tuple[dict[str, bytes], dict[str, set[str]]]:
    """``count`` RSS feeds of ``entries`` items each, with the duplicates real feeds have.

    Returns the bodies by path and, per path, the set of unique guids a correct reader stores.
    Each feed repeats one of its items (a duplicate guid within the feed), and one feed in fifty
    shares its guids with the next feed (the same guid in two sources is two entries).
    """
    rng = random.Random(seed)
    feeds: dict[str, bytes] = {}
    unique: dict[str, set[str]] = {}
    for i in range(count):
        path = f"/feeds/{i:04d}.xml"
        owner = i - 1 if i % 50 == 1 else i  # feed 1, 51, 101 ... reuse the guids of the feed before
        items, guids = [], set()
        for k in range(entries):
            guid = f"feed-{owner}-entry-{k}"
            guids.add(guid)
            items.append(
                f"<item><guid isPermaLink=\"false\">{guid}</guid><title>Feed {i} entry {k}</title>"
                f"<link>http://load{i}.example/{k}</link><pubDate>Thu, 01 Oct 2026 {k % 24:02d}:{rng.randrange(60):02d}:00 GMT</pubDate>"
                f"<description>&lt;p&gt;Entry {k} of feed {i}: {rng.getrandbits(64):x}&lt;/p&gt;</description></item>")
        items.append(items[rng.randrange(entries)])  # a duplicate guid within the feed
        body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Load feed {i}</title><link>http://load{i}.example/</link>{''.join(items)}</channel></rss>")
        feeds[path] = body.encode()
        unique[path] = guids
    return feeds, unique


def expected_entries(server, unique: dict[str, set[str]], paths: set[str] | None = None) -> set[tuple[str, str]]:
    """(feed URL, guid) of every unique entry in the given paths (default: those a ``FeedServer``
    served completely with a 2xx)."""
    chosen = server.served_ok if paths is None else paths
    return {(server.url(path), guid) for path in chosen for guid in unique[path]}


LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}


def json_log_records(text: str) -> list[dict]:
    """Every line of ``text`` as one JSON object with ts/level/logger/event; the test fails on the
    first line that is not, quoting it."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"a line is not JSON: {line!r}\n--- output\n{text[-6000:]}")
        assert isinstance(record, dict) and {"ts", "level", "logger", "event"} <= set(record), line
        assert record["level"] in LOG_LEVELS, line
        datetime.fromisoformat(record["ts"])
        records.append(record)
    assert records, "nothing was written"
    return records


def statement_sql(query: dict) -> str:
    """The SQL of one query ``CaptureQueriesContext`` captured, without the "N times: " that Django
    puts before an ``executemany`` (which it counts as one statement)."""
    sql = query["sql"]
    head, sep, rest = sql.partition(" times: ")
    return rest if sep and head.isdigit() else sql
