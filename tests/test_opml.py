"""``ingest.opml.parse_opml``: OPML bytes -> (url, title) pairs. Pure: no database, no network.

The command that registers what it finds, ``import_opml``, is tested in tests/test_import_opml.py.
"""

import pytest

from ingest.errors import ParseError
from ingest.opml import OpmlFeed, parse_opml

NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0"><head><title>Reader export</title></head><body>
  <outline text="Databases">
    <outline text="Relational">
      <outline type="rss" text="PG text" title="PostgreSQL Planet" xmlUrl="https://planet.example/rss"/>
      <outline type="rss" text="Only text" xmlUrl="  https://mysql.example/feed  "/>
    </outline>
    <outline type="rss" text="Lower-case attribute" xmlurl="https://lower.example/atom"/>
  </outline>
  <outline text="A folder without feeds"/>
  <outline type="link" text="A web page" htmlUrl="https://page.example/"/>
  <outline type="rss" text="Duplicate, later" title="Second title" xmlUrl="https://planet.example/rss"/>
  <outline type="rss" xmlUrl="https://untitled.example/feed"/>
  <outline type="rss" text="Empty URL" xmlUrl="   "/>
</body></opml>"""


def test_every_outline_with_a_feed_url_at_any_depth_in_document_order():
    assert parse_opml(NESTED) == (
        OpmlFeed(url="https://planet.example/rss", title="PostgreSQL Planet"),  # title wins over text
        OpmlFeed(url="https://mysql.example/feed", title="Only text"),  # URL stripped; text when no title
        OpmlFeed(url="https://lower.example/atom", title="Lower-case attribute"),
        OpmlFeed(url="https://untitled.example/feed", title=""),
    )


def test_a_duplicate_url_keeps_its_first_outline():
    feeds = parse_opml(NESTED)
    assert [f.url for f in feeds].count("https://planet.example/rss") == 1
    assert feeds[0].title == "PostgreSQL Planet"


def test_an_opml_without_feeds_is_an_empty_list_not_an_error():
    assert parse_opml(b'<opml version="1.0"><head/><body><outline text="folder"/></body></opml>') == ()


def test_the_root_element_name_is_matched_without_case():
    assert parse_opml(b'<OPML><body><outline xmlUrl="https://a.example/f"/></body></OPML>') == (
        OpmlFeed(url="https://a.example/f", title=""),)


def test_the_result_is_immutable():
    feed = parse_opml(NESTED)[0]
    with pytest.raises(AttributeError):
        feed.url = "https://elsewhere.example/"


@pytest.mark.parametrize(("content", "sentence"), [
    (b"", "not well-formed OPML"),
    (b"<opml><body><outline xmlUrl='https://a.example/f'></body>", "not well-formed OPML"),
    (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not well-formed OPML"),
    (b'<?xml version="1.0"?><rss version="2.0"><channel/></rss>', "XML but not OPML (its root element is <rss>)"),
    (b'<?xml version="1.0"?><!DOCTYPE opml SYSTEM "http://127.0.0.1:9/opml.dtd"><opml><body/></opml>',
     "forbidden XML features"),
    (b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
     b'<opml><body><outline text="&x;" xmlUrl="https://a.example/f"/></body></opml>', "forbidden XML features"),
])
def test_bad_opml_is_a_parse_error_with_one_sentence(content, sentence):
    with pytest.raises(ParseError) as info:
        parse_opml(content)
    message = str(info.value)
    assert sentence in message
    assert "\n" not in message and message.endswith(".")
    assert "/etc/passwd" not in message or "root:" not in message  # nothing of the entity was read
