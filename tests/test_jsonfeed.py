"""JSON Feed 1.0 and 1.1: the specification's examples, what is refused and why, the same entries as
RSS, and JSON Feeds ingested through ``ingest_feeds`` from the loopback feed server."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ingest.errors import ParseError
from ingest.models import Entry
from ingest.parse import parse_feed
from ingest.parse.jsonfeed import JSON_MAX_DEPTH
from ingest.parsepool import ParsePool
from ingest.services.sources import source_add
from ingest.types import ParsedAuthor, ParsedEnclosure
from tests.helpers import DATA, ROOT, ingest

JSONFEED = DATA / "jsonfeed"
REAL_FEEDS = ROOT.parent / "shared" / "corpus" / "real-feeds"
V1 = "https://jsonfeed.org/version/1"
V11 = "https://jsonfeed.org/version/1.1"
FEED_URL = "https://example.org/feed.json"


def load(name: str, **kwargs):
    return parse_feed((JSONFEED / name).read_bytes(), url=kwargs.pop("url", FEED_URL), **kwargs)


def document(items=(), **fields) -> bytes:
    return json.dumps({"version": V11, "title": "T", **fields, "items": list(items)}).encode()


# --- the specification's examples -----------------------------------------------------------------


def test_the_1_0_example_reads_as_a_feed_with_its_two_items():
    feed = load("simple-1.0.json")
    assert (feed.title, feed.site_url, feed.self_url, feed.hub_url) == (
        "My Example Feed", "https://example.org/", FEED_URL, "")
    assert [(e.guid, e.headline, e.link, e.body_text) for e in feed.entries] == [
        ("2", "", "https://example.org/second-item", "This is a second item."),
        ("1", "", "https://example.org/initial-post", "<p>Hello, world!</p>"),
    ]
    assert all(e.published_at is None and e.authors == () and len(e.content_hash) == 64 for e in feed.entries)
    assert feed.warning == ""


def test_the_1_1_example_with_authors_hubs_dates_and_extensions():
    feed = load("simple-1.1.json")
    assert feed.tagline.startswith("The example of the JSON Feed 1.1 specification")
    assert feed.hub_url == "https://hub.example.org/"  # the WebSub hub, not the rssCloud one
    assert feed.self_url == FEED_URL
    second, first = feed.entries
    # An item's own authors; a name is plain text; an author without a name is no author.
    assert second.authors == (ParsedAuthor(name="Guest Writer", email=""),)
    assert second.published_at == datetime(2020, 8, 7, 16, 44, 36, tzinfo=UTC) and second.updated_at is None
    # Without authors of its own, an item has the feed's.
    assert first.authors == (ParsedAuthor(name="Example Author", email=""),)
    assert first.headline == "Initial post"
    assert first.published_at == datetime(2020, 8, 1, 9, 0, tzinfo=UTC)
    assert first.updated_at == datetime(2020, 8, 2, 8, 30, tzinfo=UTC)
    # Sanitized as any body is: no script, a relative link made absolute against the feed's URL.
    assert "<script" not in first.body_text and 'href="https://example.org/world"' in first.body_text
    assert feed.warning == ""  # the "_example" extensions are ignored, not reported


def test_a_podcast_s_attachments_are_its_enclosures():
    entry, = load("podcast.json", url="http://therecord.co/feed.json").entries
    assert entry.enclosures == (
        ParsedEnclosure(url="http://therecord.co/downloads/The-Record-sp1e1-ChrisParrish.m4a", type="audio/x-m4a",
                        length=89970236, kind="enclosure"),
        ParsedEnclosure(url="http://therecord.co/downloads/The-Record-sp1e1-ChrisParrish.mp3", type="audio/mpeg",
                        length=None, kind="enclosure"),
    )
    # content_html is preferred to content_text and to the summary.
    assert '<a href="http://adobe.com/" rel="noopener noreferrer">Adobe</a>' in entry.body_text
    assert len(entry.link_keys) == 3
    assert entry.published_at == datetime(2014, 5, 9, 21, 4, tzinfo=UTC)


def test_a_microblog_post_with_content_text_only():
    feed = load("microblog.json")
    entry, = feed.entries
    assert feed.title == "Brent Simmons’s Microblog"
    assert entry.headline == ""  # an untitled post, as an untitled RSS item
    assert entry.body_text == "Cats are neat. \n\nhttps://example.org/cats"
    assert entry.authors == (ParsedAuthor(name="Brent Simmons", email=""),)  # 1.0's feed-level "author"
    assert entry.published_at == datetime(2016, 2, 9, 21, 22, tzinfo=UTC)


def test_text_is_escaped_into_html_as_the_xml_path_escapes_it():
    entry, = parse_feed(document([{"id": "1", "content_text": "1 < 2 & <b>bold</b>"}])).entries
    assert entry.body_text == "1 &lt; 2 &amp; &lt;b&gt;bold&lt;/b&gt;"


# --- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/feed+json", "application/json; charset=utf-8",
                                          "application/vnd.example+json", "text/plain", "application/rss+xml"])
def test_a_json_feed_is_read_whatever_its_content_type(content_type):
    body = (JSONFEED / "simple-1.1.json").read_bytes()
    headers = {"Content-Type": content_type} if content_type else None
    assert parse_feed(body, headers=headers, url=FEED_URL) == load("simple-1.1.json")


def test_rss_served_as_json_is_still_read_as_rss():
    body = b'<rss version="2.0"><channel><title>R</title><item><guid>g</guid><title>x</title></item></channel></rss>'
    feed = parse_feed(body, headers={"content-type": "application/json"})
    assert feed.title == "R" and [e.guid for e in feed.entries] == ["g"]


def test_a_byte_order_mark_and_leading_whitespace_do_not_hide_a_json_feed():
    assert len(parse_feed(b"\xef\xbb\xbf \n" + document([{"id": "1"}])).entries) == 1


# --- what is refused ------------------------------------------------------------------------------

DEEP = b'{"version": "%s", "items": [], "x": %s%s}' % (V11.encode(), b"[" * 200_000, b"]" * 200_000)


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (b"[1, 2]", {"content-type": "application/json"}, "JSON but not a JSON Feed: the document is an array"),
        (b'"feed"', {"content-type": "application/feed+json"}, "JSON but not a JSON Feed: the document is a string"),
        (b'{"title": "no version", "items": []}', None, 'JSON but not a JSON Feed: its "version"'),
        (b'{"version": "https://example.com/version/1", "items": []}', None, 'JSON but not a JSON Feed: its "version"'),
        (b'{"version": 1, "items": []}', None, 'JSON but not a JSON Feed: its "version"'),
        (b'{"version": "%s"}' % V1.encode(), None, 'no "items" list \\(it is missing or null\\)'),
        (b'{"version": "%s", "items": {}}' % V1.encode(), None, 'no "items" list \\(it is an object\\)'),
        (b'{"version": "%s", "items": "none"}' % V1.encode(), None, 'no "items" list \\(it is a string\\)'),
        (b'{"version": "%s", "items": [],}' % V1.encode(), None, "not valid JSON: .* at line 1, column"),
        (b'{"version": "\xff\xfe\xfa"}', None, "not valid UTF-8 text"),
        (DEEP, None, f"nests deeper than {JSON_MAX_DEPTH} levels"),
        (b"", {"content-type": "application/feed+json"}, "empty"),
    ],
    ids=["array", "string", "no-version", "other-version", "number-version", "no-items", "items-object",
         "items-string", "trailing-comma", "not-utf8", "deep", "empty"],
)
def test_what_is_not_a_json_feed_raises_parse_error_with_a_sentence(body, headers, reason):
    with pytest.raises(ParseError, match=reason) as raised:
        parse_feed(body, headers=headers)
    assert str(raised.value).endswith(".")


def test_nesting_up_to_the_limit_is_read_and_one_level_more_is_refused():
    def nested(levels):  # the feed object is level 1, "x" holds the rest
        return b'{"version": "%s", "items": [], "x": %s1%s}' % (V11.encode(), b"[" * (levels - 1), b"]" * (levels - 1))

    assert parse_feed(nested(JSON_MAX_DEPTH)).entries == ()
    with pytest.raises(ParseError, match="nests deeper"):
        parse_feed(nested(JSON_MAX_DEPTH + 1))
    # Brackets inside strings are text, however many.
    items = [{"id": "1", "content_text": "[" * 1000 + '"{' * 500}]
    assert parse_feed(document(items)).entries[0].body_text.startswith("[[[")


def test_hostile_nesting_fails_in_the_parse_pool_as_in_the_thread():
    with ParsePool(1, timeout=20) as pool:
        with pytest.raises(ParseError, match="nests deeper"):
            pool.parse(parse_feed, DEEP)
        # And a JSON Feed parses in a worker process exactly as here.
        body = (JSONFEED / "podcast.json").read_bytes()
        assert pool.parse(parse_feed, body, url=FEED_URL) == parse_feed(body, url=FEED_URL)
        assert pool.pids()


def test_a_huge_item_count_is_read_whole_with_duplicates_dropped():
    items = [{"id": str(n % 20_000), "title": f"item {n}"} for n in range(20_500)]
    feed = parse_feed(document(items))
    assert len(feed.entries) == 20_000
    assert feed.entries[0].headline == "item 0" and feed.entries[-1].headline == "item 19999"


def test_dates_that_are_wrong_are_dropped_and_reported():
    feed = parse_feed(document([
        {"id": "feb30", "date_published": "2023-02-30T10:00:00Z"},
        {"id": "words", "date_published": "last Tuesday", "date_modified": "2023-01-02T03:04:05+01:00"},
        {"id": "number", "date_published": 1700000000},
        {"id": "future", "date_published": "2999-01-01T00:00:00Z"},
    ]))
    dates = {e.guid: (e.published_at, e.updated_at) for e in feed.entries}
    assert dates == {
        "feb30": (None, None),
        # The published date falls back to the updated one, as an RSS or Atom entry's does.
        "words": (datetime(2023, 1, 2, 2, 4, 5, tzinfo=UTC), datetime(2023, 1, 2, 2, 4, 5, tzinfo=UTC)),
        "number": (None, None),
        "future": (None, None),
    }
    assert "2 date(s) that cannot exist (e.g. '2023-02-30T10:00:00Z')" in feed.warning  # Feb 30, year 2999
    assert "field(s) of the wrong type were ignored (e.g. items[2].date_published)" in feed.warning


def test_fields_of_the_wrong_type_are_ignored_and_counted():
    feed = parse_feed(document([
        {"id": 42, "title": 5, "url": ["https://example.org/x"], "content_html": {"a": 1}, "content_text": "kept"},
        7,
        {"id": True, "url": "https://example.org/bool", "authors": "bob", "attachments": "file.mp3"},
        {"id": ["x"], "author": 3, "attachments": [1, {"url": 2}, {"url": "ftp://example.org/f", "mime_type": "a/b"},
                                                  {"url": "https://example.org/f", "size_in_bytes": "12"}]},
        {"external_url": "https://elsewhere.example/post", "title": "no id"},
        {"title": "no id, no url", "date_published": "2024-01-01T00:00:00Z"},
        {"id": "", "url": "https://example.org/empty-id"},
    ], title=["not", "a", "string"], hubs="https://hub.example/"))
    guids = [e.guid for e in feed.entries]
    assert len(guids) == 6  # the item that is no object is skipped
    # A number is an id's text; an id that is missing, empty or no string or number falls back as an
    # RSS item without a guid does: its link, else a digest of its title and date.
    assert guids[0] == "42" and guids[1] == "https://example.org/bool" and guids[3] == "https://elsewhere.example/post"
    assert guids[2].startswith("sha256:") and guids[4].startswith("sha256:")
    assert guids[5] == "https://example.org/empty-id"
    assert feed.title == "" and feed.hub_url == ""
    first = feed.entries[0]
    assert (first.headline, first.link, first.body_text) == ("", "", "kept")
    assert feed.entries[2].enclosures == (ParsedEnclosure(url="https://example.org/f"),)
    assert feed.warning.startswith("14 JSON Feed field(s) of the wrong type were ignored (e.g. title)")


# --- the same entries as RSS ----------------------------------------------------------------------

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom">
<channel><title>Tom &amp; Jerry's blog</title><link>https://blog.example/</link>
<description>Cartoons, mostly</description>
<atom:link rel="hub" href="https://hub.example/"/><atom:link rel="self" href="https://blog.example/feed"/>
<item><guid isPermaLink="false">post-1</guid><title>Tom &amp; Jerry</title><link>https://blog.example/1</link>
<description>&lt;p&gt;See &lt;a href="/2"&gt;the next one&lt;/a&gt; and &lt;a href="https://other.example/"&gt;this&lt;/a&gt;&lt;/p&gt;</description>
<pubDate>Tue, 01 Sep 2026 10:00:00 +0200</pubDate><dc:creator>Jane Doe</dc:creator><dc:creator>John Roe</dc:creator></item>
<item><guid>https://blog.example/2</guid><title>Second</title><link>https://blog.example/2</link>
<description>&lt;p&gt;Short&lt;/p&gt;</description><pubDate>Wed, 02 Sep 2026 08:00:00 GMT</pubDate></item>
</channel></rss>"""

JSON = json.dumps({
    "version": V11, "title": "Tom & Jerry's blog", "home_page_url": "https://blog.example/",
    "description": "Cartoons, mostly", "feed_url": "https://blog.example/feed",
    "hubs": [{"type": "WebSub", "url": "https://hub.example/"}],
    "items": [
        {"id": "post-1", "title": "Tom & Jerry", "url": "https://blog.example/1",
         "content_html": '<p>See <a href="/2">the next one</a> and <a href="https://other.example/">this</a></p>',
         "date_published": "2026-09-01T10:00:00+02:00", "authors": [{"name": "Jane Doe"}, {"name": "John Roe"}]},
        {"id": "https://blog.example/2", "title": "Second", "url": "https://blog.example/2",
         "content_html": "<p>Short</p>", "date_published": "2026-09-02T08:00:00Z"},
    ],
}).encode()


def test_rss_and_json_feed_with_the_same_items_give_the_same_entries():
    now = datetime(2026, 10, 1, tzinfo=UTC)
    from_rss = parse_feed(RSS, url="https://blog.example/feed", now=now)
    from_json = parse_feed(JSON, url="https://blog.example/feed", now=now)
    assert from_json.entries == from_rss.entries  # content hash and link keys included
    assert from_json.entries[0].link_keys and from_json.entries[0].content_hash
    for field in ("title", "site_url", "tagline", "hub_url", "self_url", "warning", "hints"):
        assert getattr(from_json, field) == getattr(from_rss, field), field


# --- through the command --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["application/feed+json", "application/json"])
def test_ingest_feeds_stores_a_json_feed_and_a_second_run_is_not_modified(db, feed_server, content_type):
    feed_server.add("/feed.json", (JSONFEED / "simple-1.1.json").read_bytes(), content_type=content_type,
                    etag='"j1"')
    feed_server.add("/podcast.json", (JSONFEED / "podcast.json").read_bytes(), content_type=content_type)
    source, _ = source_add(url=feed_server.url("/feed.json"))
    source_add(url=feed_server.url("/podcast.json"))

    report = ingest()
    assert report["status"] == "succeeded", report
    assert report["totals"]["created"] == 3 and report["totals"]["failed"] == 0
    source.refresh_from_db()
    assert source.name == "My Example Feed" and source.site_url == "https://example.org/"
    stored = Entry.objects.get(technical_article=source, guid="1")
    assert stored.headline == "Initial post" and "Hello" in stored.body_text and "<script" not in stored.body_text
    assert list(stored.authors.values_list("name", flat=True)) == ["Example Author"]
    assert Entry.objects.get(guid="http://therecord.co/chris-parrish").headline == "Special #1 - Chris Parrish"

    again = ingest("--all")
    outcomes = {s["url"].rsplit("/", 1)[1]: s["outcome"] for s in again["sources"]}
    assert outcomes == {"feed.json": "not_modified", "podcast.json": "unchanged"}
    assert [r for r in feed_server.requests if r.path == "/feed.json"][-1].headers.get("if-none-match") == '"j1"'
    assert Entry.objects.count() == 3


def test_json_that_is_not_a_json_feed_fails_its_source_with_the_reason(db, feed_server):
    feed_server.add("/api.json", b'{"status": "ok", "items": []}', content_type="application/json")
    source_add(url=feed_server.url("/api.json"))
    report = ingest()
    result, = report["sources"]
    assert result["outcome"] == "failed"
    assert result["error"].startswith("The response is JSON but not a JSON Feed")


@pytest.mark.skipif(not (REAL_FEEDS / "d4b7ab74da763119").is_file(), reason="the shared corpus is not there")
def test_the_corpus_json_feed_is_ingested(db, feed_server):
    path = REAL_FEEDS / "d4b7ab74da763119"  # https://humanwhocodes.com/feeds/all.json
    items = json.loads(path.read_bytes())["items"]
    feed_server.add("/all.json", file=path, content_type="application/json")
    source, _ = source_add(url=feed_server.url("/all.json"))

    report = ingest()
    assert report["status"] == "succeeded", report
    assert report["totals"]["created"] == len(items) == 10
    source.refresh_from_db()
    assert source.name == "Human Who Codes"
    assert set(Entry.objects.values_list("guid", flat=True)) == {item["id"] for item in items}
    assert all(entry.published_at and entry.body_text for entry in Entry.objects.all())
    assert source.last_error == ""
