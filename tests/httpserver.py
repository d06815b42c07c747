"""A real HTTP/1.1 server on loopback that serves scripted responses, for tests and benchmarks.

    with FeedServer() as server:
        server.add("/feed.xml", FEED_BYTES, etag='"v1"')
        server.add_sequence("/flaky", [dict(status=500), dict(body=FEED_BYTES)])
        server.redirect("/old", "/feed.xml", status=301)
        fetch(server.url("/feed.xml"))
        assert server.requests[-1].headers["if-none-match"] == '"v1"'

Each route replies with the next scripted response (the last one repeats). Responses can be
conditional (ETag / Last-Modified), delayed, dripped byte by byte, gzip-compressed, read from a
file, or endless. A raw reply, ``server.add("/x", raw=b"HTTP/1.1 200 OK\\r\\n...")``, is written
byte for byte (status line, headers, body; nothing added) and the connection closed, so a test can
send header bytes that http.server would refuse or rewrite. Clients that hang up mid-body are fine;
``stop()`` returns promptly even while responses are still streaming, because it shuts down every
open connection.
"""

from __future__ import annotations

import gzip as gzip_module
import socket
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_CHUNK = 64 * 1024
_FILLER = b"<!-- endless filler -->\n" * 2730  # ~64 KiB, repeated when an endless route has no body
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, query string included
    headers: dict[str, str]  # lower-cased names


@dataclass(frozen=True)
class Reply:
    """One scripted response; the keyword arguments of ``FeedServer.add``."""

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)  # sent last: they override the defaults
    content_type: str | None = "application/rss+xml"
    etag: str | None = None  # sent, and a matching If-None-Match gets 304
    last_modified: str | None = None  # HTTP-date; sent, and a later If-Modified-Since gets 304
    delay: float = 0.0  # seconds to wait before the status line
    gzip: bool = False  # compress the body and send Content-Encoding: gzip
    drip: float | None = None  # seconds between single bytes of the body
    endless: bool = False  # stream the body (or filler) over and over, chunked, until the client leaves
    file: str | Path | None = None  # the body is this file's bytes
    raw: bytes | None = None  # the whole response, byte for byte; then the connection is closed

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        if self.file is not None:
            if self.body:
                raise ValueError("a reply takes a body or a file, not both")
            if not Path(self.file).is_file():
                raise FileNotFoundError(self.file)
        if self.raw is not None and (self.body or self.file or self.endless or self.gzip or self.drip):
            raise ValueError("a raw reply is the whole response; body, file, endless, gzip and drip do not apply")
        if self.endless and (self.gzip or self.drip or self.file):
            raise ValueError("an endless reply streams its plain body; gzip, drip and file do not apply")


class FeedServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._routes: dict[str, list[Reply]] = {}
        self._served: dict[str, int] = {}  # route -> replies given so far
        self._requests: list[RecordedRequest] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---

    def start(self) -> FeedServer:
        server_class = _Server6 if ":" in self.host else _Server
        self._httpd = server_class((self.host, self._requested_port), _Handler)
        self._httpd.feed = self
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FeedServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        # Wakes handler threads blocked reading a keep-alive connection or writing a slow body.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses ---

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # --- scripting ---

    def add(self, path: str, body: bytes | str = b"", **reply: Any) -> None:
        """Serve ``path`` with one response (see ``Reply`` for the keywords); replaces any earlier one."""
        self.add_sequence(path, [dict(reply, body=body)])

    def add_sequence(self, path: str, replies: Iterable[Mapping[str, Any]]) -> None:
        """Serve ``path`` with these responses in order; the last one repeats."""
        scripted = [Reply(**reply) for reply in replies]
        if not scripted:
            raise ValueError("a sequence needs at least one reply")
        with self._lock:
            self._routes[path] = scripted
            self._served[path] = 0

    def redirect(self, path: str, to: str, status: int = 301) -> None:
        self.add(path, status=status, headers={"Location": to}, content_type=None)

    # --- observation ---

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def hits(self, path: str) -> int:
        return sum(1 for request in self.requests if request.path == path)

    # --- used by the handler ---

    def _receive(self, request: RecordedRequest) -> Reply | None:
        with self._lock:
            self._requests.append(request)
            route = request.path if request.path in self._routes else request.path.split("?", 1)[0]
            replies = self._routes.get(route)
            if replies is None:
                return None
            index = self._served[route]
            self._served[route] = index + 1
            return replies[min(index, len(replies) - 1)]

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connections when a benchmark's thread pool connects at once.
    request_queue_size = 128
    feed: FeedServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

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
        reply = feed._receive(RecordedRequest(self.command, self.path, headers))
        if reply is None:
            self._respond(404, {"Content-Type": "text/plain", "Content-Length": "10"}, [b"not found\n"])
            return
        if reply.delay and feed._stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            return
        validators = {"ETag": reply.etag, "Last-Modified": reply.last_modified}
        validators = {name: value for name, value in validators.items() if value is not None}
        if 200 <= reply.status < 300 and _not_modified(reply, headers):
            self._respond(304, validators, [], reply.headers)
            return
        response_headers: dict[str, str] = {**validators}
        if reply.content_type and reply.status not in _NO_BODY_STATUSES:
            response_headers["Content-Type"] = reply.content_type
        if reply.status in _NO_BODY_STATUSES:
            self._respond(reply.status, response_headers, [], reply.headers)
        elif reply.endless:
            response_headers["Transfer-Encoding"] = "chunked"
            self._respond(reply.status, response_headers, self._endless(reply.body or _FILLER), reply.headers)
        else:
            length, chunks = _payload(reply)
            if reply.gzip:
                response_headers["Content-Encoding"] = "gzip"
            response_headers["Content-Length"] = str(length)
            if reply.drip:
                chunks = self._drip(chunks, reply.drip)
            self._respond(reply.status, response_headers, chunks, reply.headers)

    def _respond(
        self,
        status: int,
        defaults: Mapping[str, str],
        chunks: Iterable[bytes],
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        """Send a response; ``overrides`` replace same-named ``defaults`` whatever their case, so a
        test can script a lying Content-Length or a bogus Content-Encoding."""
        overrides = overrides or {}
        replaced = {name.lower() for name in overrides}
        self.send_response(status)
        for name, value in [*((n, v) for n, v in defaults.items() if n.lower() not in replaced), *overrides.items()]:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.flush()
        if self.command == "HEAD":
            return
        for chunk in chunks:
            self.wfile.write(chunk)
            self.wfile.flush()

    def _endless(self, block: bytes) -> Iterator[bytes]:
        frame = b"%x\r\n%s\r\n" % (len(block), block)
        while not self.server.feed._stopping.is_set():
            yield frame

    def _drip(self, chunks: Iterable[bytes], interval: float) -> Iterator[bytes]:
        for chunk in chunks:
            for i in range(len(chunk)):
                if self.server.feed._stopping.wait(interval):
                    return
                yield chunk[i : i + 1]


def _payload(reply: Reply) -> tuple[int, Iterable[bytes]]:
    """The body's length and its bytes in chunks; a file is streamed unless it must be compressed."""
    if reply.file is not None and not reply.gzip:
        path = Path(reply.file)
        return path.stat().st_size, _read_file(path)
    body = Path(reply.file).read_bytes() if reply.file is not None else reply.body
    if reply.gzip:
        # mtime=0 keeps the bytes identical between runs, which benchmarks and tests compare.
        body = gzip_module.compress(body, mtime=0)
    return len(body), [body]


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


def _not_modified(reply: Reply, request_headers: Mapping[str, str]) -> bool:
    if_none_match = request_headers.get("if-none-match")
    if reply.etag is not None and if_none_match is not None:
        # Weak comparison (RFC 9110, section 13.1.2); If-None-Match then overrides If-Modified-Since.
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or reply.etag.removeprefix("W/") in wanted
    if_modified_since = request_headers.get("if-modified-since")
    if reply.last_modified is not None and if_modified_since is not None:
        try:
            return parsedate_to_datetime(reply.last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False  # an unparseable date is ignored, as RFC 9110 requires
    return False
