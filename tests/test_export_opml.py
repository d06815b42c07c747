"""``manage.py export_opml`` and ``GET /api/articles/opml``: the registered sources as an OPML 2.0
document, and the round trip through ``import_opml``.

What a user sees: a well-formed document that readers (and ``import_opml``) read back to the same
sources, names and URLs with ``&``, ``<`` and non-ASCII characters intact; a file replaced in one
step; the API's document for any user who may list articles, and nobody else.
"""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from ingest.models import TechnicalArticle
from ingest.opml import OpmlFeed, OpmlOutline, parse_opml, write_opml
from tests.helpers import wipe

SOURCES = [
    ("Tom & Jerry <news>", "http://127.0.0.1:9/feed?a=1&b=2", "http://127.0.0.1:9/"),
    ("Café «Zürich» 東京", "http://127.0.0.1:9/caf%C3%A9.rss", ""),
    ('Quotes "double" and \'single\'', "http://127.0.0.1:9/q.atom", "http://127.0.0.1:9/q"),
]


@pytest.fixture
def sources(db):
    rows = [TechnicalArticle.objects.create(name=n, feed_url=u, site_url=s) for n, u, s in SOURCES]
    TechnicalArticle.objects.create(name="Switched off", feed_url="http://127.0.0.1:9/off.rss", active=False)
    return rows


def export(*args) -> str:
    out = StringIO()
    call_command("export_opml", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def outlines(document: bytes) -> list[dict]:
    root = ElementTree.fromstring(document)
    assert root.tag == "opml" and root.get("version") == "2.0"
    return [dict(o.attrib) for o in root.iter("outline")]


def test_every_active_source_is_an_outline(sources):
    document = export().encode()
    assert document.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert outlines(document) == [
        {"type": "rss", "text": n, "title": n, "xmlUrl": u, **({"htmlUrl": s} if s else {})} for n, u, s in SOURCES]
    assert ElementTree.fromstring(document).findtext("head/title") == "Feed pipeline sources"


def test_all_includes_the_inactive_sources(sources):
    assert [o["xmlUrl"] for o in outlines(export("--all").encode())][-1] == "http://127.0.0.1:9/off.rss"
    assert len(outlines(export("--all").encode())) == 4


def test_no_sources_is_an_empty_but_valid_document(db):
    assert outlines(export().encode()) == []


def test_output_writes_the_file_in_one_step(sources, tmp_path: Path):
    target = tmp_path / "feeds.opml"
    target.write_text("the old list")
    out = export("--output", str(target))
    assert out.strip() == f"Wrote 3 sources to {target}."
    assert [o["xmlUrl"] for o in outlines(target.read_bytes())] == [u for _, u, _ in SOURCES]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.opml"]  # no temporary file left behind
    result = json.loads(export("--output", str(target), "--all", "--json"))
    assert result["output"] == str(target) and result["sources"] == 4 and result["bytes"] == target.stat().st_size


@pytest.mark.parametrize("verbosity", ["0", "2"])
def test_verbosity_0_writes_only_the_document_and_2_as_1(sources, tmp_path: Path, verbosity):
    target = tmp_path / "feeds.opml"
    out = export("--output", str(target), "--verbosity", verbosity)
    assert out == ("" if verbosity == "0" else f"Wrote 3 sources to {target}.\n")
    assert len(outlines(export("--verbosity", verbosity).encode())) == 3  # to stdout: the document at every level


def test_an_unwritable_output_is_one_sentence_and_keeps_nothing(sources, tmp_path: Path):
    with pytest.raises(CommandError) as info:
        export("--output", str(tmp_path / "missing" / "feeds.opml"))
    assert info.value.returncode == 2 and str(info.value).startswith(f"Cannot write {tmp_path / 'missing' / 'feeds.opml'}: ")
    with pytest.raises(CommandError) as info:
        export("--json")
    assert info.value.returncode == 2 and "--json needs --output" in str(info.value)


def test_the_round_trip_registers_nothing_new_here_and_the_same_sources_elsewhere(sources, tmp_path: Path):
    path = tmp_path / "export.opml"
    export("--output", str(path))
    before = sorted(TechnicalArticle.objects.filter(active=True).values_list("pk", "feed_url", "name"))

    out = StringIO()
    call_command("import_opml", str(path), stdout=out, stderr=StringIO())
    assert out.getvalue().strip() == "0 added, 3 already registered, 0 rejected."
    assert sorted(TechnicalArticle.objects.filter(active=True).values_list("pk", "feed_url", "name")) == before

    wipe()  # a fresh database
    out = StringIO()
    call_command("import_opml", str(path), stdout=out, stderr=StringIO())
    assert out.getvalue().strip() == "3 added, 0 already registered, 0 rejected."
    assert sorted(TechnicalArticle.objects.values_list("feed_url", "name")) == sorted((u, n) for n, u, _ in SOURCES)


def test_the_writer_drops_what_xml_cannot_hold():
    document = write_opml([OpmlOutline(title="bell\x07 and\x00 nul", xml_url="https://x.example/f")], title="t\x1b")
    assert parse_opml(document) == (OpmlFeed(url="https://x.example/f", title="bell and nul"),)


# --- the API ------------------------------------------------------------------------------------------


def test_the_api_serves_the_same_document_to_readers_only(sources):
    anonymous = Client().get("/api/articles/opml/")
    assert anonymous.status_code == 401 and anonymous["Content-Type"] == "application/json"
    assert "detail" in anonymous.json()

    reader = Client()
    reader.force_login(User.objects.create_user("reader", password="pw"))
    answer = reader.get("/api/articles/opml/")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "text/x-opml; charset=utf-8"
    assert outlines(answer.content) == outlines(export().encode())
    assert ElementTree.fromstring(answer.content).findtext("head/dateCreated")
    assert reader.get("/api/articles/opml/", HTTP_ACCEPT="text/x-opml").content == answer.content
    assert reader.get("/api/articles/opml.opml").status_code == 200
    refused = reader.get("/api/articles/opml/", HTTP_ACCEPT="application/json")  # JSON only: not this document
    assert refused.status_code == 406 and refused["Content-Type"] == "application/json" and refused.json()["detail"]


def test_the_api_document_costs_a_constant_number_of_queries(sources, django_assert_max_num_queries):
    reader = Client()
    reader.force_login(User.objects.create_user("reader", password="pw"))
    reader.get("/api/articles/opml/")
    for i in range(30):
        TechnicalArticle.objects.create(name=f"more {i}", feed_url=f"http://127.0.0.1:9/more/{i}")
    with django_assert_max_num_queries(4):
        assert len(outlines(reader.get("/api/articles/opml/").content)) == 33
