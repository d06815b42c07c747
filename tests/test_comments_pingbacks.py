"""Comment feeds (wfw:commentRss) and pingbacks between stored entries, through ``ingest_feeds``."""

import pytest

from ingest.models import Comment, Entry, Pingback, TechnicalArticle
from ingest.links import link_key, normalize_url
from tests.helpers import DATA, ingest, serve_wordpress


def test_comment_feeds_are_ingested_and_counters_match(db, feed_server, settings):
    settings.INGEST_COMMENTS_DAYS = 36500  # the sample posts are dated 2026-11
    serve_wordpress(feed_server)
    report = ingest()
    assert report["comments"]["feeds"] == 2 and report["comments"]["created"] == 3
    covering = Entry.objects.get(guid="https://indexing.example/?p=101")
    assert covering.reported_comments == 2
    assert covering.comments.count() == 2 and covering.number_of_comments == 2
    assert all("<script" not in c.body for c in Comment.objects.all())
    assert sorted(Comment.objects.values_list("author_name", flat=True)) == ["Reader 1", "Reader 1", "Reader 2"]
    # Second run: comment feeds answer 304, nothing changes.
    again = ingest("--all")
    assert again["comments"]["not_modified"] == 2 and Comment.objects.count() == 3


def test_comment_feeds_are_not_fetched_when_switched_off(db, feed_server):
    serve_wordpress(feed_server, fetch_comments=False)
    ingest()
    assert Comment.objects.count() == 0
    assert not [r for r in feed_server.requests if r.path.startswith("/comments/")]


def test_old_entries_comment_feeds_are_not_polled(db, feed_server, settings):
    settings.INGEST_COMMENTS_DAYS = 0
    serve_wordpress(feed_server)
    ingest()
    assert Comment.objects.count() == 0


def test_pingbacks_link_variants_self_links_and_unknown_urls(db, feed_server):
    serve_wordpress(feed_server, fetch_comments=False)
    ingest()
    covering = Entry.objects.get(guid="https://indexing.example/?p=101")
    filtered = Entry.objects.get(guid="https://indexing.example/?p=102")
    # covering links to filtered (recorded), to itself in another spelling (ignored) and to an unknown URL (ignored).
    assert list(Pingback.objects.values_list("source_entry_id", "target_id")) == [(covering.pk, filtered.pk)]
    assert Pingback.objects.get().source_url == covering.link
    filtered.refresh_from_db()
    assert filtered.number_of_pingbacks == 1 and covering.number_of_pingbacks == 0


def test_pingback_is_found_whichever_entry_arrives_first(db, feed_server):
    body = (DATA / "comments" / "wordpress.rss").read_text().replace("__BASE__", feed_server.base_url)
    first_only_linker = body.replace(body[body.index("  <item>\n    <title>Filtered"):body.index("</channel>")], "")
    feed_server.add_sequence("/wp.rss", [dict(body=first_only_linker), dict(body=body)])
    TechnicalArticle.objects.create(name="wp", feed_url=feed_server.url("/wp.rss"))
    ingest()
    assert Pingback.objects.count() == 0  # the target is not stored yet
    ingest("--all")
    target = Entry.objects.get(guid="https://indexing.example/?p=102")
    assert Pingback.objects.get().target_id == target.pk
    assert Entry.objects.get(pk=target.pk).number_of_pingbacks == 1
    ingest("--all")
    assert Pingback.objects.count() == 1  # idempotent


@pytest.mark.nodb
@pytest.mark.parametrize("a, b", [
    ("https://Example.COM/post/", "https://example.com/post"),
    ("http://example.com:80/post", "http://example.com/post"),
    ("https://example.com:443/post#comments", "https://example.com/post"),
])
def test_url_variants_share_a_link_key(a, b):
    assert normalize_url(a) == normalize_url(b)
    assert link_key(a) == link_key(b)
