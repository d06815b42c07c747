"""A 200 with the body stored last time is not parsed: "not modified (same body)".

A server that ignores If-None-Match / If-Modified-Since answers every fetch with a full 200
(``FeedServer.conditional = False``). The body's digest (``ingest.parse.digest``) is compared with
the one the last successful store wrote: equal, the body is neither parsed nor its entries read,
and the source is recorded as not modified, as after a 304. A changed body, a failed store (the old
digest stays), a forced run (``--all``) and a first fetch parse; comment feeds follow the same rule.
Real HTTP server on 127.0.0.1, the real database.
"""

import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest import fetch as fetching
from ingest.models import Comment, CommentFeed, Entry, EntryLink, Enclosure, TechnicalArticle
from ingest.parse.digest import body_digest
from ingest.services.fetch_parse import source_fetch_parse
from ingest.services.leases import sources_claim
from ingest.services.store import source_store
from tests.helpers import DATA, ingest, recent_dates, rss, rss_item, serve_wordpress

FEEDS = Path(__file__).parent / "data" / "feeds"
BLOG = (FEEDS / "blog.rss").read_bytes()
BLOG_CHANGED = (FEEDS / "blog-changed.rss").read_bytes()
# What a same-body run must not touch: the entries and everything stored with them.
ENTRY_TABLES = tuple(model._meta.db_table for model in (Entry, EntryLink, Enclosure, Comment))


def entry_statements(queries) -> list[str]:
    """Statements that read or write entries (or their links, enclosures, comments), but the run's
    look-up of the comment feeds due (the comment-feed URLs of recent entries), which a run makes
    whatever its feeds answer."""
    return [q["sql"] for q in queries
            if any(re.search(rf"\b{table}\b", q["sql"]) for table in ENTRY_TABLES)
            and not (q["sql"].lstrip().upper().startswith("SELECT") and "comments_feed_url" in q["sql"])]


def statements(queries) -> list[str]:
    """The SQL statements, without the transaction's own (BEGIN, SAVEPOINT, COMMIT ...)."""
    control = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "SET ")
    return [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith(control)]


def due_again() -> None:
    """Every source and comment feed due now (a scheduled run, not a forced one)."""
    now = timezone.now() - timedelta(seconds=1)
    TechnicalArticle.objects.update(next_fetch_at=now)
    CommentFeed.objects.update(next_fetch_at=now)


def run_text(*args) -> str:
    out = StringIO()
    call_command("ingest_feeds", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def blog(db, feed_server):
    """A source whose server ignores validators: every fetch is a 200 with the whole body."""
    feed_server.conditional = False
    feed_server.add("/blog.rss", BLOG, etag='"v1"')
    return TechnicalArticle.objects.create(name="", feed_url=feed_server.url("/blog.rss"))


def test_a_second_200_with_the_same_body_is_not_modified_and_reads_no_entry(blog, feed_server):
    first = ingest()
    assert first["totals"]["created"] == 5 and first["totals"]["same_body"] == 0
    blog.refresh_from_db()
    assert len(blog.body_digest) == 64
    due_again()
    with CaptureQueriesContext(connection) as queries:
        report = ingest()
    assert feed_server.hits("/blog.rss") == 2 and feed_server.last_status("/blog.rss") == 200  # a real 200
    (result,) = report["sources"]
    assert (result["outcome"], result["same_body"], result["created"], result["unchanged"]) == ("not_modified", True, 0, 0)
    assert report["totals"]["not_modified"] == 1 and report["totals"]["same_body"] == 1
    assert entry_statements(queries) == []  # nothing parsed: not even a read of the stored entries
    blog.refresh_from_db()
    assert blog.last_status == 200 and blog.next_fetch_at > timezone.now() and blog.lease_owner == ""


def test_the_store_of_a_same_body_is_one_statement_on_the_source(blog, feed_server):
    ingest()
    due_again()
    blog.refresh_from_db()
    owner = "test-owner"
    (source,) = sources_claim(ids=[blog.pk], owner=owner, now=timezone.now())
    settings = fetching.FetchSettings.from_settings()
    with fetching.make_client(settings) as client:
        fetched = source_fetch_parse(source, client=client, fetch_settings=settings)
    assert fetched.same_body and fetched.feed is None and fetched.digest == source.body_digest
    with CaptureQueriesContext(connection) as queries:
        result = source_store(source=source, fetched=fetched, owner=owner)
    assert result.same_body and result.outcome == "not_modified"
    written = statements(queries)
    assert len(written) <= 2 and all("ingest_technicalarticle" in sql for sql in written), written
    assert entry_statements(queries) == []


def test_the_summary_line_and_the_table_say_same_body(blog):
    ingest()
    due_again()
    out = run_text()
    last = out.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(r"Run \d+ succeeded: 1 sources, 0 new, 0 updated, 0 unchanged, 1 not modified "
                        r"\(1 same body\), 0 failed in \d+\.\d\ds", last), last
    row = next(line for line in out.splitlines() if line.strip().startswith(f"{blog.pk} "))
    assert re.split(r"\s{2,}", row.strip())[-3:] == ["yes", "not_modified", "same body"]


def test_the_new_validators_of_a_same_body_are_kept_like_a_304s(blog, feed_server):
    ingest()
    feed_server.add("/blog.rss", BLOG, etag='"v2"', last_modified="Tue, 02 Jun 2026 10:00:00 GMT")
    due_again()
    assert ingest()["totals"]["same_body"] == 1
    blog.refresh_from_db()
    assert (blog.etag, blog.last_modified) == ('"v2"', "Tue, 02 Jun 2026 10:00:00 GMT")


def test_a_changed_body_is_parsed_and_its_digest_stored(blog, feed_server):
    ingest()
    blog.refresh_from_db()
    before = blog.body_digest
    feed_server.add("/blog.rss", BLOG_CHANGED)
    due_again()
    report = ingest()
    assert report["totals"]["same_body"] == 0
    assert (report["totals"]["created"], report["totals"]["updated"], report["totals"]["unchanged"]) == (1, 1, 4)
    assert "revised" in Entry.objects.get(guid="blog-example-2").body_text
    blog.refresh_from_db()
    assert blog.body_digest not in ("", before)


def test_a_forced_run_parses_the_same_body_again(blog, feed_server):
    ingest()
    Entry.objects.filter(guid="blog-example-1").delete()  # deleted by hand, no tombstone
    due_again()
    assert ingest()["totals"]["same_body"] == 1  # a same body brings nothing back
    assert not Entry.objects.filter(guid="blog-example-1").exists()
    forced = ingest("--all")
    assert forced["totals"]["same_body"] == 0 and forced["totals"]["not_modified"] == 0
    assert (forced["totals"]["created"], forced["totals"]["unchanged"]) == (1, 4)
    assert Entry.objects.filter(guid="blog-example-1").exists()


def test_a_failed_store_keeps_the_old_digest_and_the_next_run_parses(blog, feed_server):
    ingest()
    blog.refresh_from_db()
    old = blog.body_digest
    feed_server.add("/blog.rss", BLOG_CHANGED)
    due_again()
    owner = "test-owner"
    (source,) = sources_claim(ids=[blog.pk], owner=owner, now=timezone.now())
    settings = fetching.FetchSettings.from_settings()
    with fetching.make_client(settings) as client:
        fetched = source_fetch_parse(source, client=client, fetch_settings=settings)
    assert fetched.feed is not None and fetched.digest != old
    # The lease expires and another run takes the source over: this store must not commit.
    TechnicalArticle.objects.filter(pk=blog.pk).update(lease_owner="another-run")
    result = source_store(source=source, fetched=fetched, owner=owner)
    assert result.failed
    blog.refresh_from_db()
    assert blog.body_digest == old and "revised" not in Entry.objects.get(guid="blog-example-2").body_text
    TechnicalArticle.objects.filter(pk=blog.pk).update(lease_owner="", lease_expires_at=None)
    report = ingest()
    assert report["totals"]["same_body"] == 0 and report["totals"]["updated"] == 1
    blog.refresh_from_db()
    assert blog.body_digest == fetched.digest


def test_a_dry_run_of_a_same_body_reads_no_entry_and_writes_nothing(blog):
    ingest()
    blog.refresh_from_db()
    due_again()
    with CaptureQueriesContext(connection) as queries:
        report = ingest("--dry-run")
    assert report["totals"]["same_body"] == 1 and entry_statements(queries) == []
    assert TechnicalArticle.objects.get(pk=blog.pk).body_digest == blog.body_digest


def test_comment_feeds_with_the_same_body_are_not_modified(db, feed_server, settings):
    feed_server.conditional = False
    serve_wordpress(feed_server)
    first = ingest()
    assert first["comments"]["created"] == 3 and first["comments"]["same_body"] == 0
    assert all(len(digest) == 64 for digest in CommentFeed.objects.values_list("body_digest", flat=True))
    due_again()
    with CaptureQueriesContext(connection) as queries:
        report = ingest()
    assert report["totals"]["same_body"] == 1
    assert report["comments"] == {"feeds": 2, "created": 0, "updated": 0, "not_modified": 2, "failed": 0, "deferred": 0,
                                  "same_body": 2}
    assert entry_statements(queries) == []
    assert feed_server.last_status("/comments/covering.rss") == 200
    due_again()
    out = run_text()
    assert "; comment feeds: 2 polled, 0 new comments, 0 updated, 2 not modified (2 same body), 0 failed" in out
    # A changed comment feed is parsed; a forced run parses them all.
    comments = DATA / "comments"
    changed = recent_dates((comments / "covering.rss").read_text()).replace("Reader 2", "Reader Two")
    feed_server.add("/comments/covering.rss", changed)
    due_again()
    report = ingest()
    assert (report["comments"]["same_body"], report["comments"]["updated"]) == (1, 1)
    forced = ingest("--all")
    assert forced["comments"]["same_body"] == 0 and forced["comments"]["not_modified"] == 0
    assert sorted(Comment.objects.values_list("author_name", flat=True)) == ["Reader 1", "Reader 1", "Reader Two"]


def test_a_first_fetch_parses_whatever_digest_is_stored(blog):
    """A source that never succeeded (its history may be read) is parsed, even with a matching digest."""
    TechnicalArticle.objects.filter(pk=blog.pk).update(body_digest="0" * 64)
    assert ingest()["totals"]["created"] == 5


def test_the_digest_changes_with_what_changes_the_parse():
    base = dict(url="http://a.example/feed", headers={"Content-Type": "application/rss+xml"}, source_url="http://a.example/feed")
    digest = body_digest(b"<rss/>", **base)
    assert digest == body_digest(b"<rss/>", **{**base, "headers": {"content-type": "application/rss+xml", "etag": '"x"'}})
    assert len({
        digest,
        body_digest(b"<rss />", **base),
        body_digest(b"<rss/>", **{**base, "url": "http://a.example/moved"}),
        body_digest(b"<rss/>", **{**base, "headers": {"Content-Type": "application/atom+xml"}}),
        body_digest(b"<rss/>", **{**base, "headers": {**base["headers"], "Content-Location": "http://b.example/"}}),
        body_digest(b"<rss/>", **{**base, "headers": {**base["headers"], "Content-Language": "de"}}),
        body_digest(b"<rss/>", **{**base, "source_url": "http://a.example/other"}),
        body_digest(b"<rss/>", **{**base, "kind": "comments"}),
        body_digest(b"<rss/>", **{**base, "options": {"INGEST_CROSS_FEED_DEDUP": False}}),
    }) == 9


def test_a_pruned_source_is_parsed_again(blog, feed_server):
    """New tombstones change what the next parse stores: the digest is forgotten."""
    feed_server.add("/blog.rss", rss([rss_item(f"g{i}", f"Entry {i}") for i in range(3)]))
    ingest()
    TechnicalArticle.objects.filter(pk=blog.pk).update(retention_max_entries=1)
    call_command("prune_entries", stdout=StringIO(), stderr=StringIO())
    assert Entry.objects.count() == 1
    assert TechnicalArticle.objects.get(pk=blog.pk).body_digest == ""
    due_again()
    report = ingest()
    assert report["totals"]["same_body"] == 0 and report["totals"]["created"] == 0


def test_the_celery_fan_out_skips_a_same_body_and_a_forced_run_parses_it(blog):
    from ingest.services.fanout import ingest_dispatch, source_ingest

    ingest()
    due_again()
    run_id, owner, claimed = ingest_dispatch()
    result = source_ingest(source_id=claimed[0], owner=owner, run_id=run_id)
    assert (result.outcome, result.same_body) == ("not_modified", True)
    run_id, owner, claimed = ingest_dispatch(force=True)
    forced = source_ingest(source_id=claimed[0], owner=owner, run_id=run_id, force=True)
    assert (forced.outcome, forced.same_body, forced.unchanged) == ("unchanged", False, 5)


def test_a_pushed_body_makes_the_next_poll_parse(blog):
    """A WebSub push (maybe only the new entries) is stored as a push is, and the polled document's
    digest is forgotten: what parsing it would store has changed."""
    from ingest.services.fetch_parse import source_parse_pushed

    ingest()
    owner = "push-owner"
    (source,) = sources_claim(ids=[blog.pk], owner=owner, now=timezone.now())
    fetched = source_parse_pushed(source, content=BLOG_CHANGED, headers={"content-type": "application/rss+xml"})
    assert source_store(source=source, fetched=fetched, owner=owner).created == 1
    assert TechnicalArticle.objects.get(pk=blog.pk).body_digest == ""
    due_again()
    report = ingest()
    assert report["totals"]["same_body"] == 0 and report["totals"]["updated"] == 1  # the polled document, parsed
    due_again()
    assert ingest()["totals"]["same_body"] == 1
