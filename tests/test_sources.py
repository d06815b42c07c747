"""Registering sources: ``add_source`` and ``import_opml``."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.models import TechnicalArticle

OPML = b"""<?xml version="1.0"?>
<opml version="2.0"><head><title>My feeds</title></head><body>
  <outline text="Databases">
    <outline type="rss" text="Blog" title="Example Blog" xmlUrl="http://127.0.0.1:9/blog.rss"/>
    <outline type="rss" text="News" xmlUrl="http://127.0.0.1:9/news.atom"/>
  </outline>
  <outline type="rss" text="Dup" xmlUrl="http://127.0.0.1:9/blog.rss"/>
  <outline type="rss" text="Local file" xmlUrl="file:///etc/passwd"/>
  <outline type="rss" text="Metadata" xmlUrl="http://169.254.169.254/latest/meta-data/"/>
</body></opml>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<opml version="2.0"><body><outline text="&lol3;" xmlUrl="http://127.0.0.1:9/x"/></body></opml>"""


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_add_source_is_idempotent(db):
    first = json.loads(run("add_source", "http://127.0.0.1:9/feed.xml", "--name", "Mine", "--json"))
    second = json.loads(run("add_source", "http://127.0.0.1:9/feed.xml", "--json"))
    assert first["created"] is True and second["created"] is False and first["id"] == second["id"]
    assert TechnicalArticle.objects.get().name == "Mine"


@pytest.mark.parametrize("url", ["ftp://example.com/feed", "file:///etc/passwd", "gopher://example.com/", "not a url",
                                 "http://169.254.169.254/latest/", "http://10.0.0.1/feed"])
def test_add_source_refuses_bad_urls_at_once(db, url):
    with pytest.raises(CommandError) as info:
        run("add_source", url)
    assert info.value.returncode == 2
    assert TechnicalArticle.objects.count() == 0


def test_import_opml_adds_each_feed_once_and_rejects_bad_ones(db, tmp_path: Path):
    path = tmp_path / "feeds.opml"
    path.write_bytes(OPML)
    result = json.loads(run("import_opml", str(path), "--json"))
    assert len(result["added"]) == 2 and result["existing"] == []
    assert {r["url"] for r in result["rejected"]} == {"file:///etc/passwd", "http://169.254.169.254/latest/meta-data/"}
    assert TechnicalArticle.objects.get(feed_url="http://127.0.0.1:9/blog.rss").name == "Example Blog"
    again = json.loads(run("import_opml", str(path), "--json"))
    assert again["added"] == [] and len(again["existing"]) == 2
    assert TechnicalArticle.objects.count() == 2


def test_import_opml_refuses_hostile_xml(db, tmp_path: Path):
    path = tmp_path / "evil.opml"
    path.write_bytes(BILLION_LAUGHS)
    with pytest.raises(CommandError, match="forbidden XML"):
        run("import_opml", str(path))
    assert TechnicalArticle.objects.count() == 0


def test_import_opml_missing_file_is_a_sentence(db):
    with pytest.raises(CommandError, match="Cannot read"):
        run("import_opml", "/nonexistent/feeds.opml")
