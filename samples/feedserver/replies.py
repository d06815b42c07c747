"""What the feed server says: scripted replies, the one conditional-GET rule, bodies and validators.

Owns the ``Reply`` value (status, headers, body and the faults of one response), the conditional
rule every route shares (RFC 9110, section 13), and the helpers that turn files and bytes into
bodies, ETags and media types. Pure: no sockets, no threads; ``handler`` writes what this decides.
"""

from __future__ import annotations

import gzip as gzip_module
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

CHUNK = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, query string included
    headers: dict[str, str]  # lower-cased names
    at: float = 0.0  # time.monotonic() when the request was received (the server's clock)


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
    drip: float | None = None  # seconds between single bytes of the body (a slow body)
    chunked: bool = False  # send the body (or file) chunked, without Content-Length
    endless: bool = False  # stream the body (or filler) over and over, chunked, until the client leaves
    file: str | Path | None = None  # the body is this file's bytes
    raw: bytes | None = None  # the whole response, byte for byte; then the connection is closed
    drop: bool = False  # read the request, close the connection, send nothing
    reset: bool = False  # read the request, then reset the connection (TCP RST)

    def __post_init__(self) -> None:
        if isinstance(self.body, str):
            object.__setattr__(self, "body", self.body.encode("utf-8"))
        if self.file is not None:
            if self.body:
                raise ValueError("a reply takes a body or a file, not both")
            if not Path(self.file).is_file():
                raise FileNotFoundError(self.file)
        shaped = self.body or self.file or self.endless or self.gzip or self.drip or self.chunked
        if (self.raw is not None or self.drop or self.reset) and shaped:
            raise ValueError("raw, drop and reset replies send no body of ours; body, file, endless, gzip, "
                             "drip and chunked do not apply")
        if sum((self.raw is not None, self.drop, self.reset)) > 1:
            raise ValueError("a reply is raw, dropped or reset, not several")
        if self.endless and (self.gzip or self.drip or self.file):
            raise ValueError("an endless reply streams its plain body; gzip, drip and file do not apply")
        if self.chunked and self.drip:
            raise ValueError("a chunked reply is sent in chunks, not dripped")

    @property
    def validators(self) -> dict[str, str]:
        """The ETag and Last-Modified this reply sends, on a 200 and on a 304 alike."""
        pairs = {"ETag": self.etag, "Last-Modified": self.last_modified}
        return {name: value for name, value in pairs.items() if value is not None}


def not_modified(reply: Reply, request_headers: Mapping[str, str]) -> bool:
    """Whether a GET/HEAD with these (lower-cased) headers gets 304 instead of ``reply``.

    RFC 9110, section 13.2.2: If-None-Match is evaluated first, with the weak comparison
    (``W/"x"`` matches ``"x"``; ``*`` matches any current representation); when it is present,
    If-Modified-Since is ignored. Otherwise If-Modified-Since gets 304 when the representation was
    last modified at or before that date; an unparseable date is ignored. Only a 2xx reply can
    turn into a 304.
    """
    if not 200 <= reply.status < 300:
        return False
    if_none_match = request_headers.get("if-none-match")
    if if_none_match is not None:
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or (reply.etag is not None and reply.etag.removeprefix("W/") in wanted)
    if_modified_since = request_headers.get("if-modified-since")
    if reply.last_modified is not None and if_modified_since is not None:
        try:
            return parsedate_to_datetime(reply.last_modified) <= parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
    return False


def payload(reply: Reply) -> tuple[int, Iterable[bytes]]:
    """The body's length and its bytes in chunks of at most ``CHUNK`` bytes, so that what a client
    that hangs up mid-body received can be counted; a file is streamed unless it must be compressed."""
    if reply.file is not None and not reply.gzip:
        path = Path(reply.file)
        return path.stat().st_size, _read_file(path)
    body = Path(reply.file).read_bytes() if reply.file is not None else reply.body
    if reply.gzip:
        # mtime=0 keeps the bytes identical between runs, which benchmarks and tests compare.
        body = gzip_module.compress(body, mtime=0)
    view = memoryview(body)
    return len(body), [view[start:start + CHUNK] for start in range(0, len(body), CHUNK)]


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def etag_for(body: bytes) -> str:
    """A strong ETag derived from the bytes: the same body always gets the same tag."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def content_type(body: bytes, charset: str | None = None) -> str:
    """The media type a publisher would send: Atom, RDF or RSS (all +xml: the declared encoding rules)."""
    head = body[:4096]
    if b"<feed" in head:
        media = "application/atom+xml"
    elif b"<rdf:RDF" in head or b"<RDF" in head:
        media = "application/rdf+xml"
    else:
        media = "application/rss+xml"
    return f"{media}; charset={charset}" if charset else media
