"""Duplicates across feeds: the same article from several sources is one canonical entry and its copies."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ingest.decide import DuplicateRow, duplicates_resolve
from ingest.models import Comment, Entry, Pingback, TechnicalArticle
from ingest.services.recount import entries_counts_refresh
from ingest.services.tokens import token_issue
from tests.helpers import call, ingest, rss, rss_item

T0 = datetime(2026, 10, 1, tzinfo=UTC)

# One article, as three feeds spell its link: what the link key normalizes away (host case,
# default port, trailing slash, fragment) does not make another article.
LINKS = {
    "/a.rss": "https://news.example/story/42",
    "/b.rss": "https://NEWS.example:443/story/42/",
    "/c.rss": "https://news.example/story/42#comments",
}


def row(pk, source, key="k", minutes=0, duplicate_of=None):
    return DuplicateRow(pk, source, key, T0 + timedelta(minutes=minutes), duplicate_of)


# --- The rule ---------------------------------------------------------------------------------------


def test_the_earliest_ingested_of_different_sources_is_canonical_and_the_others_point_at_it():
    rows = [row(3, 30, minutes=1), row(1, 10, minutes=5), row(2, 20, minutes=1)]
    assert duplicates_resolve(rows) == {1: 2, 2: None, 3: 2}  # a tie on ingested_at: the lower id


def test_same_source_reposts_empty_keys_and_lone_entries_are_left_alone():
    rows = [row(1, 10), row(2, 10, minutes=1), row(3, 10, key="", minutes=2), row(4, 20, key="", minutes=3),
            row(5, 30, key="solo")]
    assert duplicates_resolve(rows) == {1: None, 2: None, 3: None, 4: None, 5: None}
    # with a copy in another source: the canonical's own source is left alone, the other points at it
    assert duplicates_resolve(rows[:2] + [row(6, 20, minutes=9)]) == {1: None, 2: None, 6: 1}


def test_an_existing_canonical_stays_whatever_the_newcomer_and_there_is_never_a_chain():
    # The stored entry was ingested later than the newcomer's fetch time (a slow concurrent run): it stays.
    assert duplicates_resolve([row(1, 10, minutes=5), row(2, 20, minutes=0)], new=[2]) == {1: None, 2: 1}
    # A group that already points at a canonical keeps it, even when an earlier row turns up.
    assert duplicates_resolve([row(1, 10, minutes=9), row(2, 20, minutes=9, duplicate_of=1), row(3, 30)]) == \
        {1: None, 2: 1, 3: 1}
    # Two canonicals (a race): the earlier wins, everyone points at it directly.
    assert duplicates_resolve([row(1, 10, minutes=2), row(2, 20, minutes=5, duplicate_of=1), row(3, 30, minutes=1),
                               row(4, 40, minutes=5, duplicate_of=3), row(5, 50, minutes=6, duplicate_of=4)]) == \
        {1: 3, 2: 3, 3: None, 4: 3, 5: 3}


def test_a_canonical_that_goes_is_replaced_by_the_oldest_remaining_copy():
    rows = [row(1, 10), row(2, 20, minutes=3, duplicate_of=1), row(3, 30, minutes=2, duplicate_of=1)]
    assert duplicates_resolve(rows, gone=[1]) == {2: 3, 3: None}
    assert duplicates_resolve(rows[:2], gone=[1]) == {2: None}


# --- Through ingest_feeds ---------------------------------------------------------------------------


def serve(server, paths=LINKS, *, body=""):
    sources = {}
    for path in paths:
        server.add(path, rss([rss_item(f"{path}-42", "Story 42", body, link=LINKS[path]),
                              rss_item(f"{path}-own", f"Own story of {path}", link=f"https://feeds.example{path}/own")],
                             title=path))
        sources[path] = TechnicalArticle.objects.create(name=path, feed_url=server.url(path))
    return sources


def story(source) -> Entry:
    return Entry.objects.get(technical_article=source, headline="Story 42")


def marks() -> dict[str, str | None]:
    return {e.technical_article.name: (e.duplicate_of.technical_article.name if e.duplicate_of else None)
            for e in Entry.objects.filter(headline="Story 42").select_related("technical_article",
                                                                              "duplicate_of__technical_article")}


@pytest.mark.parametrize("order", [("/a.rss", "/b.rss", "/c.rss"), ("/c.rss", "/a.rss", "/b.rss")])
def test_the_first_source_to_store_the_article_holds_the_canonical_over_reruns(db, feed_server, order):
    sources = serve(feed_server)
    for path in order:
        ingest("--source", str(sources[path].pk))
    first = order[0]
    assert marks() == {path: (None if path == first else first) for path in LINKS}
    assert not Entry.objects.exclude(headline="Story 42").exclude(duplicate_of=None).exists()
    for _ in range(2):
        ingest("--all")
        assert marks() == {path: (None if path == first else first) for path in LINKS}


def test_all_sources_in_one_run_give_one_canonical_and_no_chain(db, feed_server):
    serve(feed_server)
    ingest()
    canonicals = Entry.objects.filter(headline="Story 42", duplicate_of=None)
    assert canonicals.count() == 1
    assert set(Entry.objects.filter(headline="Story 42").exclude(duplicate_of=None)
               .values_list("duplicate_of", flat=True)) == {canonicals.get().pk}


def test_switched_off_nothing_is_marked_and_marks_stay_until_recompute_dedup(db, feed_server, settings):
    sources = serve(feed_server)
    settings.INGEST_CROSS_FEED_DEDUP = False
    ingest("--source", str(sources["/a.rss"].pk))
    ingest("--source", str(sources["/b.rss"].pk))
    assert marks() == {"/a.rss": None, "/b.rss": None}
    settings.INGEST_CROSS_FEED_DEDUP = True
    ingest("--source", str(sources["/c.rss"].pk))  # the next copy mends the group it meets
    assert marks() == {"/a.rss": None, "/b.rss": "/a.rss", "/c.rss": "/a.rss"}
    settings.INGEST_CROSS_FEED_DEDUP = False
    ingest("--all")
    assert marks() == {"/a.rss": None, "/b.rss": "/a.rss", "/c.rss": "/a.rss"}  # left as they are
    report = call("recompute_counts", "--dedup")
    assert report["duplicates_changed"] == 2 and marks() == {"/a.rss": None, "/b.rss": None, "/c.rss": None}


def test_recompute_dedup_repairs_what_a_race_between_two_stores_leaves(db, feed_server, settings):
    """Two sources storing one article at once each see no committed copy: both stay unmarked
    (never a chain). The next copy's store or ``recompute_counts --dedup`` makes the earlier canonical."""
    sources = serve(feed_server, ["/a.rss", "/b.rss"])
    settings.INGEST_CROSS_FEED_DEDUP = False  # what each of the two transactions saw: no other copy
    ingest("--source", str(sources["/a.rss"].pk))
    ingest("--source", str(sources["/b.rss"].pk))
    settings.INGEST_CROSS_FEED_DEDUP = True
    assert marks() == {"/a.rss": None, "/b.rss": None}
    assert call("recompute_counts", "--dedup", "--chunk-size", "1")["duplicates_changed"] == 1
    assert marks() == {"/a.rss": None, "/b.rss": "/a.rss"}
    assert call("recompute_counts", "--dedup")["duplicates_changed"] == 0


def test_recompute_dedup_is_refused_with_dry_run(db):
    with pytest.raises(CommandError, match="--dedup") as info:
        call_command("recompute_counts", "--dedup", "--dry-run", stdout=StringIO())
    assert info.value.returncode == 2


def test_a_pingback_from_a_fourth_feed_goes_to_the_canonical(db, feed_server):
    sources = serve(feed_server)
    feed_server.add("/d.rss", rss([rss_item("d-1", "A reply", f'<a href="{LINKS["/b.rss"]}">their story</a>',
                                            link="https://reply.example/1")]))
    sources["/d.rss"] = TechnicalArticle.objects.create(name="/d.rss", feed_url=feed_server.url("/d.rss"))
    for path in ("/a.rss", "/b.rss", "/d.rss", "/c.rss"):
        ingest("--source", str(sources[path].pk))
    canonical = story(sources["/a.rss"])
    assert list(Pingback.objects.values_list("target_id", flat=True)) == [canonical.pk]
    counts = dict(Entry.objects.filter(headline="Story 42").values_list("technical_article__name", "number_of_pingbacks"))
    assert counts == {"/a.rss": 1, "/b.rss": 0, "/c.rss": 0}


def test_a_copy_linking_to_its_own_article_sends_no_pingback(db, feed_server):
    sources = serve(feed_server, ["/a.rss"])
    serve(feed_server, ["/b.rss"], body=f'<a href="{LINKS["/a.rss"]}">the original</a>')
    ingest("--source", str(sources["/a.rss"].pk))
    ingest("--all")
    assert Pingback.objects.count() == 0


def test_the_canonicals_comment_count_includes_its_copies_and_recompute_agrees(db, feed_server):
    sources = serve(feed_server)
    ingest()
    canonical = Entry.objects.get(headline="Story 42", duplicate_of=None)
    copies = list(Entry.objects.filter(headline="Story 42").exclude(duplicate_of=None))
    Comment.objects.create(entry=canonical, guid="own")
    for i, copy in enumerate(copies):
        Comment.objects.create(entry=copy, guid=f"copy{i}")
    entries_counts_refresh(entry_ids=[c.pk for c in copies])  # what a comment feed's store does
    counts = {e.pk: e.number_of_comments for e in Entry.objects.filter(headline="Story 42")}
    assert counts == {canonical.pk: 3, **{c.pk: 1 for c in copies}}
    assert call("recompute_counts")["changed"] == 0  # the reconciliation counts the same way
    Entry.objects.update(number_of_comments=0)
    assert call("recompute_counts", "--chunk-size", "1")["changed"] == 3
    assert {e.pk: e.number_of_comments for e in Entry.objects.filter(headline="Story 42")} == counts
    assert sources  # the sources themselves are untouched


def test_deleting_the_canonicals_source_promotes_the_oldest_copy(db, feed_server):
    sources = serve(feed_server)
    for path in ("/a.rss", "/b.rss", "/c.rss"):
        ingest("--source", str(sources[path].pk))
    c_copy = story(sources["/c.rss"])
    Comment.objects.create(entry=c_copy, guid="c")
    entries_counts_refresh(entry_ids=[c_copy.pk])
    assert story(sources["/a.rss"]).number_of_comments == 1
    call_command("delete_source", str(sources["/a.rss"].pk), "--yes", stdout=StringIO(), stderr=StringIO())
    assert marks() == {"/b.rss": None, "/c.rss": "/b.rss"}
    assert story(sources["/b.rss"]).number_of_comments == 1  # the new canonical counts its copy's comment
    call_command("delete_source", str(sources["/b.rss"].pk), "--yes", stdout=StringIO(), stderr=StringIO())
    assert marks() == {"/c.rss": None}


def test_statements_of_the_store_stay_bounded_by_batches_not_by_copies(db, feed_server):
    """Marking costs the same few statements for 3 copies as for 30."""
    def statements(n: int) -> int:
        items = [rss_item(f"g{i}", f"Story {i}", link=f"https://news.example/{n}/{i}") for i in range(n)]
        for name in ("x", "y"):
            feed_server.add(f"/{name}{n}.rss", rss(items))
        x = TechnicalArticle.objects.create(name=f"x{n}", feed_url=feed_server.url(f"/x{n}.rss"))
        y = TechnicalArticle.objects.create(name=f"y{n}", feed_url=feed_server.url(f"/y{n}.rss"))
        ingest("--source", str(x.pk))
        with CaptureQueriesContext(connection) as queries:
            ingest("--source", str(y.pk))
        assert Entry.objects.filter(technical_article=y, duplicate_of__technical_article=x).count() == n
        return len(queries)

    assert statements(30) == statements(3)


# --- Hiding: the API, list_entries, the admin --------------------------------------------------------


def test_the_api_shows_duplicate_of_and_hides_or_shows_only_copies(db, feed_server):
    sources = serve(feed_server)
    for path in LINKS:
        ingest("--source", str(sources[path].pk))
    user = User.objects.create_user("reader", password="pw")
    client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(username=user.username).key}")
    canonical = story(sources["/a.rss"])

    def ids(query=""):
        body = client.get(f"/api/entries/?page_size=100{query}").json()
        return {r["id"]: r["duplicate_of"] for r in body["results"]}

    everything = ids()
    assert len(everything) == 6 and everything[canonical.pk] is None
    assert sorted(pk for pk, target in everything.items() if target) == \
        sorted([story(sources["/b.rss"]).pk, story(sources["/c.rss"]).pk])
    assert set(everything.values()) == {None, canonical.pk}
    hidden = ids("&duplicates=hide")
    assert len(hidden) == 4 and set(hidden.values()) == {None}
    assert set(ids("&duplicates=only").values()) == {canonical.pk} and len(ids("&duplicates=only")) == 2
    assert client.get(f"/api/entries/{story(sources['/b.rss']).pk}/").json()["duplicate_of"] == canonical.pk
    assert client.get("/api/entries/?duplicates=maybe").status_code == 400


def test_list_entries_hides_duplicates_and_its_json_shows_duplicate_of(db, feed_server):
    sources = serve(feed_server)
    for path in LINKS:
        ingest("--source", str(sources[path].pk))

    def rows(*args):
        out = StringIO()
        call_command("list_entries", "--json", *args, stdout=out)
        return json.loads(out.getvalue())["entries"]

    canonical = story(sources["/a.rss"])
    assert sorted(r["duplicate_of"] or 0 for r in rows()) == [0, 0, 0, 0, canonical.pk, canonical.pk]
    shown = rows("--hide-duplicates")
    assert len(shown) == 4 and all(r["duplicate_of"] is None for r in shown)


def test_the_admin_filters_duplicates_and_shows_the_canonical(db, feed_server):
    sources = serve(feed_server, ["/a.rss", "/b.rss"])
    for path in ("/a.rss", "/b.rss"):
        ingest("--source", str(sources[path].pk))
    User.objects.create_superuser("admin", password="pw")
    client = Client()
    client.login(username="admin", password="pw")
    copy, canonical = story(sources["/b.rss"]), story(sources["/a.rss"])
    page = client.get("/admin/ingest/entry/?duplicate=yes").content.decode()
    assert f"/admin/ingest/entry/{copy.pk}/change/" in page and "Own story" not in page
    assert f"/admin/ingest/entry/{canonical.pk}/change/" not in page
    page = client.get("/admin/ingest/entry/?duplicate=no").content.decode()
    assert f"/admin/ingest/entry/{canonical.pk}/change/" in page and f"/admin/ingest/entry/{copy.pk}/change/" not in page
    change = client.get(f"/admin/ingest/entry/{copy.pk}/change/").content.decode()
    assert f"/admin/ingest/entry/{canonical.pk}/change/" in change and "Canonical entry" in change
