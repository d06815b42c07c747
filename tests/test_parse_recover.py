"""The recovering path (ingest.parse.recover): broken feeds read once repaired; hostile and non-feeds unchanged."""

from pathlib import Path

import pytest

from ingest.errors import ParseError
from ingest.parse import parse_feed

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real-feeds"
ITEM = b"<item><title>One</title><guid>g1</guid><link>https://a.example/1</link></item>"


@pytest.mark.parametrize("document", [
    b'<?xml version="1.0"?><rss version="2.0"><rss:channel><rss:title>T</rss:title>' + ITEM + b"</rss:channel></rss>",
    b"<rss version=2.0><channel><title>T</title>" + ITEM + b"</channel></rss>",
    b'<rss version="2.0"><channel><title>T & co</title>' + ITEM + b"</channel></rss>",
    b'<!-- c --><?xml?xml version="1.0" ??><rss version="2.0"><channel><title>T</title>' + ITEM + b"</channel></rss>",
    b'<rss version="2.0"><channel><title>T</title>' + ITEM + b"<item><title>Two",
], ids=["undeclared-prefix", "unquoted-attribute", "stray-ampersand", "broken-declaration", "truncated"])
def test_broken_documents_are_repaired(document):
    feed = parse_feed(document, url="https://a.example/feed")
    # Read: by feedparser's lenient parser where it can, else once repaired (then the warning says so).
    assert feed.entries[0].guid == "g1"
    assert ("repaired" in feed.warning) == feed.repaired


def test_the_corpus_feed_that_is_not_xml_is_read():
    path = CORPUS / "7ef13a42fa7e177a"
    if not path.exists():
        pytest.skip("the shared corpus is not here")
    feed = parse_feed(path.read_bytes(), url="https://dylanharris.org/feed-me.rss")
    assert feed.repaired and len(feed.entries) == 34 and feed.title == "arts and ego"


LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
          b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><rss version="2.0"><channel><title>&c;</title></channel>')
XXE = b'<!DOCTYPE rss [<!ENTITY x SYSTEM "file:///etc/passwd">]><rss version=2.0><channel><title>&x;</title>' + ITEM


def test_an_external_entity_is_never_repaired_nor_read():
    feed = parse_feed(XXE)
    assert not feed.repaired and all("root:" not in e.headline + e.body_text for e in feed.entries)


@pytest.mark.parametrize("document", [LAUGHS, b"<!DOCTYPE html><html><body>hi</body></html>",
                                      b"\x00\x01 garbage <<< &&&", b"<foo a=1><bar>"])
def test_hostile_and_non_feeds_are_refused_as_before(document):
    with pytest.raises(ParseError) as raised:
        parse_feed(document)
    assert "root:" not in str(raised.value)
