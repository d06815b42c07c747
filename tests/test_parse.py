"""parse: feed bytes + headers -> ParsedFeed / ParsedComment, and the URL helpers. No database, no network."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ingest.errors import ParseError
from ingest.links import extract_links, link_key, normalize_url
from ingest.parse import parse_comments, parse_feed
from ingest.types import AUTHOR_NAME_MAX, EMAIL_MAX, GUID_MAX, HEADLINE_MAX, LINK_MAX, ParsedAuthor, ParsedFeed

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "parse"
SAMPLES = ROOT / "samples" / "feeds"
ILLFORMED = ROOT.parent / "shared" / "corpus" / "feedparser-tests" / "illformed"
NOW = datetime(2025, 6, 1, tzinfo=timezone.utc)
UTC = timezone.utc


def load(name: str, **kwargs) -> ParsedFeed:
    return parse_feed((DATA / name).read_bytes(), now=NOW, **kwargs)


def test_column_widths_match_the_models():
    from ingest.models import Author, Comment, Entry

    assert Entry._meta.get_field("guid").max_length == GUID_MAX
    assert Entry._meta.get_field("headline").max_length == HEADLINE_MAX
    assert Entry._meta.get_field("link").max_length == LINK_MAX
    assert Entry._meta.get_field("comments_feed_url").max_length == LINK_MAX
    assert Author._meta.get_field("name").max_length == AUTHOR_NAME_MAX
    assert Author._meta.get_field("email").max_length == EMAIL_MAX
    assert Comment._meta.get_field("guid").max_length == GUID_MAX


# --- identity -------------------------------------------------------------------------------------


def test_guid_is_the_entry_id_else_the_link_else_a_hash_of_title_and_date():
    with_id, link_only, hashed, other_hashed, _ = load("identity.xml").entries

    assert with_id.guid == "urn:uuid:6f1c2a7e-3d7b-4c6e-9a51-0b8f2e4d1c33"
    assert link_only.guid == "https://identity.example/posts/link-only"
    assert hashed.guid.startswith("sha256:") and len(hashed.guid) == len("sha256:") + 64
    assert hashed.guid != other_hashed.guid
    assert load("identity.xml").entries[2].guid == hashed.guid


def test_duplicate_guids_collapse_to_the_first_occurrence():
    entries = load("identity.xml").entries

    assert len(entries) == 5
    [kept] = [entry for entry in entries if entry.guid == "urn:uuid:6f1c2a7e-3d7b-4c6e-9a51-0b8f2e4d1c33"]
    assert kept.headline == "Has a guid and a link"


def test_guid_longer_than_the_column_becomes_its_stable_hash():
    long_guid = "tag:identity.example,2025:" + "0123456789" * 30

    entry = load("identity.xml").entries[-1]

    assert entry.guid == "sha256:" + hashlib.sha256(long_guid.encode()).hexdigest()
    assert len(entry.guid) <= GUID_MAX


# --- column limits --------------------------------------------------------------------------------


def test_long_values_are_cut_to_their_columns_and_an_overlong_link_is_dropped():
    fits, too_long = load("limits.atom").entries

    assert fits.headline.startswith("Headline Headline") and len(fits.headline) <= HEADLINE_MAX
    assert len(fits.link) == LINK_MAX
    assert too_long.link == ""
    # A cut address would be someone else's: an email over the column is dropped, not cut.
    assert fits.authors == (ParsedAuthor("N" * AUTHOR_NAME_MAX, ""),)


# --- dates ----------------------------------------------------------------------------------------


def test_dates_fall_back_from_published_to_updated_to_created():
    entries = {entry.guid.rsplit(":", 1)[1]: entry for entry in load("dates.atom").entries}

    both = entries["published-and-updated"]
    assert both.published_at == datetime(2025, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert both.published_at.utcoffset().total_seconds() == 0
    assert both.updated_at == datetime(2025, 1, 3, tzinfo=UTC)
    updated = datetime(2025, 2, 1, 12, 30, tzinfo=UTC)
    assert (entries["updated-only"].published_at, entries["updated-only"].updated_at) == (updated, updated)
    assert entries["created-only"].published_at == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert entries["created-only"].updated_at is None


@pytest.mark.parametrize("key", ["none", "unparseable", "far-future", "day-after-tomorrow"])
def test_missing_unparseable_or_future_dates_are_none(key):
    [entry] = [entry for entry in load("dates.atom").entries if entry.guid.endswith(":" + key)]

    assert (entry.published_at, entry.updated_at) == (None, None)


def test_absurd_dates_are_skipped_and_small_clock_skew_is_tolerated():
    entries = {entry.guid.rsplit(":", 1)[1]: entry for entry in load("dates.atom").entries}

    assert entries["before-1970"].published_at == datetime(2025, 4, 1, tzinfo=UTC)
    assert entries["later-today"].published_at == datetime(2025, 6, 1, 12, tzinfo=UTC)


# --- authors --------------------------------------------------------------------------------------


def test_atom_authors_keep_feed_order_and_emails_and_collapse_repeats():
    several, email_only, unicode_name, bad_email = load("authors.atom").entries

    assert several.authors == (
        ParsedAuthor("Grace Okonkwo", "grace@authors.example"),
        ParsedAuthor("Mateo Silva", "mateo.silva@authors.example"),
    )
    assert email_only.authors == (ParsedAuthor("carol.nguyen", "carol.nguyen@authors.example"),)
    assert unicode_name.authors == (ParsedAuthor("Désirée O’Neil", ""),)
    assert bad_email.authors == (ParsedAuthor("Ivan Petrov", ""),)


def test_rss_creators_and_author_elements():
    two_creators, creator_and_author = load("authors.xml").entries

    assert two_creators.authors == (ParsedAuthor("Ann Lee", ""), ParsedAuthor("Bo Chen", ""))
    assert creator_and_author.authors == (ParsedAuthor("Ann Lee", "ann.lee@example.com"),)


# --- headline and body ----------------------------------------------------------------------------


def test_body_loses_scripts_handlers_and_active_elements_but_keeps_formatting():
    hostile = load("sanitize.xml", url="https://sanitize.example/feed/").entries[0]
    body = hostile.body_text

    for banned in ("<script", "document.", "onclick", "onmouseover", "onerror", "javascript:", "<style",
                   "display: none", "<iframe", "<object", "<embed", "<form", "<input"):
        assert banned not in body.lower()
    for kept in ("<h2>Heading</h2>", "<strong>bold</strong>", "<em>italic</em>", "<code>code</code>",
                 "<li>one</li>", "<blockquote><p>Quoted</p></blockquote>", "<td>cell</td>", "if a &lt; b:",
                 'href="https://sanitize.example/ok"'):
        assert kept in body
    assert "short summary" not in body  # the full content wins over the description


def test_relative_urls_in_the_body_resolve_against_the_feed_url_and_xml_base():
    hostile = load("sanitize.xml", url="https://sanitize.example/feed/").entries[0]
    xhtml = load("sanitize.atom").entries[1]

    assert 'href="https://sanitize.example/docs/relative"' in hostile.body_text
    assert '<img src="https://sanitize.example/img/chart.png" alt="Chart">' in hostile.body_text
    assert xhtml.body_text == (
        '<p>See <a href="https://atom.sanitize.example/blog/posts/second" rel="noopener noreferrer">'
        "the second post</a>.</p>"
    )


def test_summary_is_the_body_when_there_is_no_content():
    summary_only = load("sanitize.xml").entries[1]

    assert summary_only.body_text == "<p>Only a <em>description</em></p>"


def test_plain_text_content_is_escaped_not_interpreted():
    text = load("sanitize.atom").entries[0]

    assert text.body_text == "Plain text content: &lt;script&gt;alert(1)&lt;/script&gt; stays visible &amp; harmless."
    # A headline is shown by templates and API clients that may not escape it: even in a
    # text-typed title, what reads as a tag loses its brackets (its words stay).
    assert text.headline == "Plain text with angle brackets"


def test_headline_and_feed_fields_are_plain_text():
    rss = load("sanitize.xml")
    atom = load("sanitize.atom")

    assert rss.entries[0].headline == "Tags stripped & entities decoded"
    assert atom.entries[1].headline == "XHTML title"
    assert atom.title == "Feed title"
    assert atom.tagline == "Tagline with markup"
    assert atom.site_url == "https://atom.sanitize.example/"


def test_no_value_carries_a_nul_character():
    content = (DATA / "nul.atom").read_bytes()
    feed = parse_feed(content)
    comments = parse_comments(content)

    values = [feed.title, feed.tagline, feed.site_url]
    for entry in feed.entries:
        values += [entry.guid, entry.headline, entry.body_text, entry.link, entry.comments_feed_url]
        values += [field for author in entry.authors for field in (author.name, author.email)]
    for comment in comments:
        values += [comment.guid, comment.author_name, comment.author_email, comment.body]
    assert len(feed.entries) == len(comments) == 2
    assert not [value for value in values if "\x00" in value]


# --- comment pointers -----------------------------------------------------------------------------


def test_comment_feed_url_and_reported_count():
    entries = load("threads.xml", url="https://threads.example/feed/").entries

    assert [(entry.comments_feed_url, entry.reported_comments) for entry in entries] == [
        ("https://threads.example/posts/1/feed/", 12),
        ("https://threads.example/posts/2/feed/", None),  # relative pointer resolved; "many" is no count
        ("", 7),  # ftp: is not fetched; thr:total counts when slash:comments is absent
        ("", None),
    ]
    assert [entry.reported_comments for entry in load("threads.atom").entries] == [5, None]


def test_relative_urls_resolve_against_content_location_and_stay_unresolved_without_a_base():
    content = (DATA / "threads.xml").read_bytes()

    via_header = parse_feed(content, headers={"content-location": "https://threads.example/feed/"})
    relative_header = parse_feed(content, headers={"content-location": "/feed/"}, url="https://threads.example/x")
    no_base = parse_feed(content)

    assert via_header.entries[1].comments_feed_url == "https://threads.example/posts/2/feed/"
    assert relative_header.entries[1].comments_feed_url == "https://threads.example/posts/2/feed/"
    assert no_base.entries[1].comments_feed_url == ""


# --- comment feeds --------------------------------------------------------------------------------


def test_wordpress_comment_feed():
    comments = parse_comments((DATA / "comments.xml").read_bytes(), now=NOW)

    assert [comment.guid for comment in comments] == [
        "https://comments.example/?p=88#comment-301",
        "https://comments.example/?p=88#comment-302",
        "https://comments.example/2025/05/partitioning/#comment-305",  # no guid: the link
    ]
    first, spam, anonymous = comments
    assert (first.author_name, first.author_email) == ("Nadia Haddad", "")
    assert first.body == "<p>Did you use <code>pg_partman</code> or roll your own?</p>"
    assert first.published_at == datetime(2025, 5, 5, 9, 12, tzinfo=UTC)
    assert spam.body == '<p>Great post <a rel="noopener noreferrer">click</a></p>'
    assert (anonymous.author_name, anonymous.body) == ("", "No author element, no guid.")


def test_atom_comment_feed_with_author_email():
    [comment] = parse_comments((DATA / "comments.atom").read_bytes(), now=NOW)

    assert comment.guid == "tag:blogger.com,1999:blog-1.post-3"
    assert (comment.author_name, comment.author_email) == ("Omar Farouk", "omar@latency.example")
    assert comment.body == "Deadlines everywhere, <b>yes</b>."
    assert comment.published_at == datetime(2025, 5, 2, 15, tzinfo=UTC)


# --- content hash ---------------------------------------------------------------------------------

_AUTHORS = (
    b"<author><name>First Author</name><email>first@hash.example</email></author>\n"
    b"    <author><name>Second Author</name><email>second@hash.example</email></author>"
)
HASH_EDITS = {
    "guid": (b"urn:hash.example:entry", b"urn:hash.example:other"),
    "headline": (b"Every stored field", b"Every stored field, edited"),
    "body": (b"The body.", b"The body, edited."),
    "link": (b'href="https://hash.example/posts/every-field"', b'href="https://hash.example/posts/moved"'),
    "published": (b"<published>2025-05-01T10:00:00Z", b"<published>2025-05-01T10:00:01Z"),
    "updated": (b"<updated>2025-05-02T10:00:00Z", b"<updated>2025-05-02T10:00:01Z"),
    "author name": (b"Second Author", b"Second Writer"),
    "author email": (b"second@hash.example", b"second.author@hash.example"),
    "author order": (_AUTHORS, b"\n    ".join(reversed(_AUTHORS.split(b"\n    ")))),
    "comments feed": (b"every-field/feed/", b"every-field/comments/"),
    "reported comments": (b"<slash:comments>4<", b"<slash:comments>5<"),
}


@pytest.mark.parametrize(("old", "new"), HASH_EDITS.values(), ids=HASH_EDITS.keys())
def test_content_hash_changes_with_every_stored_field(old, new):
    original = (DATA / "hash.atom").read_bytes()
    assert original.count(old) == 1

    before = parse_feed(original, now=NOW).entries[0]
    after = parse_feed(original.replace(old, new), now=NOW).entries[0]

    assert after.content_hash != before.content_hash


def test_content_hash_ignores_what_is_not_stored():
    original = (DATA / "hash.atom").read_bytes()
    reworded = original.replace(b"<title>Content hash</title>", b"<title>Renamed feed</title>").replace(
        b"<slash:comments>", b'<category term="unstored"/><slash:comments>'
    )

    assert parse_feed(reworded).entries[0].content_hash == parse_feed(original).entries[0].content_hash


def test_content_hash_is_the_same_in_another_process():
    # Changing this value means every stored entry looks changed, and is rewritten, once.
    expected = "0f6c080099b2760f74411e8a730aa631c532aab2716d019bcd5cfd8e801c63dd"
    script = (
        "import sys; from pathlib import Path; from ingest.parse import parse_feed; "
        "print(parse_feed(Path(sys.argv[1]).read_bytes()).entries[0].content_hash)"
    )
    other = subprocess.run(
        [sys.executable, "-c", script, str(DATA / "hash.atom")],
        cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "2025"}, capture_output=True, text=True, check=True,
    ).stdout.strip()

    here = load("hash.atom").entries[0].content_hash
    assert other == here == expected


# --- not a feed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (b"", "empty"),
        (b" \r\n\t ", "empty"),
        ("not_a_feed.html", "HTML page"),
        ("garbage.bin", "not a readable feed"),
        ("sitemap.xml", "not an RSS or Atom feed"),
        (b'{"version": "https://example.com/version/1.1", "title": "JSON", "items": []}', "JSON"),
        (b'<rss version="2.0"><channel><item><title>&#xD800;</title></item></channel></rss', "not valid Unicode"),
    ],
    ids=["empty", "whitespace", "html", "garbage", "sitemap", "json-not-a-feed", "lone-surrogate"],
)
def test_what_is_not_a_feed_raises_parse_error_with_a_sentence(source, reason):
    content = source if isinstance(source, bytes) else (DATA / source).read_bytes()

    with pytest.raises(ParseError, match=reason) as raised:
        parse_feed(content, headers={"content-type": "text/html; charset=utf-8"})
    with pytest.raises(ParseError, match=reason):
        parse_comments(content)
    assert str(raised.value).endswith(".")


def test_feed_with_no_entries_is_not_an_error():
    feed = parse_feed(b'<rss version="2.0"><channel><title>Quiet</title></channel></rss>')

    assert (feed.title, feed.entries, feed.warning) == ("Quiet", (), "")


# --- encoding -------------------------------------------------------------------------------------


def test_charset_from_the_content_type_header_decodes_a_latin1_feed():
    feed = parse_feed(
        (DATA / "latin1.xml").read_bytes(), headers={"Content-Type": "application/rss+xml; charset=ISO-8859-1"}
    )

    assert (feed.title, feed.tagline) == ("Café crème", "Résumés et naïveté")
    [entry] = feed.entries
    assert entry.headline == "Crème brûlée à la carte"
    assert entry.body_text == "<p>Déjà vu, ½ price.</p>"
    assert feed.warning == ""


# --- URLs -----------------------------------------------------------------------------------------

CANONICAL = "https://indexpage.example/2025/02/17/reading-explain-analyze"


@pytest.mark.parametrize(
    "variant",
    [
        CANONICAL,
        CANONICAL + "/",
        "https://IndexPage.EXAMPLE/2025/02/17/reading-explain-analyze/",
        "HTTPS://indexpage.example/2025/02/17/reading-explain-analyze",
        "https://indexpage.example:443/2025/02/17/reading-explain-analyze/",
        CANONICAL + "/#buffers",
        "  " + CANONICAL + "/\n",
    ],
)
def test_normalize_url_variants_compare_equal(variant):
    assert normalize_url(variant) == CANONICAL
    assert link_key(variant) == hashlib.sha256(CANONICAL.encode()).hexdigest()


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("http://a.example", "http://a.example"),
        ("http://a.example/", "http://a.example"),
        ("http://a.example:80/", "http://a.example"),
        ("http://a.example:8080/x/?q=1#top", "http://a.example:8080/x?q=1"),
        ("http://[2001:DB8::1]:80/p/", "http://[2001:db8::1]/p"),
    ],
)
def test_normalize_url(url, normalized):
    assert normalize_url(url) == normalized


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("http://a.example/x", "https://a.example/x"),
        ("http://a.example:8080/x", "http://a.example/x"),
        ("http://a.example/x?page=2", "http://a.example/x?page=3"),
        ("http://a.example/X", "http://a.example/x"),
    ],
)
def test_normalize_url_keeps_what_identifies_a_resource(a, b):
    assert normalize_url(a) != normalize_url(b)


@pytest.mark.parametrize(
    "url", ["", "   ", "/relative/path", "ftp://a.example/x", "mailto:me@a.example", "javascript:alert(1)",
            "http://", "http://a.example:99999/", "http://[::1"],
)
def test_normalize_url_is_empty_for_anything_but_absolute_http(url):
    assert normalize_url(url) == ""
    assert link_key(url) == ""


def test_extract_links_resolves_deduplicates_and_keeps_only_http_targets():
    body = (
        '<p><a href="/b">relative</a> <a href="https://other.example/x#f">absolute</a> '
        '<a href="mailto:me@a.example">mail</a> <a>no target</a> <a href="/b">again</a> '
        '<a title="a &gt; b" href="https://other.example/q?a=1&amp;b=2">entity</a></p>'
        '<p>&lt;a href="https://fake.example/"&gt; is text</p><img src="https://img.example/i.png">'
    )

    assert extract_links(body, base_url="https://a.example/posts/1/") == (
        "https://a.example/b",
        "https://other.example/x#f",
        "https://other.example/q?a=1&b=2",
    )
    assert extract_links(body) == ("https://other.example/x#f", "https://other.example/q?a=1&b=2")


# --- samples and corpus ---------------------------------------------------------------------------

SAMPLE_FEEDS = sorted(SAMPLES.glob("*.xml"))


def test_the_demo_has_four_sample_feeds():
    assert [path.name for path in SAMPLE_FEEDS] == ["blogger.xml", "engineering.xml", "github.xml", "wordpress.xml"]


@pytest.mark.parametrize("path", SAMPLE_FEEDS, ids=lambda path: path.name)
def test_every_sample_feed_parses_cleanly(path):
    feed = parse_feed(
        path.read_bytes(), headers={"content-type": "application/xml"}, url=f"http://127.0.0.1:8000/{path.name}"
    )

    assert feed.warning == ""
    assert feed.title and feed.site_url
    assert 5 <= len(feed.entries) <= 8
    assert all(entry.headline and entry.body_text and entry.published_at for entry in feed.entries)


def test_wordpress_sample_comment_feeds_match_the_reported_counts():
    feed = parse_feed((SAMPLES / "wordpress.xml").read_bytes())

    assert len(feed.entries) == 6 and sum(entry.reported_comments for entry in feed.entries) == 14
    for entry in feed.entries:
        prefix, _, name = entry.comments_feed_url.rpartition("/")
        assert prefix == "http://feeds.sample.invalid/comments"
        assert len(parse_comments((SAMPLES / "comments" / name).read_bytes())) == entry.reported_comments


def test_sample_cross_links_reach_other_entries_through_url_variants():
    entries = [entry for path in SAMPLE_FEEDS for entry in parse_feed(path.read_bytes()).entries]
    by_key = {link_key(entry.link): entry for entry in entries if entry.link}

    pairs = [
        (entry, by_key.get(link_key(url)))
        for entry in entries
        for url in extract_links(entry.body_text, base_url=entry.link)
        if "indexpage.example" in url or by_key.get(link_key(url))
    ]

    resolved = [(source, target) for source, target in pairs if target is not None]
    assert len(resolved) == 15
    assert sum(source is target for source, target in resolved) == 1  # one self-link
    assert sum(target is None for _, target in pairs) == 1  # one link to an unknown article


ILLFORMED_FILES = sorted(ILLFORMED.rglob("*.xml")) if ILLFORMED.is_dir() else []


@pytest.mark.skipif(not ILLFORMED_FILES, reason=f"corpus folder {ILLFORMED} is absent")
def test_illformed_corpus_parses_or_raises_parse_error():
    for path in ILLFORMED_FILES:
        try:
            result = parse_feed(path.read_bytes())
        except ParseError:
            continue
        assert isinstance(result, ParsedFeed), path


# --- HTML limits: bodies that would make sanitizing superlinear are cut, normal ones never -------

import time  # noqa: E402  (kept with the tests that need it)

import ingest.parse.html as parse_module  # noqa: E402  (where the HTML limits live)
from ingest.parse import BODY_MAX_DEPTH, BODY_MAX_REOPENED  # noqa: E402

REAL_FEEDS = ROOT.parent / "shared" / "corpus" / "real-feeds"


def rss_with_bodies(*bodies: str) -> bytes:
    items = "".join(
        f"<item><guid>urn:limits:{number}</guid><title>Item {number}</title>"
        f"<description><![CDATA[{body}]]></description></item>"
        for number, body in enumerate(bodies)
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Limits</title>{items}</channel></rss>'.encode()


@pytest.fixture
def scan_every_body(monkeypatch):
    """Scan bodies of any size (small ones are otherwise scanned only past a per-feed allowance)."""
    monkeypatch.setattr(parse_module, "_SCAN_FROM_TAGS", 0)


def test_deeply_nested_html_is_cut_to_the_depth_limit_within_seconds():
    hostile = "<div>" * 100_000 + "the end"  # sanitized as is: a minute of html5ever
    started = time.monotonic()
    feed = parse_feed(rss_with_bodies(hostile, "<p>A normal <b>entry</b>.</p>"), now=NOW)
    elapsed = time.monotonic() - started

    assert elapsed < 10
    hostile_entry, normal_entry = feed.entries  # the entry is kept, with what came before the cut
    assert hostile_entry.body_text.count("<div>") == BODY_MAX_DEPTH
    assert "the end" not in hostile_entry.body_text
    assert normal_entry.body_text == "<p>A normal <b>entry</b>.</p>"
    assert feed.warning == (f"1 entry body was cut short to stay sanitizable (e.g. 'urn:limits:0': elements nested "
                            f"more than {BODY_MAX_DEPTH} deep)")


@pytest.mark.parametrize(
    "hostile, reason",
    [
        ("<b><i>" * 50_000, "nested more than"),
        ("<div/>" * 50_000, "nested more than"),  # "/>" closes nothing in HTML
        ("<div></span>" * 50_000, "nested more than"),  # end tags of elements that are not open
        ("<span><div></span></div>" * 30_000, "nested more than"),  # end tags a <div> keeps from closing
        ("<svg>" + "<g>" * 50_000, "nested more than"),
        ("".join(f"<div><b class=c{n}></div>x" for n in range(20_000)), "formatting elements left open"),
        ("".join(f"<b class=c{n}><p>x" for n in range(20_000)), "formatting elements left open"),
        ('<a title="<!--">' + "<div>" * 50_000 + "-->", "nested more than"),  # no comment: an attribute value
        ("<script><!--</script>" + "<div>" * 50_000 + "-->", "nested more than"),  # no comment: script text
        ("<svg><foreignObject>" + "<section/>" * 50_000, "nested more than"),  # HTML again: "/>" closes nothing
    ],
    ids=["b-i", "self-closed-div", "stray-end-tags", "blocked-end-tags", "svg", "reopened-b", "b-p",
         "comment-in-attribute", "comment-in-script", "html-in-svg"],
)
def test_markup_that_defeats_simple_counting_is_cut_too(hostile, reason):
    started = time.monotonic()
    feed = parse_feed(rss_with_bodies(hostile), now=NOW)

    assert time.monotonic() - started < 10
    assert reason in feed.warning
    assert len(feed.entries[0].body_text) < len(hostile) // 10


def test_a_body_longer_than_the_size_limit_keeps_its_start(monkeypatch):
    monkeypatch.setattr(parse_module, "BODY_MAX_CHARS", 1000)
    feed = parse_feed(rss_with_bodies("<p>" + "word " * 400 + "</p>", "<p>short</p>"), now=NOW)

    long_entry, short_entry = feed.entries
    assert long_entry.body_text.startswith("<p>word word") and 900 < len(long_entry.body_text) <= 1010
    assert short_entry.body_text == "<p>short</p>"
    assert "longer than 1,000 characters" in feed.warning


def test_comment_bodies_are_cut_as_well(caplog):
    feed = rss_with_bodies("<div>" * 20_000, "<p>Nice post</p>")
    with caplog.at_level("WARNING", logger="ingest.parse"):
        hostile, normal = parse_comments(feed, url="https://limits.example/post/feed/", now=NOW)

    assert hostile.body.count("<div>") == BODY_MAX_DEPTH
    assert normal.body == "<p>Nice post</p>"
    assert any("nested more than" in record.warning for record in caplog.records)


@pytest.mark.parametrize(
    "sloppy",
    [
        "<p>paragraph" * 3000,  # never closed: each <p> closes the one before
        "<ul>" + "<li>item <a href='/x'>link</a>" * 3000 + "</ul>",
        "<table>" + "<tr><td>cell<td><font face=Arial>cell" * 1500 + "</table>",
        "<p><font face=Arial><b>lost in a paragraph</p>" * 1000,  # identical ones are reopened three times at most
        "<svg>" + "<rect x='1' y='2'/>" * 3000 + "</svg>",  # "/>" does close SVG elements
        "<!-- <div><div><div> -->" * 1000 + "<script>var s = '<div><div>';</script>" * 500,
        "<div><span class=a/><span class=b>x</span></div>" * 2000,  # KaTeX: html5ever leaves <span/> open
        "<div><p>text<div>block</div></p></div>" * 2000,
    ],
    ids=["paragraphs", "list-items", "table-cells", "font-in-paragraphs", "svg-shapes", "comments-and-scripts",
         "katex-spans", "misnested-p"],
)
def test_sloppy_but_ordinary_markup_is_never_cut(sloppy, scan_every_body):
    feed = parse_feed(rss_with_bodies(sloppy), now=NOW)

    assert feed.warning == ""


def test_the_reopen_limit_counts_distinct_formatting_elements(scan_every_body):
    def reopened(count: int) -> str:
        return "".join(f"<p><font color=c{n}>text</p>" for n in range(count)) + "<p>end</p>"

    assert parse_feed(rss_with_bodies(reopened(BODY_MAX_REOPENED)), now=NOW).warning == ""
    too_many = parse_feed(rss_with_bodies(reopened(BODY_MAX_REOPENED + 1)), now=NOW)
    assert "formatting elements left open" in too_many.warning


REAL_FEED_FILES = sorted(p for p in REAL_FEEDS.iterdir() if p.is_file()) if REAL_FEEDS.is_dir() else []


@pytest.mark.slow
@pytest.mark.skipif(not REAL_FEED_FILES, reason=f"corpus folder {REAL_FEEDS} is absent")
def test_no_real_feed_reaches_the_html_limits(scan_every_body):
    cut = []
    for path in REAL_FEED_FILES:
        try:
            feed = parse_feed(path.read_bytes(), headers={"content-type": "application/xml"}, url="http://127.0.0.1/")
        except ParseError:
            continue
        if "cut short" in feed.warning:
            cut.append((path.name, feed.warning))
    assert cut == []
