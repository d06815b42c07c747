"""RFC 5005 history on a source's first fetch, through ``ingest_feeds``: a paged feed's rel="next"
and an archived feed's rel="prev-archive", served by the loopback feed server."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest

from ingest.models import Entry
from ingest.parse import parse_feed
from ingest.services.sources import source_add
from tests.helpers import ingest, rss, rss_item

ATOM_NS = "http://www.w3.org/2005/Atom"


def paged(server, pages: int, *, links: dict[int, str] | None = None, prefix: str = "/paged") -> None:
    """``pages`` RSS pages of two entries each, page n pointing at n+1 with atom:link rel="next"
    (``links`` overrides where a page points)."""
    links = links or {}
    for n in range(1, pages + 1):
        target = links.get(n, server.url(f"{prefix}/{n + 1}") if n < pages else "")
        link = f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="{escape(target)}"/>' if target else ""
        items = [rss_item(f"p{n}-{i}", f"Page {n} entry {i}") for i in (1, 2)]
        server.add(f"{prefix}/{n}", rss(items, title="Paged", extra=link), etag=f'"page{n}"')


def archived(server, archives: int) -> None:
    """An Atom subscription document and ``archives`` archive documents behind it (rel="prev-archive")."""
    def document(name: str, previous: str) -> str:
        link = f'<link rel="prev-archive" href="{server.url(previous)}"/>' if previous else ""
        entries = "".join(f"<entry><id>tag:a,2026:{name}-{i}</id><title>{name} {i}</title>"
                          f"<updated>2026-05-0{i}T10:00:00Z</updated></entry>" for i in (1, 2))
        return (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="{ATOM_NS}"><id>tag:a,2026:feed</id>'
                f"<title>Archived</title><updated>2026-05-01T10:00:00Z</updated>{link}{entries}</feed>")

    server.add("/archived.atom", document("current", "/archive/1" if archives else ""), content_type="application/atom+xml")
    for n in range(1, archives + 1):
        server.add(f"/archive/{n}", document(f"archive{n}", f"/archive/{n + 1}" if n < archives else ""),
                   content_type="application/atom+xml")


def guids(source) -> set[str]:
    return set(Entry.objects.filter(technical_article=source).values_list("guid", flat=True))


def test_the_parser_exposes_next_and_prev_archive_links_absolute_http_only():
    feed = parse_feed(rss([], extra=f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="/page/2"/>'
                                    f'<atom:link xmlns:atom="{ATOM_NS}" rel="prev-archive" href="ftp://x/1"/>').encode(),
                      url="http://feeds.example/page/1")

    assert feed.next_url == "http://feeds.example/page/2"
    assert feed.prev_archive_url == ""
    assert parse_feed(rss([]).encode(), url="http://feeds.example/").next_url == ""


def test_off_by_default_only_the_first_page_is_read(db, feed_server):
    paged(feed_server, 3)
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["totals"]["created"] == 2
    assert guids(source) == {"p1-1", "p1-2"}
    assert feed_server.hits("/paged/2") == 0


@pytest.mark.parametrize(("limit", "read"), [(1, 2), (2, 3), (10, 3)])
def test_a_paged_feed_is_followed_up_to_the_limit(db, feed_server, settings, limit, read):
    settings.INGEST_BACKFILL_PAGES = limit
    paged(feed_server, 3)
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["status"] == "succeeded"
    assert report["totals"]["created"] == 2 * read
    assert guids(source) == {f"p{n}-{i}" for n in range(1, read + 1) for i in (1, 2)}
    assert [feed_server.hits(f"/paged/{n}") for n in (1, 2, 3)] == [1 if n <= read else 0 for n in (1, 2, 3)]
    source.refresh_from_db()
    # The bookkeeping is the first page's: its validator, no warning.
    assert source.etag == '"page1"' and source.last_error == ""


def test_an_archived_feed_is_followed_by_prev_archive(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 5
    archived(feed_server, 2)
    source, _ = source_add(url=feed_server.url("/archived.atom"))

    report = ingest()

    assert report["totals"]["created"] == 6
    assert guids(source) == {f"tag:a,2026:{name}-{i}" for name in ("current", "archive1", "archive2") for i in (1, 2)}


def test_the_first_page_wins_a_guid_seen_on_a_later_page(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 3
    link = f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="{feed_server.url("/p/2")}"/>'
    feed_server.add("/p/1", rss([rss_item("same", "The current title")], extra=link))
    feed_server.add("/p/2", rss([rss_item("same", "An old title"), rss_item("older", "Older")]))
    source, _ = source_add(url=feed_server.url("/p/1"))

    report = ingest()

    assert report["totals"]["created"] == 2
    assert Entry.objects.get(technical_article=source, guid="same").headline == "The current title"


def test_a_page_leading_back_to_one_already_read_ends_the_walk(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    paged(feed_server, 3, links={3: feed_server.url("/paged/1")})
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["status"] == "succeeded" and report["totals"]["created"] == 6
    assert [feed_server.hits(f"/paged/{n}") for n in (1, 2, 3)] == [1, 1, 1]
    source.refresh_from_db()
    assert source.last_error == ""


def test_a_failing_page_stops_the_walk_with_a_warning_and_keeps_what_was_read(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    paged(feed_server, 3)
    feed_server.add("/paged/2", "broken", status=500)
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["status"] == "succeeded"
    assert [s["outcome"] for s in report["sources"]] == ["created"]
    assert guids(source) == {"p1-1", "p1-2"}
    assert feed_server.hits("/paged/3") == 0
    source.refresh_from_db()
    assert source.last_error.startswith(f"warning: the history stopped at page 1 ({feed_server.url('/paged/2')}): ")
    assert "HTTP 500" in source.last_error
    assert source.consecutive_failures == 0 and source.etag == '"page1"'


def test_a_page_on_a_refused_network_is_refused_by_the_guard(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    paged(feed_server, 2, links={1: "http://10.0.0.1/page/2"})
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["totals"]["created"] == 2
    source.refresh_from_db()
    assert source.last_error.startswith("warning: the history stopped at page 1 (http://10.0.0.1/page/2): ")
    assert "10.0.0.1" in source.last_error and "private" in source.last_error.lower()


def test_only_the_first_fetch_follows_the_history(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    paged(feed_server, 2)
    source, _ = source_add(url=feed_server.url("/paged/1"))
    ingest()
    assert feed_server.hits("/paged/2") == 1
    # A new first page (new validator, a new entry), still pointing at page 2.
    link = f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="{feed_server.url("/paged/2")}"/>'
    feed_server.add("/paged/1", rss([rss_item("p1-0", "New"), rss_item("p1-1", "Page 1 entry 1")], extra=link),
                    etag='"page1b"')

    report = ingest("--all")

    assert report["totals"]["created"] == 1
    assert feed_server.hits("/paged/1") == 2 and feed_server.hits("/paged/2") == 1


def test_the_whole_walk_stays_within_the_sources_deadline(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    settings.INGEST_DEADLINE = 1.0
    paged(feed_server, 4)
    for n in (2, 3, 4):
        feed_server.add_sequence(f"/paged/{n}", [dict(body=rss([rss_item(f"p{n}-1", "x")], extra=(
            f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="{feed_server.url(f"/paged/{n + 1}")}"/>')),
            delay=0.4)])
    source, _ = source_add(url=feed_server.url("/paged/1"))

    report = ingest()

    assert report["status"] == "succeeded"
    source.refresh_from_db()
    assert source.last_error.startswith("warning: the history stopped ")
    assert "deadline" in source.last_error
    # Page 1 and 2 at least; never all four pages of 0.4 s each inside one second.
    assert {"p1-1", "p1-2", "p2-1"} <= guids(source) and "p4-1" not in guids(source)


def test_a_first_fetch_that_failed_leaves_the_history_for_the_next_one(db, feed_server, settings):
    settings.INGEST_BACKFILL_PAGES = 10
    paged(feed_server, 2)
    page1 = rss([rss_item(f"p1-{i}", f"Page 1 entry {i}") for i in (1, 2)], title="Paged",
                extra=f'<atom:link xmlns:atom="{ATOM_NS}" rel="next" href="{feed_server.url("/paged/2")}"/>')
    feed_server.add_sequence("/paged/1", [dict(status=503, body="busy"), dict(body=page1)])
    source, _ = source_add(url=feed_server.url("/paged/1"))
    assert ingest()["totals"]["failed"] == 1

    report = ingest("--all")

    assert report["totals"]["created"] == 4
    assert guids(source) == {"p1-1", "p1-2", "p2-1", "p2-2"}
