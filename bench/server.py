"""A small HTTP/1.1 server on 127.0.0.1 that serves every feed file of a folder, for the benchmarks.

    with CorpusServer(folder) as server:
        urls = server.urls()              # one URL per feed file, sorted by name
        server.mode = "ignore"            # from now on conditional headers are ignored (always 200)
        server.add_stream("/big", path)   # a file sent chunked, without Content-Length
        server.sent("/big")               # body bytes written before the client hung up

Modes: ``conditional`` sends ETag and Last-Modified and answers 304 to a matching conditional
request; ``ignore`` sends the same validators but always answers 200 with the body (so a client
must notice that nothing changed by itself, e.g. by content hash).

Bodies are read into memory once, so serving costs little CPU beside the client being measured;
``add_stream`` routes stream from disk. It runs in the benchmark's parent process, while the
client being measured runs in a child process: the two never share an interpreter (or a GIL).
"""

from __future__ import annotations

import hashlib
import socket
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

SKIP_SUFFIXES = (".md", ".txt", ".tsv", ".json", ".opml")
_CHUNK = 64 * 1024
_LAST_MODIFIED = formatdate(1_700_000_000, usegmt=True)


def feed_files(folder: str | Path) -> list[Path]:
    """The feed files of a corpus folder: every regular file except notes, lists and hidden files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"The corpus folder {folder} does not exist; generate one with `python -m bench.generate --out DIR`.")
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SKIP_SUFFIXES))


def content_type(body: bytes) -> str:
    """The media type a publisher would send: Atom, RDF or RSS (all +xml: the declared encoding rules)."""
    head = body[:4096]
    if b"<feed" in head:
        return "application/atom+xml"
    if b"<rdf:RDF" in head or b"<RDF" in head:
        return "application/rdf+xml"
    return "application/rss+xml"


class CorpusServer:
    def __init__(self, folder: str | Path | None = None, *, mode: str = "conditional") -> None:
        self.mode = mode
        self._bodies: dict[str, tuple[bytes, str, str]] = {}  # path -> (body, etag, content type)
        self._streams: dict[str, Path] = {}
        self._sent: dict[str, int] = {}
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        if folder is not None:
            for path in feed_files(folder):
                self.add(f"/{quote(path.name)}", path.read_bytes())

    def add(self, route: str, body: bytes) -> None:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        self._bodies[route] = (body, etag, content_type(body))

    def add_stream(self, route: str, path: Path) -> None:
        """Serve ``path`` chunked (no Content-Length), so a client can only stop it by hanging up."""
        self._streams[route] = Path(path)

    def sent(self, route: str) -> int:
        with self._lock:
            return self._sent.get(route, 0)

    def _count(self, route: str, n: int) -> None:
        with self._lock:
            self._sent[route] = self._sent.get(route, 0) + n

    # --- lifecycle ---

    def start(self) -> CorpusServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.corpus = self
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> CorpusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "the server is not running"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def urls(self) -> list[str]:
        return [self.base_url + route for route in sorted(self._bodies)]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    corpus: CorpusServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        corpus = self.server.corpus
        route = unquote(self.path.split("?", 1)[0])
        route = quote(route)
        if route in corpus._streams:
            self._stream(route, corpus._streams[route])
            return
        found = corpus._bodies.get(route)
        if found is None:
            self._send(404, {"Content-Type": "text/plain"}, b"not found\n")
            return
        body, etag, ctype = found
        validators = {"ETag": etag, "Last-Modified": _LAST_MODIFIED}
        if corpus.mode == "conditional" and self._not_modified(etag):
            self._send(304, validators, b"")
            return
        self._send(200, {**validators, "Content-Type": ctype}, body, route)

    def _not_modified(self, etag: str) -> bool:
        if_none_match = self.headers.get("If-None-Match")
        if if_none_match is not None:
            return etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return self.headers.get("If-Modified-Since") == _LAST_MODIFIED

    def _send(self, status: int, headers: dict[str, str], body: bytes, route: str | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.flush()
            view = memoryview(body)
            for start in range(0, len(body), _CHUNK):  # in chunks, so that `sent` counts what got out
                self.wfile.write(view[start:start + _CHUNK])
                if route is not None:
                    self.server.corpus._count(route, min(_CHUNK, len(body) - start))
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _stream(self, route: str, path: Path) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    self.server.corpus._count(route, len(chunk))
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except OSError:  # the client hung up (a size cap): that is what the memory benchmark checks
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
