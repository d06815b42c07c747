"""A threaded HTTP server for load: many generated feeds, random latency, injected 500s, a ledger.

    server = LoadServer(feeds, latency=(0.0, 0.5), error_rate=0.05, seed=1).start()
    ...
    server.served_ok        # paths whose 200 body was written completely
    server.failed           # paths answered 500 (at their last request)
    server.max_in_flight()  # the most concurrent requests any single path ever had

Every feed carries a strong ETag; a matching ``If-None-Match`` gets 304, so a second pass over
unchanged feeds costs no parsing. Which request fails is drawn from a seeded generator, per
request, so a run is reproducible in distribution, not in order (threads race).
"""

from __future__ import annotations

import hashlib
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoadServer:
    def __init__(self, feeds: dict[str, bytes], *, latency: tuple[float, float] = (0.0, 0.0), error_rate: float = 0.0,
                 seed: int = 0, host: str = "127.0.0.1") -> None:
        self.feeds = feeds
        self.etags = {path: f'"{hashlib.sha1(body).hexdigest()[:16]}"' for path, body in feeds.items()}
        self.latency = latency
        self.error_rate = error_rate
        self.host = host
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.last_status: dict[str, int] = {}
        self.served_ok: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._overlaps: list[str] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._connections: set[socket.socket] = set()

    # --- lifecycle ---

    def start(self) -> LoadServer:
        self._httpd = _Server((self.host, 0), _Handler)
        self._httpd.load = self
        self.base_url = f"http://{self.host}:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="LoadServer").start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return self.base_url + path  # still answers after stop(), for the ledger

    # --- ledger ---

    def reset_ledger(self) -> None:
        with self._lock:
            self.requests.clear()
            self.last_status.clear()
            self.served_ok.clear()
            self._max_in_flight.clear()
            self._overlaps.clear()

    @property
    def failed(self) -> set[str]:
        with self._lock:
            return {path for path, status in self.last_status.items() if status >= 500}

    def max_in_flight(self) -> int:
        with self._lock:
            return max(self._max_in_flight.values(), default=0)

    def overlapping_paths(self) -> list[str]:
        with self._lock:
            return list(self._overlaps)

    # --- used by the handler ---

    def _begin(self, path: str) -> tuple[int, float]:
        with self._lock:
            self.requests[path] += 1
            self._in_flight[path] += 1
            if self._in_flight[path] > 1:
                self._overlaps.append(path)
            self._max_in_flight[path] = max(self._max_in_flight[path], self._in_flight[path])
            delay = self._random.uniform(*self.latency) if self.latency[1] else 0.0
            fail = self.error_rate and self._random.random() < self.error_rate
        return (500 if fail else 200), delay

    def _end(self, path: str, status: int, complete: bool) -> None:
        with self._lock:
            self._in_flight[path] -= 1
            self.last_status[path] = status
            if status == 200 and complete:
                self.served_ok.add(path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    load: LoadServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.load._lock:
            self.server.load._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.load._lock:
            self.server.load._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            self.close_connection = True

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        load = self.server.load
        path = self.path.split("?", 1)[0]
        body = load.feeds.get(path)
        if body is None:
            self._send(404, b"not found\n", "text/plain")
            return
        status, delay = load._begin(path)
        complete = False
        try:
            if delay:
                time.sleep(delay)
            if status == 500:
                self._send(500, b"injected failure\n", "text/plain")
            elif self.headers.get("If-None-Match") == load.etags[path]:
                status = 304
                self._send(304, b"", None, etag=load.etags[path])
            else:
                self._send(200, body, "application/rss+xml; charset=utf-8", etag=load.etags[path])
            complete = True
        finally:
            load._end(path, status, complete)

    def _send(self, status: int, body: bytes, content_type: str | None, etag: str | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        if etag:
            self.send_header("ETag", etag)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != 304:
            self.wfile.write(body)
        self.wfile.flush()


def generate_feeds(count: int, entries: int, *, seed: int = 7) -> tuple[dict[str, bytes], dict[str, set[str]]]:
    """``count`` RSS feeds of ``entries`` items each, with the duplicates real feeds have.

    Returns the bodies by path and, per path, the set of unique guids a correct reader stores.
    Each feed repeats one of its items (a duplicate guid within the feed), and one feed in fifty
    shares its guids with the next feed (the same guid in two sources is two entries).
    """
    rng = random.Random(seed)
    feeds: dict[str, bytes] = {}
    unique: dict[str, set[str]] = {}
    for i in range(count):
        path = f"/feeds/{i:04d}.xml"
        owner = i - 1 if i % 50 == 1 else i  # feed 1, 51, 101 ... reuse the guids of the feed before
        items, guids = [], set()
        for k in range(entries):
            guid = f"feed-{owner}-entry-{k}"
            guids.add(guid)
            items.append(
                f"<item><guid isPermaLink=\"false\">{guid}</guid><title>Feed {i} entry {k}</title>"
                f"<link>http://load{i}.example/{k}</link><pubDate>Thu, 01 Oct 2026 {k % 24:02d}:{rng.randrange(60):02d}:00 GMT</pubDate>"
                f"<description>&lt;p&gt;Entry {k} of feed {i}: {rng.getrandbits(64):x}&lt;/p&gt;</description></item>")
        items.append(items[rng.randrange(entries)])  # a duplicate guid within the feed
        body = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Load feed {i}</title><link>http://load{i}.example/</link>{''.join(items)}</channel></rss>")
        feeds[path] = body.encode()
        unique[path] = guids
    return feeds, unique


def expected_entries(server: LoadServer, unique: dict[str, set[str]], paths: set[str] | None = None) -> set[tuple[str, str]]:
    """(feed URL, guid) of every unique entry in the given paths (default: those served with a 200)."""
    chosen = server.served_ok if paths is None else paths
    return {(server.url(path), guid) for path in chosen for guid in unique[path]}

