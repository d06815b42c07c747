"""samples.feedserver: the one HTTP test server, over real sockets on 127.0.0.1.

Its conditional-GET rule (RFC 9110, section 13.2.2), scripted replies, folders and feeds, faults
(latency, injected 500s, drops, resets, slow and endless bodies) and the ledger tests read.
"""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from samples.feedserver import FeedServer, Reply, not_modified
from tests.helpers import wait_until

V1 = '"v1"'
MONDAY = "Mon, 01 Jun 2026 10:00:00 GMT"
BEFORE, AFTER = "Sun, 31 May 2026 10:00:00 GMT", "Tue, 02 Jun 2026 10:00:00 GMT"


def get(server: FeedServer, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    """(status, headers with lower-cased names, body) of one request on a fresh connection."""
    client = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        client.request(method, path, headers=headers or {})
        response = client.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        client.close()


def raw_exchange(server: FeedServer, path: str) -> bytes:
    """Everything the server sends for one request until it closes the connection."""
    with socket.create_connection((server.host, server.port), timeout=5) as client:
        client.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


@pytest.fixture
def server():
    with FeedServer() as running:
        yield running


# --- the conditional-GET rule ----------------------------------------------------------------------


@pytest.mark.parametrize("if_none_match", [V1, 'W/"v1"', '"v0", "v1"', "*"])
def test_if_none_match_with_the_weak_comparison_gets_304_with_the_validators(server, if_none_match):
    server.add("/f", b"<rss/>", etag=V1, last_modified=MONDAY)
    status, headers, body = get(server, "/f", {"If-None-Match": if_none_match})
    assert (status, body) == (304, b"")
    assert headers["etag"] == V1 and headers["last-modified"] == MONDAY
    assert "content-length" not in headers and "content-type" not in headers


def test_a_weak_etag_on_the_server_matches_the_strong_spelling(server):
    server.add("/f", b"<rss/>", etag='W/"v1"')
    assert get(server, "/f", {"If-None-Match": V1})[0] == 304


def test_if_none_match_takes_precedence_over_if_modified_since(server):
    server.add("/f", b"<rss/>", etag=V1, last_modified=MONDAY)
    status, _, body = get(server, "/f", {"If-None-Match": '"v0"', "If-Modified-Since": AFTER})
    assert (status, body) == (200, b"<rss/>")
    # If-None-Match is present, so If-Modified-Since is ignored even when the reply has no ETag.
    server.add("/no-etag", b"<rss/>", last_modified=MONDAY)
    assert get(server, "/no-etag", {"If-None-Match": V1, "If-Modified-Since": AFTER})[0] == 200


@pytest.mark.parametrize("since, expected", [(MONDAY, 304), (AFTER, 304), (BEFORE, 200), ("yesterday", 200)])
def test_if_modified_since_compares_dates(server, since, expected):
    server.add("/f", b"<rss/>", last_modified=MONDAY)
    status, headers, _ = get(server, "/f", {"If-Modified-Since": since})
    assert status == expected and headers["last-modified"] == MONDAY


def test_only_a_2xx_reply_turns_into_a_304():
    assert not not_modified(Reply(status=404, etag=V1), {"if-none-match": V1})
    assert not_modified(Reply(status=200, etag=V1), {"if-none-match": V1})
    assert not not_modified(Reply(etag=V1), {})


def test_a_publisher_that_ignores_conditional_requests(server):
    server.add("/f", b"<rss/>", etag=V1)
    server.conditional = False
    status, headers, body = get(server, "/f", {"If-None-Match": V1})
    assert (status, body, headers["etag"]) == (200, b"<rss/>", V1)


# --- scripted replies ------------------------------------------------------------------------------


def test_a_sequence_replies_in_order_and_its_last_reply_repeats(server):
    server.add_sequence("/s", [dict(status=500), dict(status=503, headers={"Retry-After": "7"}), dict(body=b"ok")])
    statuses = [get(server, "/s")[0] for _ in range(4)]
    assert statuses == [500, 503, 200, 200]
    assert server.hits("/s") == 4 and server.last_status("/s") == 200


def test_redirects_headers_that_override_defaults_head_and_unknown_paths(server):
    server.redirect("/old", "/new", status=308)
    server.add("/f", b"<feed/>", headers={"content-type": "text/html", "X-Extra": "1"})
    status, headers, _ = get(server, "/old")
    assert (status, headers["location"]) == (308, "/new")
    _, headers, _ = get(server, "/f")
    assert headers["content-type"] == "text/html" and headers["x-extra"] == "1"
    status, headers, body = get(server, "/f", method="HEAD")
    assert (status, headers["content-length"], body) == (200, "7", b"")
    assert get(server, "/missing")[0] == 404
    assert [r.path for r in server.requests] == ["/old", "/f", "/f", "/missing"]


def test_a_route_without_a_query_answers_any_query_and_an_exact_one_wins(server):
    server.add("/f", b"plain")
    server.add("/f?v=2", b"exact")
    assert get(server, "/f?v=1")[2] == b"plain" and get(server, "/f?v=2")[2] == b"exact"
    assert server.requests[0].path == "/f?v=1" and server.hit_counts() == {"/f": 1, "/f?v=2": 1}


def test_gzip_chunked_and_file_bodies(server, tmp_path):
    big = tmp_path / "big.xml"
    big.write_bytes(b"<rss>" + b"x" * 200_000 + b"</rss>")
    server.add("/gz", b"<rss/>", gzip=True)
    server.add("/chunked", file=big, chunked=True)
    server.add("/file", file=big)
    status, headers, body = get(server, "/gz")
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == b"<rss/>"
    status, headers, body = get(server, "/chunked")
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers and body == big.read_bytes()
    _, headers, body = get(server, "/file")
    assert headers["content-length"] == str(big.stat().st_size) and body == big.read_bytes()
    # The server counts a body's bytes once its last write returns, which may be a moment after
    # the client has read them all.
    size = big.stat().st_size
    wait_until(lambda: server.sent("/chunked") == server.sent("/file") == size, timeout=5,
               message=f"the server to count {size} bytes sent on each route")


def test_a_folder_is_served_with_validators_and_the_placeholder_replaced(server, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.xml").write_bytes(b"<feed>http://origin.invalid/sub/b.xml</feed>")
    (tmp_path / "sub" / "b.xml").write_bytes(b"<rss/>")
    (tmp_path / ".hidden").write_bytes(b"secret")
    routes = server.add_folder(tmp_path, replace={b"http://origin.invalid": server.base_url.encode()}, charset="utf-8")
    assert routes == ["/a.xml", "/sub/b.xml"]
    status, headers, body = get(server, "/a.xml")
    assert body == f"<feed>{server.base_url}/sub/b.xml</feed>".encode()
    assert headers["content-type"] == "application/atom+xml; charset=utf-8" and headers["last-modified"]
    assert get(server, "/a.xml", {"If-None-Match": headers["etag"]})[0] == 304
    assert get(server, "/a.xml", {"If-Modified-Since": headers["last-modified"]})[0] == 304
    assert get(server, "/.hidden")[0] == 404


def test_generated_feeds_carry_a_strong_etag_each(tmp_path):
    feeds = {"/1.xml": b"<rss>1</rss>", "/2.xml": b"<rss>2</rss>"}
    with FeedServer(feeds=feeds) as server:
        tags = {path: get(server, path)[1]["etag"] for path in feeds}
        assert len(set(tags.values())) == 2 and not any(t.startswith("W/") for t in tags.values())
        assert get(server, "/1.xml", {"If-None-Match": tags["/1.xml"]})[0] == 304
        assert server.served_ok == {"/1.xml", "/2.xml"}


def test_invalid_replies_are_refused_when_scripted(server, tmp_path):
    with pytest.raises(ValueError):
        server.add("/x", b"body", raw=b"HTTP/1.1 200 OK\r\n\r\n")
    with pytest.raises(ValueError):
        server.add("/x", drop=True, reset=True)
    with pytest.raises(FileNotFoundError):
        server.add("/x", file=tmp_path / "missing")
    with pytest.raises(ValueError):
        server.add_sequence("/x", [])


# --- faults ----------------------------------------------------------------------------------------


def test_a_raw_reply_is_sent_byte_for_byte_then_the_connection_closes(server):
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nX: \x01\r\n\r\nshort"
    server.add("/raw", raw=raw)
    assert raw_exchange(server, "/raw") == raw


def test_a_dropped_request_gets_nothing_and_a_reset_one_gets_rst(server):
    server.add("/drop", drop=True)
    server.add("/reset", reset=True)
    assert raw_exchange(server, "/drop") == b""
    with pytest.raises(ConnectionResetError):
        raw_exchange(server, "/reset")
    assert server.hits("/drop") == server.hits("/reset") == 1


def test_delay_and_drip_slow_a_reply_down(server):
    server.add("/late", b"x", delay=0.3)
    server.add("/drip", b"abcde", drip=0.05)
    started = time.monotonic()
    assert get(server, "/late")[2] == b"x"
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert get(server, "/drip")[2] == b"abcde"
    assert time.monotonic() - started >= 0.25


def test_injected_errors_and_latency_apply_to_every_route_until_switched_off():
    with FeedServer(feeds={"/a": b"<rss/>"}, error_rate=1.0, latency=(0.2, 0.2)) as server:
        started = time.monotonic()
        status, _, body = get(server, "/a")
        assert (status, body) == (500, b"injected failure\n") and time.monotonic() - started >= 0.2
        assert server.failed == {"/a"} and server.served_ok == set()
        server.error_rate, server.latency = 0.0, (0.0, 0.0)
        assert get(server, "/a")[0] == 200
        assert server.failed == set() and server.served_ok == {"/a"}


def test_sent_counts_what_got_out_before_the_client_hung_up(server):
    server.add("/endless", endless=True)
    with socket.create_connection(("127.0.0.1", server.port)) as client:
        client.sendall(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
        received = 0
        while received < 300_000:
            received += len(client.recv(65536))
    deadline = time.monotonic() + 5
    while server.sent("/endless") < 200_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.sent("/endless") >= 200_000
    assert "/endless" not in server.served_ok


def test_concurrent_requests_for_one_route_are_counted_as_overlapping(server):
    server.add("/slow", b"x", delay=0.3)
    server.add("/other", b"y", delay=0.3)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda p: get(server, p), ["/slow", "/slow", "/other"]))
    assert server.max_in_flight() == 2 and server.overlapping_paths() == ["/slow"]
    assert server.max_in_flight_total() == 3  # all routes together: what the host saw at once
    assert server.hit_counts() == {"/slow": 2, "/other": 1}
    server.reset_ledger()
    assert (server.requests, server.hit_counts(), server.max_in_flight(), server.overlapping_paths()) == ([], {}, 0, [])
    assert server.max_in_flight_total() == 0


def test_each_request_is_stamped_when_it_arrives(server):
    server.add("/a", b"x")
    before = time.monotonic()
    get(server, "/a")
    time.sleep(0.2)
    get(server, "/a?x=1")
    first, second = server.start_times("/a")
    assert before <= first and second - first >= 0.2 and server.start_times() == [first, second]


def test_stop_returns_promptly_with_slow_bodies_open_and_addresses_stay_readable():
    server = FeedServer().start()
    server.add("/drip", b"x" * 1000, drip=0.5)
    url = server.url("/drip")
    thread = threading.Thread(target=lambda: raw_exchange(server, "/drip"), daemon=True)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1
    assert server.url("/drip") == url  # the ledger still names its URLs
    thread.join(2)
    assert not thread.is_alive()


def test_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = FeedServer(host="::1").start()
    except OSError:
        pytest.skip("::1 is not configured")
    try:
        server.add("/f", b"six")
        assert server.base_url.startswith("http://[::1]:") and get(server, "/f")[2] == b"six"
    finally:
        server.stop()
