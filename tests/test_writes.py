"""A source's first write (``services.store.source_store``): the statements it sends do not grow
with the feed's entries (up to a batch), and nothing is read about entries it has just created."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingest.links import link_key
from ingest.models import Author, Entry, EntryLink, Pingback, TechnicalArticle
from ingest.services.store import source_store
from ingest.types import FetchResult, Fetched, ParsedAuthor, ParsedEntry, ParsedFeed
from tests.helpers import statement_sql

FETCHED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
OWNER = "test-writer"


def _feed(host: str, count: int) -> ParsedFeed:
    """``count`` posts by two authors, each linking to the one before it (a pingback each)."""
    entries = []
    for n in range(count):
        link = f"https://{host}/p/{n}"
        before = f"https://{host}/p/{n - 1}"
        body = f'<p>Post {n}, after <a href="{before}">the last one</a>.</p>' if n else f"<p>Post {n}.</p>"
        entries.append(ParsedEntry(
            guid=link, headline=f"Post {n}", body_text=body, link=link,
            published_at=FETCHED - timedelta(hours=n), updated_at=None,
            authors=(ParsedAuthor(f"Writer {host} {n % 2}", f"w{n % 2}@{host}"),),
            content_hash=hashlib.sha256(f"{host}|{n}".encode()).hexdigest(),
            link_keys=(link_key(before),) if n else (), link_key=link_key(link)))
    return ParsedFeed(title=host, site_url="", tagline="", entries=tuple(entries))


def _first_write(host: str, count: int) -> list[str]:
    source = TechnicalArticle.objects.create(name=host, feed_url=f"https://{host}/feed", lease_owner=OWNER)
    fetched = Fetched(source_id=source.pk, fetched_at=FETCHED, feed=_feed(host, count),
                      result=FetchResult(url=source.feed_url, status=200, content=b"", headers={}))
    with CaptureQueriesContext(connection) as queries:
        result = source_store(source=source, fetched=fetched, owner=OWNER)
    assert (result.value.created, result.value.pingbacks) == (count, count - 1), result
    assert Entry.objects.filter(technical_article=source).count() == count
    assert EntryLink.objects.filter(entry__technical_article=source).count() == count - 1
    assert Author.objects.filter(name__startswith=f"Writer {host} ").count() == 2
    return [statement_sql(q) for q in queries]


@pytest.mark.django_db(transaction=True)
def test_a_first_write_sends_as_many_statements_for_40_entries_as_for_5():
    small, large = _first_write("small.example", 5), _first_write("large.example", 40)
    assert len(large) == len(small), "\n".join(large)
    assert len(large) <= 40, "\n".join(large)  # a small constant: no statement per entry
    assert Pingback.objects.filter(target__technical_article__name="large.example").count() == 39


@pytest.mark.django_db(transaction=True)
def test_no_links_or_pingbacks_are_read_for_entries_just_created():
    statements = _first_write("fresh.example", 30)
    links, pingbacks = EntryLink._meta.db_table, Pingback._meta.db_table
    reads = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    # The links are read only by their key (stored entries linking to the new ones), never by entry.
    assert not [sql for sql in reads if links in sql and "entry_id" in sql.split(" WHERE ")[-1]]
    assert not [sql for sql in reads if f"FROM {connection.ops.quote_name(pingbacks)}" in sql]
    inserts = [sql for sql in statements if sql.lstrip().upper().startswith("INSERT") and links in sql]
    assert len(inserts) == 1  # the 29 links in one statement
