"""A loopback HTTP receiver for what the pipeline sends out: heartbeat pings and Sentry envelopes.

Records every POST (path, headers, body decoded from gzip / deflate / br); ``hang`` makes it hold
each request that long before answering, ``status`` is the answer's status. Standard library and
brotli only, no product imports, like samples/feedserver.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)

    def envelope(self) -> list[tuple[dict, dict]]:
        """A Sentry envelope's items as (item header, payload): after the envelope's header line, a
        header line and a one-line JSON payload each (sentry-sdk writes them so)."""
        lines = [line for line in self.body.split(b"\n")[1:] if line.strip()]
        return [(json.loads(lines[i]), json.loads(lines[i + 1])) for i in range(0, len(lines) - 1, 2)]


class Receiver:
    def __init__(self, *, hang: float = 0.0, status: int = 200, on_receive=None):
        self.hang, self.status, self.on_receive = hang, status, on_receive
        self.seen: list = []  # what on_receive returned, per request
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002  (the base class's name)
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                coding = (self.headers.get("Content-Encoding") or "").lower()
                if coding == "gzip":
                    body = gzip.decompress(body)
                elif coding == "deflate":
                    body = zlib.decompress(body)
                elif coding == "br":
                    import brotli

                    body = brotli.decompress(body)
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if receiver.on_receive:  # e.g. what the database shows while the request is in
                    receiver.seen.append(receiver.on_receive(got))
                with receiver._lock:
                    receiver.received.append(got)
                if receiver.hang:
                    time.sleep(receiver.hang)
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait(self, predicate, timeout: float = 10.0) -> list[Received]:
        """The requests received once ``predicate(requests)`` holds (or when ``timeout`` ends)."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                got = list(self.received)
            if predicate(got) or time.monotonic() > end:
                return got
            time.sleep(0.05)
