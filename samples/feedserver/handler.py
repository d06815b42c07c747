"""The socket side of the feed server: http.server's threaded server and one request handler.

Owns how a decided reply goes on the wire: status line and headers (scripted headers override the
defaults, so a test can send a lying Content-Length), Content-Length or chunked framing, drips,
endless bodies, raw bytes, drops and resets, and the byte counts the ledger keeps. What to answer
is decided by ``FeedServer`` (routing, faults, ledger) and ``replies`` (the conditional rule); this
module must not keep state of its own beyond one connection.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from samples.feedserver.replies import NO_BODY_STATUSES, RecordedRequest, Reply, not_modified, payload

if TYPE_CHECKING:
    from samples.feedserver.server import FeedServer

_FILLER = b"<!-- endless filler -->\n" * 2730  # ~64 KiB, repeated when an endless route has no body


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when a load test's thread pool connects at once.
    request_queue_size = 1024
    feed: FeedServer

    def shutdown_request(self, request: Any) -> None:
        if self.feed._take_reset(request):
            request.close()  # SO_LINGER is 0: the close sends RST, no FIN first
            return
        super().shutdown_request(request)


class Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.feed._track(self.connection, open_=True)

    def finish(self) -> None:
        self.server.feed._track(self.connection, open_=False)
        try:
            super().finish()
        except OSError:
            pass  # the client already hung up; nothing left to flush to

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:
            # Clients hang up mid-body on purpose (size caps, deadlines); that ends this connection.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def _serve(self) -> None:
        feed = self.server.feed
        headers = {name.lower(): value for name, value in self.headers.items()}
        route, reply = feed._receive(RecordedRequest(self.command, self.path, headers, time.monotonic()))
        self._route: str | None = route if reply is not None else None
        if reply is None:
            self._respond(404, {"Content-Type": "text/plain", "Content-Length": "10"}, [b"not found\n"])
            return
        latency, fail = feed._begin(route)
        self._status: int | None = None
        complete = False
        try:
            self._answer(route, reply, headers, latency, fail)
            complete = True
        finally:
            feed._end(route, self._status, complete)

    def _answer(self, route: str, reply: Reply, headers: Mapping[str, str], latency: float, fail: bool) -> None:
        feed = self.server.feed
        for wait in (latency, reply.delay):
            if wait and feed._stopping.wait(wait):
                self.close_connection = True
                return
        if fail:
            self._respond(500, {"Content-Type": "text/plain", "Content-Length": "17"}, [b"injected failure\n"])
            return
        challenge = feed._challenge(route, headers)
        if challenge is not None:
            self._respond(401, {"Content-Type": "text/plain", "Content-Length": "13", "WWW-Authenticate": challenge},
                          [b"unauthorized\n"])
            return
        if reply.drop or reply.reset:
            if reply.reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                feed._mark_reset(self.connection)
            self.close_connection = True
            return
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        validators = reply.validators
        if feed.conditional and not_modified(reply, headers):
            self._respond(304, validators, [], reply.headers)
            return
        response_headers: dict[str, str] = {**validators}
        if reply.content_type and reply.status not in NO_BODY_STATUSES:
            response_headers["Content-Type"] = reply.content_type
        if reply.status in NO_BODY_STATUSES:
            self._respond(reply.status, response_headers, [], reply.headers)
        elif reply.endless or reply.chunked:
            response_headers["Transfer-Encoding"] = "chunked"
            chunks = self._endless(reply.body or _FILLER) if reply.endless else payload(reply)[1]
            self._respond(reply.status, response_headers, chunks, reply.headers, route=route, chunked=True)
        else:
            length, chunks = payload(reply)
            if reply.gzip:
                response_headers["Content-Encoding"] = "gzip"
            response_headers["Content-Length"] = str(length)
            if reply.drip:
                chunks = self._drip(chunks, reply.drip)
            self._respond(reply.status, response_headers, chunks, reply.headers, route=route)

    def _respond(
        self,
        status: int,
        defaults: Mapping[str, str],
        chunks: Iterable[bytes],
        overrides: Mapping[str, str] | None = None,
        *,
        route: str | None = None,
        chunked: bool = False,
    ) -> None:
        """Send a response; ``overrides`` replace same-named ``defaults`` whatever their case."""
        self._status = status
        if self._route is not None:
            self.server.feed._status_sent(self._route, status)
        overrides = overrides or {}
        replaced = {name.lower() for name in overrides}
        self.send_response(status)
        for name, value in [*((n, v) for n, v in defaults.items() if n.lower() not in replaced), *overrides.items()]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        if self.command == "HEAD":
            return
        feed = self.server.feed
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            self.wfile.flush()
            if route is not None:
                feed._count_sent(route, len(chunk))
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _endless(self, block: bytes) -> Iterator[bytes]:
        while not self.server.feed._stopping.is_set():
            yield block

    def _drip(self, chunks: Iterable[bytes], interval: float) -> Iterator[bytes]:
        for chunk in chunks:
            for i in range(len(chunk)):
                if self.server.feed._stopping.wait(interval):
                    return
                yield chunk[i : i + 1]
