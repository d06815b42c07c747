"""ingest.fetch against a real HTTP server on loopback.

No test sends a packet beyond loopback: the SSRF tests point at private and metadata addresses
that the guard must refuse before connecting, and ``_loopback_only`` fails any test that tries.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from ingest.errors import BlockedURL, BodyTooLarge, FetchError, HTTPStatusError, SourceGone
from ingest.fetch import ACCEPT_ENCODING, FetchSettings, check_url, fetch_feed, make_client, parse_retry_after
from ingest.types import FetchRequest
from samples.feedserver import FeedServer

FEED = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'
MIB = 1 << 20
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def make_settings(**overrides) -> FetchSettings:
    values = dict(
        user_agent="feed-pipeline-tests/1.0",
        connect_timeout=1.0,
        read_timeout=0.5,
        deadline=3.0,
        max_bytes=MIB,
        max_redirects=5,
        allowed_networks=LOOPBACK,
    )
    values.update(overrides)
    return FetchSettings(**values)


SETTINGS = make_settings()


def fetch(url: str, settings: FetchSettings = SETTINGS, **request):
    with make_client(settings) as client:
        return fetch_feed(FetchRequest(url, **request), client=client, settings=settings)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Tripwire: a guard regression fails the test instead of connecting to a real network."""
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        try:
            loopback = ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            loopback = False  # a name: the guard should have connected to a checked address
        assert loopback, f"test tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture
def fake_dns(monkeypatch):
    """Invented host names: ``fake_dns[name] = [answer, ...]``, each answer a list of addresses.

    Answers are given in turn and the last one repeats; an empty answer fails to resolve.
    """
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        turns = answers[host]
        addresses = turns.pop(0) if len(turns) > 1 else turns[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def twin_servers() -> Iterator[tuple[FeedServer, FeedServer]]:
    """A server on 127.0.0.2 and one on 127.0.0.1 with the same port, so a test can prove which
    address a request reached by name alone."""
    with FeedServer(host="127.0.0.2") as target, FeedServer(host="127.0.0.1", port=target.port) as other:
        yield target, other


# --- success and conditional GET ---


def test_200_returns_body_validators_and_lowercased_headers(feed_server):
    modified = "Wed, 01 Jan 2025 10:00:00 GMT"
    feed_server.add("/feed.xml", FEED, etag='"v1"', last_modified=modified, headers={"X-Feed-Id": "42"})

    result = fetch(feed_server.url("/feed.xml"))

    assert (result.status, result.content) == (200, FEED)
    assert (result.etag, result.last_modified) == ('"v1"', modified)
    assert result.url == feed_server.url("/feed.xml")
    assert result.permanent_url is None
    assert result.headers["x-feed-id"] == "42"
    assert result.headers["content-type"] == "application/rss+xml"
    sent = feed_server.requests[0].headers
    assert sent["user-agent"] == SETTINGS.user_agent
    assert "application/rss+xml" in sent["accept"] and "application/atom+xml" in sent["accept"]
    assert sent["accept-encoding"] == ACCEPT_ENCODING
    assert "if-none-match" not in sent and "if-modified-since" not in sent


def test_304_by_etag_sends_if_none_match(feed_server):
    feed_server.add("/feed.xml", FEED, etag='"v2"')

    result = fetch(feed_server.url("/feed.xml"), etag='"v2"')

    assert result.not_modified and result.content == b""
    assert result.etag == '"v2"'
    assert feed_server.requests[0].headers["if-none-match"] == '"v2"'


def test_304_by_last_modified_sends_if_modified_since(feed_server):
    modified = "Wed, 01 Jan 2025 10:00:00 GMT"
    feed_server.add("/feed.xml", FEED, last_modified=modified)

    result = fetch(feed_server.url("/feed.xml"), last_modified=modified)

    assert result.not_modified
    assert result.last_modified == modified
    assert feed_server.requests[0].headers["if-modified-since"] == modified


def test_304_without_validators_keeps_the_requests_ones(feed_server):
    feed_server.add("/feed.xml", status=304)

    result = fetch(feed_server.url("/feed.xml"), etag='"old"', last_modified="Wed, 01 Jan 2025 10:00:00 GMT")

    assert (result.status, result.etag, result.last_modified) == (304, '"old"', "Wed, 01 Jan 2025 10:00:00 GMT")


def test_one_client_serves_many_threads(feed_server):
    for i in range(32):
        feed_server.add(f"/feed{i}.xml", FEED + str(i).encode())

    with make_client(SETTINGS) as client, ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(
                lambda i: fetch_feed(FetchRequest(feed_server.url(f"/feed{i}.xml")), client=client, settings=SETTINGS),
                range(32),
            )
        )

    assert [r.content for r in results] == [FEED + str(i).encode() for i in range(32)]


# --- redirects ---


@pytest.mark.parametrize("status", [301, 308])
def test_permanent_redirects_report_the_new_url(feed_server, status):
    feed_server.redirect("/old", "/middle", status=status)
    feed_server.redirect("/middle", feed_server.url("/feed.xml"), status=301)
    feed_server.add("/feed.xml", FEED)

    result = fetch(feed_server.url("/old"))

    assert result.content == FEED
    assert result.url == result.permanent_url == feed_server.url("/feed.xml")


@pytest.mark.parametrize("status", [302, 303, 307])
def test_a_temporary_redirect_anywhere_in_the_chain_keeps_the_old_url(feed_server, status):
    feed_server.redirect("/old", "/middle", status=301)
    feed_server.redirect("/middle", "/feed.xml", status=status)
    feed_server.add("/feed.xml", FEED)

    result = fetch(feed_server.url("/old"))

    assert result.url == feed_server.url("/feed.xml")
    assert result.permanent_url is None


def test_redirect_loop_is_a_fetch_error(feed_server):
    feed_server.redirect("/a", "/b")
    feed_server.redirect("/b", "/a")

    with pytest.raises(FetchError, match="redirects in a loop"):
        fetch(feed_server.url("/a"))
    assert feed_server.hits("/a") == 1


def test_too_many_redirects_is_a_fetch_error(feed_server):
    for i in range(4):
        feed_server.redirect(f"/{i}", f"/{i + 1}", status=302)
    feed_server.add("/4", FEED)

    with pytest.raises(FetchError, match="after 2 redirects"):
        fetch(feed_server.url("/0"), make_settings(max_redirects=2))
    assert fetch(feed_server.url("/0"), make_settings(max_redirects=4)).content == FEED


# --- HTTP errors ---


def test_410_means_the_source_is_gone(feed_server):
    feed_server.add("/feed.xml", status=410)

    with pytest.raises(SourceGone, match=r"HTTP 410 Gone from 127\.0\.0\.1") as caught:
        fetch(feed_server.url("/feed.xml"))
    assert caught.value.deactivate and not caught.value.transient


def test_429_with_retry_after_seconds(feed_server):
    feed_server.add("/feed.xml", status=429, headers={"Retry-After": "120"})

    with pytest.raises(HTTPStatusError, match="HTTP 429 Too Many Requests") as caught:
        fetch(feed_server.url("/feed.xml"))
    assert (caught.value.status, caught.value.retry_after) == (429, 120.0)
    assert caught.value.transient


def test_429_with_retry_after_date(feed_server):
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    feed_server.add("/feed.xml", status=429, headers={"Retry-After": format_datetime(later, usegmt=True)})

    with pytest.raises(HTTPStatusError) as caught:
        fetch(feed_server.url("/feed.xml"))
    assert 3590 <= caught.value.retry_after <= 3600


def test_503_carries_retry_after(feed_server):
    feed_server.add("/feed.xml", status=503, headers={"Retry-After": "30"})

    with pytest.raises(HTTPStatusError, match="HTTP 503 Service Unavailable") as caught:
        fetch(feed_server.url("/feed.xml"))
    assert caught.value.retry_after == 30.0


def test_500_is_a_status_error_without_retry_after(feed_server):
    feed_server.add("/feed.xml", status=500, headers={"Retry-After": "30"})

    with pytest.raises(HTTPStatusError) as caught:
        fetch(feed_server.url("/feed.xml"))
    assert str(caught.value) == "HTTP 500 Internal Server Error from 127.0.0.1."
    assert (caught.value.status, caught.value.retry_after) == (500, None)


def test_a_retry_gets_the_next_scripted_response(feed_server):
    feed_server.add_sequence("/feed.xml", [dict(status=500), dict(body=FEED)])

    with pytest.raises(HTTPStatusError):
        fetch(feed_server.url("/feed.xml"))
    assert fetch(feed_server.url("/feed.xml")).content == FEED


NOW = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 01 Jan 2025 12:02:00 GMT", 120.0),
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # already past: retry now
        ("99999999", 7 * 24 * 3600.0),
        ("Fri, 01 Jan 2100 00:00:00 GMT", 7 * 24 * 3600.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


# --- time limits ---


def test_a_response_slower_than_the_read_timeout(feed_server):
    feed_server.add("/feed.xml", FEED, delay=2)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 did not respond within the 0\.5 s read timeout"):
        fetch(feed_server.url("/feed.xml"))
    assert time.monotonic() - started < 1.5


def test_the_deadline_stops_a_server_that_drips_bytes(feed_server):
    # Each byte arrives well within the read timeout, so only the overall deadline can stop it.
    feed_server.add("/feed.xml", FEED, drip=0.05)

    started = time.monotonic()
    with pytest.raises(FetchError, match=r"deadline of 1 s was exceeded while fetching from 127\.0\.0\.1"):
        fetch(feed_server.url("/feed.xml"), make_settings(deadline=1.0))
    assert time.monotonic() - started < 1.5


def test_the_deadline_also_bounds_waiting_for_headers(feed_server):
    feed_server.add("/feed.xml", FEED, delay=2)

    started = time.monotonic()
    with pytest.raises(FetchError, match="deadline of 0.5 s was exceeded"):
        fetch(feed_server.url("/feed.xml"), make_settings(read_timeout=5.0, deadline=0.5))
    assert time.monotonic() - started < 1.0


def test_connection_refused_is_a_fetch_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(FetchError, match=r"Could not connect to 127\.0\.0\.1 \(connection refused\)"):
        fetch(f"http://127.0.0.1:{port}/feed.xml")


def test_a_body_cut_short_is_a_fetch_error(feed_server):
    feed_server.add("/feed.xml", FEED, headers={"Content-Length": "100000", "Connection": "close"})

    with pytest.raises(FetchError, match=r"127\.0\.0\.1 closed the connection early"):
        fetch(feed_server.url("/feed.xml"))


# --- size cap and content coding ---


def test_a_declared_oversized_body_is_refused_before_reading(feed_server):
    feed_server.add("/feed.xml", bytes(20 * MIB))

    with pytest.raises(BodyTooLarge, match=r"The body from 127\.0\.0\.1 exceeds the 1 MiB cap"):
        fetch(feed_server.url("/feed.xml"))


def test_an_undeclared_oversized_body_stops_at_the_cap(feed_server):
    # Chunked, no Content-Length: the cap is enforced while reading, with bounded memory.
    feed_server.add("/feed.xml", endless=True)

    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge, match="1 MiB cap"):
            fetch(feed_server.url("/feed.xml"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB


def test_a_body_exactly_at_the_cap_is_accepted(feed_server):
    feed_server.add("/feed.xml", b"x" * 1000, gzip=True)

    assert fetch(feed_server.url("/feed.xml"), make_settings(max_bytes=1000)).content == b"x" * 1000
    with pytest.raises(BodyTooLarge):
        fetch(feed_server.url("/feed.xml"), make_settings(max_bytes=999))


def test_gzip_body_is_decoded(feed_server):
    feed_server.add("/feed.xml", FEED, gzip=True)

    result = fetch(feed_server.url("/feed.xml"))

    assert result.content == FEED
    assert result.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS], ids=["zlib-wrapped", "raw"])
def test_deflate_body_is_decoded_with_or_without_zlib_header(feed_server, wbits):
    compressor = zlib.compressobj(wbits=wbits)
    feed_server.add(
        "/feed.xml", compressor.compress(FEED) + compressor.flush(), headers={"Content-Encoding": "deflate"}
    )

    assert fetch(feed_server.url("/feed.xml")).content == FEED


def test_an_unknown_content_encoding_is_a_fetch_error(feed_server):
    feed_server.add("/feed.xml", FEED, headers={"Content-Encoding": "lzma"})

    with pytest.raises(FetchError, match=r"unsupported Content-Encoding \(lzma\); .*gzip, deflate can be decoded"):
        fetch(feed_server.url("/feed.xml"))


def test_a_corrupt_gzip_body_is_a_fetch_error(feed_server):
    feed_server.add("/feed.xml", b"\x1f\x8b\x08\x00 this is not deflate data", headers={"Content-Encoding": "gzip"})

    with pytest.raises(FetchError, match="corrupt gzip-compressed body"):
        fetch(feed_server.url("/feed.xml"))


def gzip_bomb(decompressed_size: int) -> bytes:
    """A valid gzip member of ``decompressed_size`` zero bytes, about 1/1000 of that on the wire.

    One MiB of zeros is deflated once and ended with a full flush, which makes the block
    self-contained; repeating it builds the stream without compressing a GiB in the test.
    """
    block_size = MIB
    zeros = bytes(block_size)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(decompressed_size // block_size):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    final_empty_block = b"\x03\x00"
    trailer = struct.pack("<II", crc, decompressed_size & 0xFFFFFFFF)
    return header + block * (decompressed_size // block_size) + final_empty_block + trailer


def test_a_gzip_bomb_is_stopped_at_the_cap_with_bounded_memory(feed_server):
    bomb = gzip_bomb(1 << 30)
    assert len(bomb) < 2 * MIB
    feed_server.add("/feed.xml", bomb, headers={"Content-Encoding": "gzip"})

    started = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge, match="1 MiB cap"):
            fetch(feed_server.url("/feed.xml"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    # httpx's own decoder would inflate one 64 KiB read into ~64 MiB before any check.
    assert peak < 4 * MIB


# --- SSRF guard ---


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/feed.xml", "private"),
        ("http://[::ffff:10.0.0.1]/feed.xml", "private"),
        ("http://100.64.0.1/feed.xml", "shared"),
        ("ftp://example.com/feed.xml", "ftp: URLs"),
    ],
)
def test_a_redirect_to_a_refused_address_is_blocked_before_connecting(feed_server, target, reason):
    feed_server.redirect("/feed.xml", target, status=302)

    with pytest.raises(BlockedURL, match=reason):
        fetch(feed_server.url("/feed.xml"))


def test_a_redirect_to_localhost_is_blocked_when_only_another_loopback_address_is_allowed(twin_servers):
    target, localhost = twin_servers
    localhost.add("/feed.xml", FEED)
    target.redirect("/feed.xml", f"http://localhost:{target.port}/feed.xml")
    settings = make_settings(allowed_networks=(ipaddress.ip_network("127.0.0.2/32"),))

    with pytest.raises(BlockedURL, match="Refused to fetch from localhost: it resolves to .*a loopback address"):
        fetch(target.url("/feed.xml"), settings)
    assert target.hits("/feed.xml") == 1
    assert localhost.requests == []


def test_dns_rebinding_after_check_url_is_caught_at_connect_time(twin_servers, fake_dns):
    # The name passes the registration check as 127.0.0.1, then resolves to 127.0.0.2, which is
    # not allowed; the connection must go to neither.
    rebinding, allowed = twin_servers
    rebinding.add("/feed.xml", FEED)
    allowed.add("/feed.xml", FEED)
    settings = make_settings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    fake_dns["feeds.rebind.test"] = [["127.0.0.1"], ["127.0.0.2"]]
    url = f"http://feeds.rebind.test:{rebinding.port}/feed.xml"

    check_url(url, settings)
    with pytest.raises(BlockedURL, match=r"feeds\.rebind\.test: it resolves to 127\.0\.0\.2, a loopback address"):
        fetch(url, settings)
    assert rebinding.requests == [] and allowed.requests == []


def test_a_name_with_any_refused_address_is_blocked(fake_dns):
    fake_dns["mixed.test"] = [["127.0.0.1", "10.1.2.3"]]

    with pytest.raises(BlockedURL, match=r"mixed\.test: it resolves to 10\.1\.2\.3, a private address"):
        check_url("http://mixed.test/feed.xml", SETTINGS)


def test_a_dns_failure_is_transient_not_blocked(fake_dns):
    fake_dns["gone.test"] = [[]]

    with pytest.raises(FetchError, match="Could not resolve the host name gone.test") as caught:
        check_url("http://gone.test/feed.xml", SETTINGS)
    assert not isinstance(caught.value, BlockedURL) and caught.value.transient
    with pytest.raises(FetchError, match="Could not resolve"):
        fetch("http://gone.test/feed.xml")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/feed.xml",
        "gopher://example.com/",
        "data:application/rss+xml,<rss/>",
        "javascript:alert(1)",
        "example.com/feed.xml",
        "http:///feed.xml",
    ],
)
def test_check_url_refuses_other_schemes_and_missing_hosts(url):
    with pytest.raises(BlockedURL):
        check_url(url, SETTINGS)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[::1]",
        "[::]",
        "[fe80::1]",
        "[fc00::1]",
        "[fec0::1]",
        "[ff02::1]",
        "[::ffff:192.168.0.1]",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a00:1]",  # NAT64 for 10.0.0.1
        "[2002:a00:1::]",  # 6to4 for 10.0.0.1
    ],
)
def test_check_url_refuses_private_and_reserved_addresses(host):
    with pytest.raises(BlockedURL, match="Refused to fetch"):
        check_url(f"http://{host}/feed.xml", SETTINGS)


def test_check_url_refuses_loopback_unless_allowed():
    with pytest.raises(BlockedURL, match="loopback"):
        check_url("http://127.0.0.1:8000/feed.xml", make_settings(allowed_networks=()))

    check_url("http://127.0.0.1:8000/feed.xml", SETTINGS)
    check_url("https://user:secret@127.0.0.1/feed.xml", SETTINGS)
    check_url("http://[::ffff:127.0.0.1]/feed.xml", SETTINGS)


def test_check_url_accepts_public_addresses():
    # Numeric hosts: resolving them sends nothing over the network.
    check_url("http://93.184.215.14/feed.xml", make_settings(allowed_networks=()))
    check_url("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/feed.xml", make_settings(allowed_networks=()))


# --- configuration ---


def test_from_settings_reads_django_settings(settings):
    settings.INGEST_ALLOWED_NETWORKS = ["127.0.0.0/8", "fd00::/8"]
    settings.INGEST_MAX_BYTES = 1234

    fetch_settings = FetchSettings.from_settings()

    assert fetch_settings.allowed_networks == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
    assert fetch_settings.max_bytes == 1234
    assert fetch_settings.user_agent == settings.INGEST_USER_AGENT


@pytest.mark.parametrize("cidr", ["10.0.0.300/8", "10.0.0.1/8", "localhost"])
def test_from_settings_rejects_an_invalid_network(settings, cidr):
    settings.INGEST_ALLOWED_NETWORKS = [cidr]

    with pytest.raises(ImproperlyConfigured, match=f"INGEST_ALLOWED_NETWORKS contains '{cidr}'"):
        FetchSettings.from_settings()


def test_server_stops_promptly_while_streaming():
    server = FeedServer().start()
    server.add("/endless", endless=True)
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        client.recv(1024)
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 1
    assert not any(t.name.startswith("FeedServer") for t in threading.enumerate())


def test_a_kept_alive_connection_the_server_closed_is_retried_once_on_a_fresh_one():
    # A server whose keep-alive timeout expires as the next request arrives closes the connection
    # without answering; the next feed on the same host must not fail for it (httpcore does not
    # retry). This server answers one request per connection and drops the second one unanswered.
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: %d\r\n\r\n%s" % (len(FEED), FEED)
    listener = socket.create_server(("127.0.0.1", 0))
    connections = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            with conn:
                conn.recv(65536)
                conn.sendall(response)
                conn.recv(65536)  # the next request on this kept-alive connection: dropped

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with make_client(SETTINGS) as client:
            first = fetch_feed(FetchRequest(url=url + "/a.rss"), client=client, settings=SETTINGS)
            second = fetch_feed(FetchRequest(url=url + "/b.rss"), client=client, settings=SETTINGS)
    finally:
        listener.close()
    assert (first.status, second.status) == (200, 200)
    assert second.content == FEED
    assert len(connections) == 2  # the second feed came over a fresh connection


def test_a_redirect_to_a_host_that_is_not_valid_idna_fails_with_a_reason(feed_server):
    feed_server.add("/r", b"", status=302, headers={"Location": "http://xn--/feed"})
    with make_client(SETTINGS) as client, pytest.raises(FetchError, match="cannot be followed"):
        fetch_feed(FetchRequest(url=feed_server.url("/r")), client=client, settings=SETTINGS)
