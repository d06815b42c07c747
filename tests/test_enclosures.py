"""Enclosures: what the parser reads (RSS, Atom, Media RSS), what the store keeps, what the admin and
the API show. End to end through ``ingest_feeds`` and the loopback feed server, on the real database."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ingest.models import Author, Enclosure, Entry
from ingest.parse import parse_feed
from ingest.parse.enclosures import MAX_ENCLOSURES
from ingest.services.sources import source_add
from ingest.services.tokens import token_issue
from ingest.types import ENCLOSURE_TYPE_MAX, LINK_MAX, ParsedEnclosure
from tests.helpers import ingest

NOW = datetime(2026, 11, 1, tzinfo=UTC)
MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


def rss(items: str, *, base: str = "") -> bytes:
    xml_base = f' xml:base="{base}"' if base else ""
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0" {MEDIA}{xml_base}><channel><title>Cast</title>'
            f"<link>https://cast.example/</link>{items}</channel></rss>").encode()


def item(guid: str, inner: str, *, title: str = "Episode") -> str:
    return (f'<item><guid isPermaLink="false">{guid}</guid><title>{title}</title>'
            f"<pubDate>Sun, 01 Nov 2026 10:00:00 GMT</pubDate>{inner}</item>")


def enclosures(content: bytes, *, url: str = "https://cast.example/feed.xml") -> tuple[ParsedEnclosure, ...]:
    [entry] = parse_feed(content, url=url, now=NOW).entries
    return entry.enclosures


# --- Parsing ----------------------------------------------------------------------------------------


@pytest.mark.nodb
def test_an_rss_enclosure_is_read_with_its_type_and_length():
    found = enclosures(rss(item("1", '<enclosure url="https://cdn.example/ep1.mp3" type="audio/mpeg" length="12345678"/>')))
    assert found == (ParsedEnclosure("https://cdn.example/ep1.mp3", "audio/mpeg", 12345678, "enclosure"),)


@pytest.mark.nodb
def test_an_atom_enclosure_link_is_read_and_resolved_against_xml_base():
    atom = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://a.example/files/">'
            b"<title>A</title><id>urn:a</id><entry><id>urn:a:1</id><title>One</title>"
            b'<link rel="alternate" href="https://a.example/1"/>'
            b'<link rel="enclosure" href="one.ogg" type="audio/ogg" length="55"/></entry></feed>')
    assert enclosures(atom) == (ParsedEnclosure("https://a.example/files/one.ogg", "audio/ogg", 55, "enclosure"),)


@pytest.mark.nodb
def test_media_content_and_thumbnail_are_read_inside_and_outside_a_media_group():
    found = enclosures(rss(item("1", (
        '<media:content url="https://cdn.example/v.mp4" type="video/mp4" fileSize="999" medium="video"/>'
        '<media:thumbnail url="https://cdn.example/t.jpg" width="120" height="90"/>'
        '<media:group><media:content url="https://cdn.example/hd.mp4" type="video/mp4"/>'
        '<media:thumbnail url="https://cdn.example/hd.jpg"/></media:group>'))))
    assert [(e.kind, e.url, e.type, e.length) for e in found] == [
        ("content", "https://cdn.example/v.mp4", "video/mp4", 999),
        ("content", "https://cdn.example/hd.mp4", "video/mp4", None),
        ("thumbnail", "https://cdn.example/t.jpg", "", None),
        ("thumbnail", "https://cdn.example/hd.jpg", "", None),
    ]


@pytest.mark.nodb
def test_a_relative_url_is_resolved_against_the_document_and_other_schemes_are_dropped():
    found = enclosures(rss(item("1", '<enclosure url="/media/ep1.mp3" type="audio/mpeg" length="1"/>'
                                     '<enclosure url="ftp://cast.example/ep1.mp3" type="audio/mpeg" length="1"/>'
                                     '<enclosure url="javascript:alert(1)" type="audio/mpeg"/>'
                                     '<media:thumbnail url=""/>')),
                       url="https://cast.example/feeds/main.xml")
    assert [e.url for e in found] == ["https://cast.example/media/ep1.mp3"]


@pytest.mark.parametrize("length, expected", [
    ("123", 123), (" 42 ", 42), ("0", 0), ("-5", None), ("12.5", None), ("abc", None), ("", None),
    ("1e6", None), (str(2**63), None), (str(2**63 - 1), 2**63 - 1),
])
@pytest.mark.nodb
def test_a_length_is_a_non_negative_whole_number_or_none(length, expected):
    [found] = enclosures(rss(item("1", f'<enclosure url="https://cdn.example/a.mp3" type="audio/mpeg" length="{length}"/>')))
    assert found.length == expected


@pytest.mark.nodb
def test_a_type_too_long_is_dropped_not_cut():
    long_type = "audio/" + "x" * ENCLOSURE_TYPE_MAX
    [found] = enclosures(rss(item("1", f'<enclosure url="https://cdn.example/a.mp3" type="{long_type}" length="1"/>')))
    assert found.type == ""


@pytest.mark.nodb
def test_duplicates_of_one_url_and_kind_are_one_and_the_first_wins():
    found = enclosures(rss(item("1", (
        '<enclosure url="https://cdn.example/a.mp3" type="audio/mpeg" length="1"/>'
        '<enclosure url="HTTPS://CDN.example:443/a.mp3#t=10" type="audio/mp3" length="2"/>'  # the same, normalized
        '<media:content url="https://cdn.example/a.mp3" type="audio/mpeg"/>'))))  # another kind: kept
    assert [(e.kind, e.url, e.length) for e in found] == [("enclosure", "https://cdn.example/a.mp3", 1),
                                                           ("content", "https://cdn.example/a.mp3", None)]


@pytest.mark.nodb
def test_an_over_long_url_is_dropped_and_the_count_is_bounded():
    too_long = "https://cdn.example/" + "a" * LINK_MAX
    many = "".join(f'<enclosure url="https://cdn.example/{n}.mp3" type="audio/mpeg"/>' for n in range(MAX_ENCLOSURES + 20))
    found = enclosures(rss(item("1", f'<enclosure url="{too_long}" type="audio/mpeg"/>' + many)))
    assert len(found) == MAX_ENCLOSURES and found[0].url == "https://cdn.example/0.mp3"
    assert all(len(e.url) <= LINK_MAX for e in found)


@pytest.mark.nodb
def test_an_enclosure_is_part_of_the_content_hash_and_no_enclosure_leaves_it_as_it_was():
    def entry(inner: str):
        return parse_feed(rss(item("1", inner)), url="https://cast.example/feed.xml", now=NOW).entries[0]

    bare = entry("")
    one = entry('<enclosure url="https://cdn.example/a.mp3" type="audio/mpeg" length="1"/>')
    other = entry('<enclosure url="https://cdn.example/a.mp3" type="audio/mpeg" length="2"/>')
    assert len({bare.content_hash, one.content_hash, other.content_hash}) == 3
    # An entry without enclosures hashes as before enclosures were read: stored rows do not all look changed.
    import hashlib
    import json

    payload = [bare.guid, bare.headline, bare.body_text, bare.link, bare.published_at.isoformat(), None, [], "", None]
    assert bare.content_hash == hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


# --- Through the command ----------------------------------------------------------------------------


def podcast(server, *, second_length: int = 2000, second_url: str = "/media/2.mp3") -> bytes:
    return rss(
        item("ep-1", f'<enclosure url="{server.url("/media/1.mp3")}" type="audio/mpeg" length="1000"/>'
                     f'<media:thumbnail url="{server.url("/art/1.jpg")}"/>', title="Episode 1")
        + item("ep-2", f'<enclosure url="{server.url(second_url)}" type="audio/mpeg" length="{second_length}"/>',
               title="Episode 2")
        + item("ep-3", "", title="Notes, no audio"))


def stored() -> dict[str, list[tuple]]:
    rows = Enclosure.objects.order_by("entry__guid", "position").values_list(
        "entry__guid", "kind", "url", "type", "length", "position")
    found: dict[str, list[tuple]] = {}
    for guid, *values in rows:
        found.setdefault(guid, []).append(tuple(values))
    return found


def enclosure_writes(queries) -> list[str]:
    table = Enclosure._meta.db_table
    return [q["sql"] for q in queries
            if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")) and table in q["sql"]]


@pytest.fixture
def cast(db, feed_server):
    feed_server.add("/podcast.xml", podcast(feed_server))
    for path in ("/media/1.mp3", "/media/2.mp3", "/media/2b.mp3", "/art/1.jpg"):
        feed_server.add(path, b"ID3 not really audio", content_type="audio/mpeg")
    source, _ = source_add(url=feed_server.url("/podcast.xml"))
    return source


def test_a_podcast_feed_stores_its_enclosures_and_never_fetches_them(cast, feed_server):
    report = ingest()
    assert report["totals"]["created"] == 3
    url = feed_server.url
    assert stored() == {
        "ep-1": [("enclosure", url("/media/1.mp3"), "audio/mpeg", 1000, 0), ("thumbnail", url("/art/1.jpg"), "", None, 1)],
        "ep-2": [("enclosure", url("/media/2.mp3"), "audio/mpeg", 2000, 0)],
    }
    assert {r.path for r in feed_server.requests} == {"/podcast.xml"}


def test_a_changed_enclosure_updates_the_entry_and_replaces_its_set(cast, feed_server):
    ingest()
    before = dict(Entry.objects.values_list("guid", "updated_at"))
    kept = set(Enclosure.objects.filter(entry__guid="ep-1").values_list("pk", flat=True))
    feed_server.add("/podcast.xml", podcast(feed_server, second_length=2500, second_url="/media/2b.mp3"))
    report = ingest("--all")
    assert (report["totals"]["updated"], report["totals"]["unchanged"], report["totals"]["created"]) == (1, 2, 0)
    assert stored()["ep-2"] == [("enclosure", feed_server.url("/media/2b.mp3"), "audio/mpeg", 2500, 0)]
    after = dict(Entry.objects.values_list("guid", "updated_at"))
    assert after["ep-2"] > before["ep-2"] and after["ep-1"] == before["ep-1"]  # an API client syncing sees it
    assert set(Enclosure.objects.filter(entry__guid="ep-1").values_list("pk", flat=True)) == kept
    # An episode that loses its enclosure loses the row.
    feed_server.add("/podcast.xml", podcast(feed_server).replace(b"<enclosure url=\"" + feed_server.url("/media/2.mp3").encode(), b"<x url=\""))
    assert ingest("--all")["totals"]["updated"] == 1
    assert "ep-2" not in stored() and len(stored()["ep-1"]) == 2
    assert {r.path for r in feed_server.requests} == {"/podcast.xml"}


def test_an_unchanged_feed_writes_no_enclosure(cast, feed_server):
    ingest()
    before = stored()
    with CaptureQueriesContext(connection) as queries:
        report = ingest("--all")
    assert report["totals"]["unchanged"] == 3
    assert enclosure_writes(queries) == []
    assert not [q for q in queries if Enclosure._meta.db_table in q["sql"]]  # not even a read
    assert stored() == before


# --- Admin and API ----------------------------------------------------------------------------------


def test_the_entry_admin_page_shows_the_enclosures_read_only(cast, client):
    ingest()
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    entry = Entry.objects.get(guid="ep-1")
    page = client.get(f"/admin/ingest/entry/{entry.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "/media/1.mp3" in html and "/art/1.jpg" in html and "audio/mpeg" in html and "media:thumbnail" in html
    assert 'name="enclosures-0-url"' not in html  # shown, not editable
    # Saving the entry in the admin (the form as the page sends it) leaves them as they are.
    before = stored()
    hidden = dict(re.findall(r'<input type="hidden" name="((?:comments|enclosures)-[^"]+)" value="([^"]*)"', html))
    assert hidden["enclosures-INITIAL_FORMS"] == "2"
    saved = client.post(f"/admin/ingest/entry/{entry.pk}/change/", {
        **hidden, "technical_article": entry.technical_article_id, "headline": "Edited", "body_text": "Show notes",
        "pub_date": entry.pub_date.isoformat(), "mod_date": entry.mod_date.isoformat(), "rating": 5, "link": "",
        "comments_feed_url": "", "published_at_0": entry.pub_date.isoformat(), "published_at_1": "10:00:00",
        "authors": [Author.objects.create(name="Host").pk]})
    assert saved.status_code == 302, re.findall(r"errorlist[^>]*>(.*?)</ul>", saved.content.decode(), re.S)
    assert Entry.objects.get(pk=entry.pk).headline == "Edited" and stored() == before


def test_the_api_shows_each_entrys_enclosures_and_accepts_them_sent_back(cast, feed_server):
    ingest()
    User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(username='staff').key}")
    body = client.get("/api/entries/").json()
    shown = {row["guid"]: row["enclosures"] for row in body["results"]}
    assert shown == {
        "ep-1": [{"url": feed_server.url("/media/1.mp3"), "type": "audio/mpeg", "length": 1000, "kind": "enclosure"},
                 {"url": feed_server.url("/art/1.jpg"), "type": "", "length": None, "kind": "thumbnail"}],
        "ep-2": [{"url": feed_server.url("/media/2.mp3"), "type": "audio/mpeg", "length": 2000, "kind": "enclosure"}],
        "ep-3": [],
    }
    entry = Entry.objects.get(guid="ep-1")
    got = client.get(f"/api/entries/{entry.pk}/").json()
    assert got["enclosures"] == shown["ep-1"]
    # A GET body sent back passes (read-only fields as they are); a changed enclosure is refused.
    back = client.put(f"/api/entries/{entry.pk}/", {**got, "rating": 7}, content_type="application/json")
    assert back.status_code == 200, back.content
    assert back.json()["rating"] == 7 and back.json()["enclosures"] == shown["ep-1"]
    edited = {**got, "enclosures": [{**shown["ep-1"][0], "length": 1}]}
    refused = client.put(f"/api/entries/{entry.pk}/", edited, content_type="application/json")
    assert refused.status_code == 400 and "enclosures" in refused.json(), refused.json()
    assert stored()["ep-1"][0][3] == 1000
