"""The br and zstd content codings end to end: the loopback feed server sends bodies compressed
here with the libraries, the fetch stage decodes them under the cap with bounded memory, and a
process without the libraries neither asks for them nor decodes them."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
import tracemalloc

import pytest

from ingest.errors import BodyTooLarge, FetchError
from ingest.fetch import ACCEPT_ENCODING, FetchSettings, fetch_feed, make_client
from ingest.fetch.body import ZSTD_MAX_WINDOW
from ingest.models import Entry
from ingest.services.sources import source_add
from ingest.types import FetchRequest
from tests.helpers import ROOT, ingest, rss, rss_item

brotli = pytest.importorskip("brotli")
zstandard = pytest.importorskip("zstandard")

MIB = 1 << 20
FEED = rss([rss_item(f"g{i}", f"Entry {i}", "body " * 50) for i in range(20)]).encode()


def settings(**overrides) -> FetchSettings:
    import ipaddress

    values = dict(user_agent="feed-pipeline-tests/1.0", connect_timeout=1.0, read_timeout=2.0, deadline=10.0,
                  max_bytes=MIB, max_redirects=5, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    return FetchSettings(**{**values, **overrides})


def fetch(url: str, fetch_settings: FetchSettings | None = None):
    fetch_settings = fetch_settings or settings()
    with make_client(fetch_settings) as client:
        return fetch_feed(FetchRequest(url), client=client, settings=fetch_settings)


def br(data: bytes) -> bytes:
    return brotli.compress(data)


def zstd(data: bytes) -> bytes:
    compressor = zstandard.ZstdCompressor().compressobj()
    return compressor.compress(data) + compressor.flush()


ENCODE = {"br": br, "zstd": zstd, "gzip": lambda data: gzip.compress(data, mtime=0)}


def br_bomb(size: int) -> bytes:
    """``size`` zero bytes in br, compressed a MiB at a time: the zeros never exist at once."""
    compressor, zeros, out = brotli.Compressor(quality=5, lgwin=22), bytes(MIB), bytearray()
    for _ in range(size // MIB):
        out += compressor.process(zeros)
    return bytes(out + compressor.finish())


def zstd_bomb(size: int) -> bytes:
    compressor, zeros, out = zstandard.ZstdCompressor(level=3).compressobj(), bytes(MIB), bytearray()
    for _ in range(size // MIB):
        out += compressor.compress(zeros)
    return bytes(out + compressor.flush())


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"br": br_bomb(1 << 30), "zstd": zstd_bomb(1 << 30)}


def test_accept_encoding_lists_br_and_zstd_first_as_the_server_saw_it(feed_server):
    feed_server.add("/feed.xml", FEED)

    fetch(feed_server.url("/feed.xml"))

    assert ACCEPT_ENCODING == "br, zstd, gzip, deflate"
    assert feed_server.requests[-1].headers["accept-encoding"] == "br, zstd, gzip, deflate"


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_body_in_each_coding_is_decoded(feed_server, coding):
    feed_server.add("/feed.xml", ENCODE[coding](FEED), headers={"Content-Encoding": coding})

    result = fetch(feed_server.url("/feed.xml"))

    assert result.content == FEED
    assert result.headers["content-encoding"] == coding


def test_zstd_frames_back_to_back_are_one_body(feed_server):
    half = len(FEED) // 2
    feed_server.add("/feed.xml", zstd(FEED[:half]) + zstd(FEED[half:]), headers={"Content-Encoding": "zstd"})

    assert fetch(feed_server.url("/feed.xml")).content == FEED


@pytest.mark.parametrize("header", ["gzip, br", "br, zstd", "zstd, gzip", "identity, br"])
def test_stacked_codings_are_undone_in_reverse_order(feed_server, header):
    body = FEED
    for coding in (c.strip() for c in header.split(",")):
        body = ENCODE[coding](body) if coding != "identity" else body
    feed_server.add("/feed.xml", body, headers={"Content-Encoding": header})

    assert fetch(feed_server.url("/feed.xml")).content == FEED


def test_four_stacked_codings_are_refused_with_a_sentence(feed_server):
    feed_server.add("/feed.xml", FEED, headers={"Content-Encoding": "gzip, gzip, gzip, gzip"})

    with pytest.raises(FetchError, match=r"^127\.0\.0\.1 sent the body in 4 stacked content codings .* at most 3"):
        fetch(feed_server.url("/feed.xml"))


@pytest.mark.parametrize(("coding", "body", "message"), [
    ("br", b"this is not brotli data at all, not even close", r"sent a corrupt br-compressed body\.$"),
    ("br", br(FEED)[:-8], r"sent a br-compressed body that ends before its stream does\.$"),
    ("zstd", b"\x28\xb5\x2f\xfd this is not a zstd frame", r"sent a corrupt zstd-compressed body\.$"),
    ("zstd", b"plain text, no frame magic", r"sent a corrupt zstd-compressed body\.$"),
], ids=["br-garbage", "br-truncated", "zstd-garbage", "zstd-no-magic"])
def test_a_corrupt_stream_is_a_fetch_error_with_a_sentence(feed_server, coding, body, message):
    feed_server.add("/feed.xml", body, headers={"Content-Encoding": coding})

    with pytest.raises(FetchError, match=r"^127\.0\.0\.1 " + message):
        fetch(feed_server.url("/feed.xml"))


def test_a_zstd_frame_that_needs_a_window_over_8_mib_is_refused(feed_server):
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=24)
    compressor = zstandard.ZstdCompressor(compression_params=params).compressobj()
    feed_server.add("/feed.xml", compressor.compress(FEED) + compressor.flush(), headers={"Content-Encoding": "zstd"})

    assert ZSTD_MAX_WINDOW == 8 * MIB
    with pytest.raises(FetchError, match=r"needs a window larger than 8 MiB\.$"):
        fetch(feed_server.url("/feed.xml"))


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_bomb_of_each_kind_stops_at_the_cap_with_bounded_memory(feed_server, bombs, coding):
    bomb = bombs[coding]
    assert len(bomb) < 64 * 1024  # 1 GiB of zeros
    feed_server.add("/feed.xml", bomb, headers={"Content-Encoding": coding})

    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge, match=r"^The body from 127\.0\.0\.1 exceeds the 1 MiB cap\.$"):
            fetch(feed_server.url("/feed.xml"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    # The cap (1 MiB) and one step per decoder: never the GiB, nor what one network read expands to.
    assert peak < 4 * MIB


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_body_exactly_at_the_cap_is_accepted_one_more_byte_is_not(feed_server, coding):
    feed_server.add("/feed.xml", ENCODE[coding](b"x" * 1000), headers={"Content-Encoding": coding})

    assert fetch(feed_server.url("/feed.xml"), settings(max_bytes=1000)).content == b"x" * 1000
    with pytest.raises(BodyTooLarge):
        fetch(feed_server.url("/feed.xml"), settings(max_bytes=999))


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_feed_in_each_coding_ingests(db, feed_server, coding):
    feed_server.add("/feed.xml", ENCODE[coding](FEED), headers={"Content-Encoding": coding})
    article, _ = source_add(url=feed_server.url("/feed.xml"))

    report = ingest()

    assert report["status"] == "succeeded"
    assert report["totals"]["created"] == 20
    assert Entry.objects.filter(technical_article=article).count() == 20
    assert feed_server.requests[-1].headers["accept-encoding"] == "br, zstd, gzip, deflate"


def test_a_bomb_through_ingest_feeds_fails_that_source_with_a_sentence(db, feed_server, bombs):
    feed_server.add("/bomb.xml", bombs["zstd"], headers={"Content-Encoding": "zstd"})
    feed_server.add("/feed.xml", br(FEED), headers={"Content-Encoding": "br"})
    bomb, _ = source_add(url=feed_server.url("/bomb.xml"))
    source_add(url=feed_server.url("/feed.xml"))

    report = ingest()

    assert report["status"] == "partial"
    failed = [s for s in report["sources"] if s["outcome"] == "failed"]
    assert [s["url"] for s in failed] == [bomb.feed_url]
    bomb.refresh_from_db()
    assert bomb.last_error.endswith("exceeds the 10 MiB cap.")
    assert not Entry.objects.filter(technical_article=bomb).exists()


WITHOUT_LIBRARIES = """
import sys
sys.modules["brotli"] = None
sys.modules["zstandard"] = None
from ingest.fetch.body import ACCEPT_ENCODING, _codings
from ingest.errors import FetchError
print(ACCEPT_ENCODING)
try:
    _codings("br", "feeds.example")
except FetchError as exc:
    print(exc)
"""


def test_without_the_libraries_the_header_omits_them_and_br_is_refused():
    done = subprocess.run([sys.executable, "-c", WITHOUT_LIBRARIES], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)

    assert done.stdout.splitlines() == [
        "gzip, deflate",
        "feeds.example sent the body in an unsupported Content-Encoding (br); gzip, deflate can be decoded.",
    ]


RSS_GROWTH = """
import ipaddress, resource, sys
from ingest.errors import BodyTooLarge
from ingest.fetch import FetchSettings, fetch_feed, make_client
from ingest.types import FetchRequest
from samples.feedserver import FeedServer
import brotli, zstandard

MIB = 1 << 20
coding = sys.argv[1]
zeros = bytes(MIB)
if coding == "br":
    compressor, out = brotli.Compressor(quality=5, lgwin=22), bytearray()
    for _ in range(1024):
        out += compressor.process(zeros)
    bomb = bytes(out + compressor.finish())
else:
    # The largest window the decoder accepts (8 MiB): the worst a hostile server can ask for.
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=23)
    compressor, out = zstandard.ZstdCompressor(compression_params=params).compressobj(), bytearray()
    for _ in range(1024):
        out += compressor.compress(zeros)
    bomb = bytes(out + compressor.flush())
settings = FetchSettings(user_agent="t", connect_timeout=1.0, read_timeout=2.0, deadline=10.0, max_bytes=MIB,
                         max_redirects=0, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
with FeedServer() as server, make_client(settings) as client:
    server.add("/small", b"<rss/>", headers={"Content-Encoding": "identity"})
    server.add("/bomb", bomb, headers={"Content-Encoding": coding})
    fetch_feed(FetchRequest(server.url("/small")), client=client, settings=settings)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        fetch_feed(FetchRequest(server.url("/bomb")), client=client, settings=settings)
    except BodyTooLarge as exc:
        print(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024)
"""


@pytest.mark.parametrize("coding", ["br", "zstd"])
def test_a_bomb_grows_the_fetching_process_by_the_cap_and_a_window_at_most(coding):
    # tracemalloc sees Python's allocations only; the decoders' own (brotli's ring buffer, zstd's
    # window) show in the process's peak resident size.
    done = subprocess.run([sys.executable, "-c", RSS_GROWTH, coding], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=True)

    message, growth = done.stdout.splitlines()
    assert message == "The body from 127.0.0.1 exceeds the 1 MiB cap."
    assert int(growth) < 16 * MIB  # with a 64 MiB cap the same bomb grows it by about 70 MiB
