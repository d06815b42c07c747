"""``FeedServer``: a real HTTP/1.1 server on loopback, its routes, its faults and its ledger.

Owns the lifecycle (start, stop that returns promptly even mid-stream), the routes (scripted
replies and sequences, files and folders, generated feeds), the server-wide faults (random latency
and injected 500s from a seeded generator) and the ledger (every request, per-route hits, status,
bytes sent, concurrency). How a reply goes on the wire is ``handler``'s; what a reply is and when
it turns into a 304 is ``replies``'.
"""

from __future__ import annotations

import base64
import hmac
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote, unquote

from samples.feedserver.handler import Handler, Server, Server6
from samples.feedserver.replies import RecordedRequest, Reply, content_type, etag_for


class FeedServer:
    """Serves scripted replies on ``host`` (port 0: a free one); see the package docstring."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, feeds: Mapping[str, bytes] | None = None,
                 latency: tuple[float, float] = (0.0, 0.0), error_rate: float = 0.0, seed: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self.latency = latency  # each request waits a uniform draw from this range, in seconds
        self.error_rate = error_rate  # the share of requests answered 500 instead of their reply
        self.conditional = True  # False: If-None-Match / If-Modified-Since are ignored (always 200)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified when a response ends
        self._routes: dict[str, list[Reply]] = {}
        self._auth: dict[str, list[tuple[str, str, str]]] = {}  # route -> (header, value, challenge) required
        self._served: dict[str, int] = {}  # route -> replies given so far
        self._connections: set[socket.socket] = set()
        self._resets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self.reset_ledger()
        if feeds:
            self.add_feeds(feeds)

    # --- lifecycle ---

    def start(self) -> FeedServer:
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        server_class = Server6 if ":" in self.host else Server
        self._httpd = server_class((self.host, self._requested_port), Handler)
        self._httpd.feed = self
        self._port = self._httpd.server_address[1]
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

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` (from another thread) or ``timeout``; True once stopped. A
        command-line server waits here until it is interrupted."""
        return self._stopping.wait(timeout)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- addresses (still answered after stop, for the ledger) ---

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has not been started")
        return self._port

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

    def require(self, path: str, *, basic: tuple[str, str] | None = None, bearer: str | None = None,
                header: tuple[str, str] | None = None) -> None:
        """Answer ``path`` 401 (with WWW-Authenticate) unless the request carries these credentials:
        HTTP basic ``(user, password)``, a bearer token, or a header ``(name, value)``; each given
        one is required. ``require(path)`` with none lifts the requirement."""
        expected = []
        if basic is not None:
            pair = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode("ascii")
            expected.append(("authorization", f"Basic {pair}", 'Basic realm="feeds"'))
        if bearer is not None:
            expected.append(("authorization", f"Bearer {bearer}", 'Bearer realm="feeds"'))
        if header is not None:
            expected.append((header[0].lower(), header[1], 'Header realm="feeds"'))
        with self._lock:
            if expected:
                self._auth[path] = expected
            else:
                self._auth.pop(path, None)

    def add_feeds(self, feeds: Mapping[str, bytes], *, charset: str | None = None) -> None:
        """Serve each body at its path, as a publisher would: media type, strong ETag."""
        for path, body in feeds.items():
            self.add(path, body, etag=etag_for(body), content_type=content_type(body, charset))

    def add_file(self, path: str, file: str | Path, *, replace: Mapping[bytes, bytes] | None = None,
                 charset: str | None = None) -> None:
        """Serve a file's bytes (read now, with ``replace`` applied) with ETag and Last-Modified (its mtime)."""
        file = Path(file)
        body = file.read_bytes()
        for old, new in (replace or {}).items():
            body = body.replace(old, new)
        self.add(path, body, etag=etag_for(body), last_modified=formatdate(file.stat().st_mtime, usegmt=True),
                 content_type=content_type(body, charset))

    def add_folder(self, folder: str | Path, *, recursive: bool = True, **options: Any) -> list[str]:
        """Serve every non-hidden file under ``folder`` at its relative path (``add_file`` options);
        returns the routes, sorted."""
        folder = Path(folder)
        files = folder.rglob("*") if recursive else folder.iterdir()
        routes = []
        for file in sorted(files):
            relative = file.relative_to(folder)
            if file.is_file() and not any(part.startswith(".") for part in relative.parts):
                route = "/" + quote(relative.as_posix())
                self.add_file(route, file, **options)
                routes.append(route)
        return routes

    # --- observation ---

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def hits(self, path: str) -> int:
        return sum(1 for request in self.requests if request.path == path)

    def hit_counts(self) -> Counter[str]:
        """Requests per served route (query strings left out; unknown paths are not counted)."""
        with self._lock:
            return Counter(self._hit_counts)

    @property
    def served_ok(self) -> set[str]:
        """Routes a 2xx body was written for completely (since the last ``reset_ledger``)."""
        with self._lock:
            self._settle()
            return set(self._served_ok)

    @property
    def failed(self) -> set[str]:
        """Routes answered with a 5xx at their last request."""
        with self._lock:
            self._settle()
            return {path for path, status in self._last_status.items() if status >= 500}

    def last_status(self, path: str) -> int | None:
        with self._lock:
            self._settle()
            return self._last_status.get(path)

    def _settle(self, timeout: float = 2.0) -> None:
        """Wait (holding the lock) until no response is being written, for at most ``timeout``: a
        client has the last byte of a response a moment before the handler records how it ended,
        so a ledger read right after a request would otherwise race with that record."""
        self._settled.wait_for(lambda: not any(self._in_flight.values()), timeout=timeout)

    def sent(self, path: str) -> int:
        """Body bytes written for ``path`` so far (what got out before a client hung up)."""
        with self._lock:
            return self._sent.get(path, 0)

    def max_in_flight(self) -> int:
        """The most concurrent requests any single route ever had."""
        with self._lock:
            return max(self._max_in_flight.values(), default=0)

    def max_in_flight_total(self) -> int:
        """The most concurrent requests the server ever had, all routes together (one server is
        one host: the per-host budget's measure)."""
        with self._lock:
            return self._max_in_flight_total

    def start_times(self, path: str | None = None) -> list[float]:
        """When each request (for ``path``, or any) was received, oldest first (time.monotonic())."""
        return [r.at for r in self.requests if path is None or r.path.split("?", 1)[0] == path]

    def overlapping_paths(self) -> list[str]:
        """A route each time a request for it began while another one for it was in flight."""
        with self._lock:
            return list(self._overlaps)

    def reset_ledger(self) -> None:
        with self._lock:
            self._requests: list[RecordedRequest] = []
            self._hit_counts: Counter[str] = Counter()
            self._last_status: dict[str, int] = {}
            self._served_ok: set[str] = set()
            self._sent: dict[str, int] = {}
            self._in_flight: Counter[str] = Counter()
            self._max_in_flight: Counter[str] = Counter()
            self._overlaps: list[str] = []
            self._in_flight_total = 0
            self._max_in_flight_total = 0

    # --- used by the handler ---

    def _receive(self, request: RecordedRequest) -> tuple[str, Reply | None]:
        with self._lock:
            self._requests.append(request)
            bare = request.path.split("?", 1)[0]
            for route in (request.path, bare, quote(unquote(bare))):
                if route in self._routes:
                    break
            else:
                return bare, None
            replies = self._routes[route]
            index = self._served[route]
            self._served[route] = index + 1
            self._hit_counts[route] += 1
            # Counted in flight in the same critical section as the hit: a ledger read never sees
            # a request that was counted but is not yet in flight.
            self._in_flight[route] += 1
            self._in_flight_total += 1
            self._max_in_flight_total = max(self._max_in_flight_total, self._in_flight_total)
            return route, replies[min(index, len(replies) - 1)]

    def _challenge(self, route: str, headers: Mapping[str, str]) -> str | None:
        """The WWW-Authenticate of a 401 when ``route`` requires credentials the request lacks, else None."""
        with self._lock:
            expected = self._auth.get(route, [])
        for name, value, challenge in expected:
            if not hmac.compare_digest(headers.get(name, "").encode(), value.encode()):
                return challenge
        return None

    def _begin(self, route: str) -> tuple[float, bool]:
        """Note an overlap of requests in flight; draw its latency and whether it fails."""
        with self._lock:
            if self._in_flight[route] > 1:
                self._overlaps.append(route)
            self._max_in_flight[route] = max(self._max_in_flight[route], self._in_flight[route])
            low, high = self.latency
            latency = self._random.uniform(low, high) if high else 0.0
            fail = bool(self.error_rate) and self._random.random() < self.error_rate
        return latency, fail

    def _status_sent(self, route: str, status: int) -> None:
        """Record a route's status before its status line is written: once a client has read a
        response, ``last_status`` already says it."""
        with self._lock:
            self._last_status[route] = status

    def _end(self, route: str, status: int | None, complete: bool) -> None:
        with self._lock:
            self._in_flight[route] -= 1
            self._in_flight_total -= 1
            if status is not None and 200 <= status < 300 and complete:
                self._served_ok.add(route)
            self._settled.notify_all()

    def _count_sent(self, route: str, n: int) -> None:
        with self._lock:
            self._sent[route] = self._sent.get(route, 0) + n

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _mark_reset(self, connection: socket.socket) -> None:
        with self._lock:
            self._resets.add(connection)

    def _take_reset(self, connection: socket.socket) -> bool:
        with self._lock:
            if connection in self._resets:
                self._resets.discard(connection)
                return True
            return False
