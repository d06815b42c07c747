"""Feed autodiscovery: ``ingest.parse.discover`` on its own (pure), then through ``add_source``,
``import_opml --discover`` and the API's create, with pages served by the loopback feed server.

What a user sees: the feed registered instead of the page ("found feed X on page Y"), the numbered
list and one sentence asking for ``--pick N``, one sentence and exit 2 for a page without a feed or
a fetch the guard refuses, and a warning (the URL registered as given) when the URL cannot be
fetched right now.
"""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from ingest.models import TechnicalArticle
from ingest.parse.discover import DISCOVER_MAX_BYTES, FeedLink, body_kind, discover_feeds
from tests.helpers import rss, rss_item

PAGE = "http://site.example/blog/post.html"


def page(head: str, body: str = "<p>Hello</p>") -> bytes:
    return f"<!DOCTYPE html><html><head><title>A site</title>{head}</head><body>{body}</body></html>".encode()


def link(href: str, type_: str = "application/rss+xml", title: str = "", rel: str = "alternate") -> str:
    return f'<link rel="{rel}" type="{type_}" href="{href}"' + (f' title="{title}"' if title else "") + ">"


# --- the pure parse ---------------------------------------------------------------------------------


def test_relative_hrefs_are_resolved_against_the_page_url():
    found = discover_feeds(page(link("feed.xml", title="Posts") + link("/comments.atom", "application/atom+xml")), PAGE)
    assert found == (FeedLink("http://site.example/blog/feed.xml", "Posts", "rss"),
                     FeedLink("http://site.example/comments.atom", "", "atom"))


def test_a_base_href_applies_to_every_link_even_one_before_it():
    html = page(link("early.xml") + '<base href="https://cdn.example/feeds/">' + link("late.xml"))
    assert [f.url for f in discover_feeds(html, PAGE)] == ["https://cdn.example/feeds/early.xml",
                                                          "https://cdn.example/feeds/late.xml"]
    relative_base = page('<base href="/other/">' + link("x.rss"))
    assert [f.url for f in discover_feeds(relative_base, PAGE)] == ["http://site.example/other/x.rss"]


def test_feed_types_and_rel_feed_count_other_alternates_do_not():
    html = page(link("a.rss") + link("b.atom", "application/atom+xml") + link("c.json", "application/feed+json")
                + link("d.json", "application/json") + link("e", "", rel="feed") + link("f.atom", "application/atom+xml", rel="feed")
                + link("fr.html", "text/html") + link("style.css", "text/css", rel="alternate stylesheet")
                + link("/wp-json/wp/v2/pages/2", "application/json") + link("icon.png", "image/png", rel="icon")
                + '<link rel="Alternate" TYPE="Application/RSS+XML; charset=utf-8" HREF="g.rss">')
    assert [(f.url.rsplit("/", 1)[1], f.type) for f in discover_feeds(html, PAGE)] == [
        ("a.rss", "rss"), ("b.atom", "atom"), ("c.json", "json"), ("d.json", "json"), ("e", ""), ("f.atom", "atom"),
        ("g.rss", "rss")]


def test_duplicates_keep_the_first_in_document_order_and_fragments_do_not_matter():
    html = page(link("feed.xml", title="First") + link("feed.xml#top", title="Again") + link("other.xml")
                + link("http://site.example/blog/feed.xml", "application/atom+xml"))
    assert discover_feeds(html, PAGE) == (FeedLink("http://site.example/blog/feed.xml", "First", "rss"),
                                          FeedLink("http://site.example/blog/other.xml", "", "rss"))


def test_links_in_comments_scripts_and_the_body_are_not_feeds():
    html = page("<!-- " + link("commented.xml") + " -->"
                + "<script>document.write('" + link("scripted.xml") + "')</script>" + link("real.xml"),
                body=link("in-body.xml"))
    assert [f.url for f in discover_feeds(html, PAGE)] == ["http://site.example/blog/real.xml"]


def test_unusable_hrefs_are_skipped_and_titles_are_cleaned():
    html = page(link("javascript:alert(1)") + link("") + link("mailto:x@example.com") + link("ftp://x.example/f")
                + link("ok.xml", title="  Tom &amp; Jerry\n  news ") + link("http://[bad/feed"))
    assert discover_feeds(html, PAGE) == (FeedLink("http://site.example/blog/ok.xml", "Tom & Jerry news", "rss"),)


def test_a_huge_page_is_read_only_up_to_the_byte_limit():
    filler = "<meta name='x' content='" + "y" * 1000 + "'>"
    html = page(link("early.xml") + filler * (DISCOVER_MAX_BYTES // 1000 + 10) + link("late.xml"))
    started = time.process_time()
    assert [f.url for f in discover_feeds(html * 4, PAGE)] == ["http://site.example/blog/early.xml"]
    assert time.process_time() - started < 2


def test_a_page_in_its_declared_charset():
    html = ('<html><head><link rel="alternate" type="application/rss+xml" title="Café" href="flux.xml">'
            "</head></html>").encode("latin-1")
    assert discover_feeds(html, PAGE, charset="iso-8859-1")[0].title == "Café"


@pytest.mark.parametrize(("content", "content_type", "kind"), [
    (rss([]).encode(), "", "feed"),
    (b'<?xml version="1.0"?>\n<!-- generator -->\n<feed xmlns="http://www.w3.org/2005/Atom"/>', "", "feed"),
    (b"\xef\xbb\xbf<rdf:RDF xmlns:rdf='x'/>", "", "feed"),
    (b'{"version": "https://jsonfeed.org/version/1.1", "title": "x", "items": []}', "application/json", "feed"),
    (b'{"items": []}', "application/json", "other"),
    (page(""), "text/html", "html"),
    (b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head/></html>', "", "html"),
    (b"<div>just a fragment</div>", "text/html; charset=utf-8", "html"),
    (b"<opml version='2.0'/>", "text/xml", "other"),
])
def test_body_kind(content, content_type, kind):
    assert body_kind(content, content_type) == kind


# --- through add_source -----------------------------------------------------------------------------


def add_source(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("add_source", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args) -> tuple[CommandError, str]:
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("add_source", *args, stdout=out, stderr=StringIO())
    assert info.value.returncode == 2
    return info.value, out.getvalue()


FEED = rss([rss_item("1", "One")], title="The blog")


def test_a_page_with_one_feed_registers_that_feed(db, feed_server):
    feed_server.add("/", page(link("/feed.xml", title="Posts")), content_type="text/html")
    feed_server.add("/feed.xml", FEED)
    out, err = add_source(feed_server.url("/"))
    source = TechnicalArticle.objects.get()
    assert source.feed_url == feed_server.url("/feed.xml")
    assert out.splitlines() == [f"Found feed {feed_server.url('/feed.xml')} on page {feed_server.url('/')}",
                                f"Added source {source.pk} {feed_server.url('/feed.xml')}"]
    assert err == ""
    again, _ = add_source(feed_server.url("/"))
    assert again.splitlines()[-1] == f"Already registered: source {source.pk} {feed_server.url('/feed.xml')}"
    assert TechnicalArticle.objects.count() == 1


def test_a_feed_url_given_directly_registers_as_given(db, feed_server):
    feed_server.add("/feed.xml", FEED)
    out, _ = add_source(feed_server.url("/feed.xml"), "--json")
    result = json.loads(out)
    assert result["url"] == feed_server.url("/feed.xml") and result["created"] is True
    assert result["page_url"] is None and result["candidates"] == [] and result["warning"] is None
    assert feed_server.hits("/feed.xml") == 1


def test_several_feeds_are_listed_and_pick_chooses_one(db, feed_server):
    feed_server.add("/", page(link("/posts.rss", title="Posts") + link("/comments.atom", "application/atom+xml", "Comments")
                              + link("/posts.json", "application/feed+json")), content_type="text/html")
    error, out = refused(feed_server.url("/"))
    assert str(error) == (f"The page {feed_server.url('/')} advertises 3 feeds; choose one. "
                          "Run again with --pick N (1 to 3).")
    assert out.splitlines() == [
        "#  title     type  url",
        "-  --------  ----  " + "-" * len(feed_server.url("/comments.atom")),
        f"1  Posts     rss   {feed_server.url('/posts.rss')}",
        f"2  Comments  atom  {feed_server.url('/comments.atom')}",
        f"3  -         json  {feed_server.url('/posts.json')}",
    ]
    assert TechnicalArticle.objects.count() == 0

    out, _ = add_source(feed_server.url("/"), "--pick", "2")
    assert TechnicalArticle.objects.get().feed_url == feed_server.url("/comments.atom")
    assert out.splitlines()[0] == f"Found feed {feed_server.url('/comments.atom')} on page {feed_server.url('/')}"


def test_several_feeds_in_json_list_the_candidates(db, feed_server):
    feed_server.add("/", page(link("/a.rss", title="A") + link("/b.rss", title="B")), content_type="text/html")
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("add_source", feed_server.url("/"), "--json", stdout=out, stderr=StringIO())
    assert info.value.returncode == 2
    result = json.loads(out.getvalue())
    assert result["created"] is False and "--pick N (1 to 2)" in result["error"]
    assert result["candidates"] == [{"number": 1, "title": "A", "type": "rss", "url": feed_server.url("/a.rss")},
                                    {"number": 2, "title": "B", "type": "rss", "url": feed_server.url("/b.rss")}]


@pytest.mark.parametrize(("pick", "sentence"), [
    ("3", "so there is no number 3 to choose."),
    ("0", "--pick"),
    ("two", "--pick"),
])
def test_a_pick_out_of_range_is_one_sentence(db, feed_server, pick, sentence):
    feed_server.add("/", page(link("/a.rss") + link("/b.rss")), content_type="text/html")
    error, _ = refused(feed_server.url("/"), "--pick", pick)
    assert sentence in str(error) and "\n" not in str(error)
    assert TechnicalArticle.objects.count() == 0


def test_pick_and_no_discover_do_not_go_together(db):
    error, _ = refused("http://127.0.0.1:9/", "--pick", "1", "--no-discover")
    assert "--no-discover" in str(error)


def test_a_page_without_a_feed_is_one_sentence(db, feed_server):
    feed_server.add("/about", page(link("/style.css", "text/css", rel="stylesheet")), content_type="text/html")
    error, out = refused(feed_server.url("/about"))
    assert str(error) == (f"The page {feed_server.url('/about')} advertises no feed (no <link rel=\"alternate\"> "
                          "of a feed type in its head); give the feed's own URL.")
    assert out == "" and TechnicalArticle.objects.count() == 0


def test_no_discover_registers_the_page_as_given_without_fetching(db, feed_server):
    feed_server.add("/", page(link("/feed.xml")), content_type="text/html")
    add_source(feed_server.url("/"), "--no-discover")
    assert TechnicalArticle.objects.get().feed_url == feed_server.url("/")
    assert feed_server.requests == []


def test_a_page_behind_redirects_resolves_against_the_final_url(db, feed_server):
    feed_server.redirect("/old", "/new/", status=301)
    feed_server.redirect("/new/", "/site/home", status=302)
    feed_server.add("/site/home", page(link("feed.xml")), content_type="text/html")
    out, _ = add_source(feed_server.url("/old"))
    assert TechnicalArticle.objects.get().feed_url == feed_server.url("/site/feed.xml")
    assert out.splitlines()[0] == f"Found feed {feed_server.url('/site/feed.xml')} on page {feed_server.url('/site/home')}"


def test_a_page_redirecting_into_a_refused_network_is_the_guards_sentence(db, feed_server):
    feed_server.redirect("/", "http://169.254.169.254/latest/meta-data/", status=302)
    error, _ = refused(feed_server.url("/"))
    assert str(error) == ("Refused to fetch from 169.254.169.254: it is a link-local address. "
                          "To fetch from it on purpose, add 169.254.169.254/32 to INGEST_ALLOWED_NETWORKS.")
    assert TechnicalArticle.objects.count() == 0


def test_a_page_advertising_a_feed_in_a_private_network_is_refused(db, feed_server):
    feed_server.add("/", page(link("http://10.1.2.3/feed.xml")), content_type="text/html")
    error, _ = refused(feed_server.url("/"))
    assert str(error).startswith("Refused to fetch from 10.1.2.3: it is a private address.")
    assert TechnicalArticle.objects.count() == 0


@pytest.mark.parametrize("url", ["http://10.0.0.1/", "http://169.254.169.254/latest/"])
def test_a_refused_address_is_never_fetched(db, url):
    error, _ = refused(url)
    assert str(error).startswith(f"Refused to fetch from {url.split('/')[2]}: ")


def test_an_unreachable_url_is_registered_as_given_with_a_warning(db):
    out, err = add_source("http://127.0.0.1:9/feed.xml")  # nothing listens on the discard port
    source = TechnicalArticle.objects.get()
    assert source.feed_url == "http://127.0.0.1:9/feed.xml"
    assert out.splitlines() == [f"Added source {source.pk} http://127.0.0.1:9/feed.xml"]
    assert err.startswith("Could not check http://127.0.0.1:9/feed.xml, registered it as given: ")
    assert "127.0.0.1" in err.split(": ", 1)[1]


def test_an_error_status_is_registered_as_given_with_a_warning(db, feed_server):
    feed_server.add("/feed.xml", b"down", status=503, content_type="text/plain")
    out, _ = add_source(feed_server.url("/feed.xml"), "--json")
    result = json.loads(out)
    assert result["created"] is True and result["url"] == feed_server.url("/feed.xml")
    assert result["warning"].startswith("HTTP 503")


# --- import_opml --discover ---------------------------------------------------------------------------


def test_import_opml_discover_registers_the_first_feed_of_each_page(db, feed_server, tmp_path):
    feed_server.add("/site", page(link("/first.rss") + link("/second.rss")), content_type="text/html")
    feed_server.add("/feed.xml", FEED)
    feed_server.add("/nofeed", page(""), content_type="text/html")
    opml = tmp_path / "feeds.opml"
    opml.write_text(f"""<opml version="2.0"><body>
      <outline text="Site" xmlUrl="{feed_server.url('/site')}"/>
      <outline text="Feed" xmlUrl="{feed_server.url('/feed.xml')}"/>
      <outline text="No feed" xmlUrl="{feed_server.url('/nofeed')}"/>
      <outline text="Private" xmlUrl="http://10.0.0.1/feed"/>
    </body></opml>""")
    out, err = StringIO(), StringIO()
    call_command("import_opml", str(opml), "--discover", stdout=out, stderr=err)
    assert dict(TechnicalArticle.objects.values_list("feed_url", "name")) == {
        feed_server.url("/first.rss"): "Site", feed_server.url("/feed.xml"): "Feed"}
    assert out.getvalue().splitlines() == [f"found feed {feed_server.url('/first.rss')} on page {feed_server.url('/site')}",
                                           "2 added, 0 already registered, 2 rejected."]
    rejected = err.getvalue().splitlines()
    assert rejected[0].startswith(f"rejected  {feed_server.url('/nofeed')}: The page ") and "advertises no feed" in rejected[0]
    assert rejected[1].startswith("rejected  http://10.0.0.1/feed: Refused to fetch from 10.0.0.1")

    out = StringIO()
    call_command("import_opml", str(opml), "--discover", "--json", stdout=out, stderr=StringIO())
    again = json.loads(out.getvalue())
    assert again["added"] == [] and {e["url"] for e in again["existing"]} == {feed_server.url("/first.rss"),
                                                                            feed_server.url("/feed.xml")}
    assert again["discovered"] == [{"page_url": feed_server.url("/site"), "url": feed_server.url("/first.rss")}]
    assert again["unchecked"] == [] and len(again["rejected"]) == 2


def test_import_opml_without_discover_fetches_nothing(db, feed_server, tmp_path):
    feed_server.add("/site", page(link("/first.rss")), content_type="text/html")
    opml = tmp_path / "feeds.opml"
    opml.write_text(f'<opml version="2.0"><body><outline text="Site" xmlUrl="{feed_server.url("/site")}"/></body></opml>')
    call_command("import_opml", str(opml), stdout=StringIO(), stderr=StringIO())
    assert TechnicalArticle.objects.get().feed_url == feed_server.url("/site")
    assert feed_server.requests == []


# --- the API's create ---------------------------------------------------------------------------------


@pytest.fixture
def staff(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_user("staff", password="pw", is_staff=True))
    return client


def test_api_create_with_a_page_of_one_feed_registers_the_feed(staff, feed_server):
    feed_server.add("/", page(link("/feed.xml")), content_type="text/html")
    created = staff.post("/api/articles/", {"feed_url": feed_server.url("/")}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["feed_url"] == feed_server.url("/feed.xml")
    assert TechnicalArticle.objects.get().feed_url == feed_server.url("/feed.xml")


def test_api_create_with_a_page_of_several_feeds_lists_them(staff, feed_server):
    feed_server.add("/", page(link("/a.rss", title="A") + link("/b.atom", "application/atom+xml")), content_type="text/html")
    answer = staff.post("/api/articles/", {"feed_url": feed_server.url("/")}, content_type="application/json")
    assert answer.status_code == 400
    body = answer.json()
    assert body["feed_url"] == [f"The page {feed_server.url('/')} advertises 2 feeds; choose one. "
                                "Post again with the chosen feed's URL."]
    assert body["candidates"] == [{"url": feed_server.url("/a.rss"), "title": "A", "type": "rss"},
                                  {"url": feed_server.url("/b.atom"), "title": "", "type": "atom"}]
    assert TechnicalArticle.objects.count() == 0
    chosen = staff.post("/api/articles/", {"feed_url": body["candidates"][1]["url"]}, content_type="application/json")
    assert chosen.status_code == 201 and chosen.json()["feed_url"] == feed_server.url("/b.atom")


def test_api_create_with_a_page_without_feeds_is_a_400(staff, feed_server):
    feed_server.add("/", page(""), content_type="text/html")
    answer = staff.post("/api/articles/", {"feed_url": feed_server.url("/")}, content_type="application/json")
    assert answer.status_code == 400 and "advertises no feed" in answer.json()["feed_url"][0]
    assert answer.json()["candidates"] == []


def test_api_create_of_a_feed_or_a_form_post_keeps_the_url(staff, feed_server):
    feed_server.add("/feed.xml", FEED)
    created = staff.post("/api/articles/", {"feed_url": feed_server.url("/feed.xml"), "name": "Mine"})  # form-encoded
    assert created.status_code == 201, created.content
    assert created.json()["feed_url"] == feed_server.url("/feed.xml") and created.json()["name"] == "Mine"
