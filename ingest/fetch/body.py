"""The body of a 2xx response: read under the size cap, decompressed with bounded memory.

Owns ``Accept-Encoding``'s counterpart: which content codings are decoded (gzip, x-gzip, deflate,
raw or zlib-wrapped, several gzip members; br and zstd when their libraries import, several zstd
frames), several codings in one Content-Encoding (undone in reverse order), and the cap on the
decompressed size, counted as the bytes are decoded so that a compression bomb stays small in
memory: every decoder is pulled for at most ``STEP`` bytes at a time, never for what one input
chunk happens to expand to. A body over the cap is a ``BodyTooLarge``; an unsupported or corrupt
coding a ``FetchError``.

Must not follow redirects, judge status codes, parse the document or touch the ORM.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator

import httpx

from ingest.errors import BodyTooLarge, FetchError

try:  # optional: without the library, br is neither asked for nor decoded
    import brotli
except ImportError:
    brotli = None
try:  # optional, as brotli
    import zstandard
except ImportError:
    zstandard = None

# The most a decoder hands over per step: memory is the cap plus about this much per coding.
STEP = 64 * 1024
# The largest zstd window a body may need (RFC 9659: 8 MB for the zstd content coding); the
# decoder allocates the window, so a frame asking for more is refused before it costs memory.
ZSTD_MAX_WINDOW = 8 << 20
# Content-Encoding may stack codings; more than this is not a publisher, it is a puzzle.
MAX_CODINGS = 3

_GZIP = ("gzip", "x-gzip", "deflate")


def supported_codings() -> tuple[str, ...]:
    """The content codings this process can decode, preferred first (what Accept-Encoding lists)."""
    optional = (("br", brotli), ("zstd", zstandard))
    return (*(name for name, module in optional if module is not None), "gzip", "deflate")


ACCEPT_ENCODING = ", ".join(supported_codings())


def read_body(response: httpx.Response, host: str, max_bytes: int) -> bytes:
    codings = _codings(response.headers.get("content-encoding", ""), host)
    declared = response.headers.get("content-length", "")
    if not codings and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(host, max_bytes)
    body = bytearray()
    # iter_raw, not iter_bytes: httpx's own decoder inflates each network read without limit, so a
    # 64 KiB read of a gzip bomb would become 64 MiB before any cap could be checked.
    for piece in _decoded(response.iter_raw(), codings, host):
        body += piece
        if len(body) > max_bytes:
            raise _too_large(host, max_bytes)
    return bytes(body)


def read_head(response: httpx.Response, host: str, limit: int) -> bytes:
    """The first ``limit`` decoded bytes of a refusal's body (to recognise a challenge page); the
    rest is never read. A coding that cannot be decoded gives what was decoded so far: the status
    stays the failure, whatever its page is made of."""
    head = bytearray()
    try:
        for piece in _decoded(response.iter_raw(), _codings(response.headers.get("content-encoding", ""), host), host):
            head += piece
            if len(head) >= limit:
                break
    except FetchError:
        pass
    return bytes(head[:limit])


def _too_large(host: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"The body from {host} exceeds the {_size(max_bytes)} cap.")


def _codings(content_encoding: str, host: str) -> list[str]:
    """The codings of ``Content-Encoding`` in the order they were applied; refused with a sentence
    when one cannot be decoded here or when there are too many."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    known = {*_GZIP, *supported_codings()}
    unknown = [c for c in codings if c not in known]
    if unknown:
        raise FetchError(
            f"{host} sent the body in an unsupported Content-Encoding ({content_encoding[:100]}); "
            f"{', '.join(supported_codings())} can be decoded."
        )
    if len(codings) > MAX_CODINGS:
        raise FetchError(
            f"{host} sent the body in {len(codings)} stacked content codings ({content_encoding[:100]}); "
            f"at most {MAX_CODINGS} are decoded."
        )
    return codings


def _decoded(raw: Iterable[bytes], codings: list[str], host: str) -> Iterator[bytes]:
    """The decoded body in pieces of about ``STEP`` bytes at most: the last coding applied is
    undone first (RFC 9110, section 8.4), each decoder pulling from the one before it."""
    stream: Iterable[bytes] = raw
    for coding in reversed(codings):
        stream = _DECODERS[coding](stream, coding, host)
    return iter(stream)


def _inflate(chunks: Iterable[bytes], coding: str, host: str) -> Iterator[bytes]:
    """gzip/deflate, never more than ``STEP`` bytes per zlib call."""
    gzip = coding != "deflate"
    kind = "gzip" if gzip else "deflate"
    # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate; the first two
    # bytes tell them apart, so deflate waits for them before choosing.
    head = b""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzip else None
    try:
        for data in chunks:
            if inflater is None:
                head += data
                if len(head) < 2:
                    continue
                data, head = head, b""
                zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                inflater = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            while data:
                if inflater.eof:
                    if not gzip:
                        return  # bytes after the end of a deflate stream carry nothing
                    # gzip allows several members back to back (RFC 1952, section 2.2).
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                piece = inflater.decompress(data, STEP)
                data = inflater.unused_data if inflater.eof else inflater.unconsumed_tail
                if piece:
                    yield piece
        if inflater is not None and not inflater.eof:
            if piece := inflater.flush(STEP):
                yield piece
    except zlib.error as exc:
        raise FetchError(f"{host} sent a corrupt {kind}-compressed body.") from exc


def _unbrotli(chunks: Iterable[bytes], coding: str, host: str) -> Iterator[bytes]:
    """br: brotli's ``output_buffer_limit`` keeps each step near ``STEP``; the rest of what one
    input chunk holds is drained with empty input before the next chunk is handed over."""
    decompressor = brotli.Decompressor()
    try:
        for data in chunks:
            piece = decompressor.process(data, output_buffer_limit=STEP)
            while piece:
                yield piece
                if decompressor.is_finished():
                    break
                piece = decompressor.process(b"", output_buffer_limit=STEP)
            if decompressor.is_finished():
                return  # bytes after the end of the stream carry nothing
        finished = decompressor.is_finished()
    except brotli.error as exc:
        raise FetchError(f"{host} sent a corrupt br-compressed body.") from exc
    if not finished:
        raise FetchError(f"{host} sent a br-compressed body that ends before its stream does.")


class _Pull:
    """The raw-reader face zstandard's stream_reader pulls from: at most ``size`` bytes of the
    chunks, b"" at their end."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = b""

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._pending = chunk
        if size is None or size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _unzstd(chunks: Iterable[bytes], coding: str, host: str) -> Iterator[bytes]:
    """zstd: a stream reader read ``STEP`` bytes at a time (a decompressobj would return all that
    one input chunk expands to), its window at most ``ZSTD_MAX_WINDOW``, frames read back to back."""
    decompressor = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
    reader = decompressor.stream_reader(_Pull(chunks), read_size=STEP, read_across_frames=True, closefd=False)
    try:
        while piece := reader.read(STEP):
            yield piece
    except zstandard.ZstdError as exc:
        if "memory" in str(exc) or "window" in str(exc).lower():
            raise FetchError(
                f"{host} sent a zstd-compressed body that needs a window larger than {_size(ZSTD_MAX_WINDOW)}."
            ) from exc
        raise FetchError(f"{host} sent a corrupt zstd-compressed body.") from exc


_DECODERS: dict[str, Callable[[Iterable[bytes], str, str], Iterator[bytes]]] = {
    "gzip": _inflate, "x-gzip": _inflate, "deflate": _inflate, "br": _unbrotli, "zstd": _unzstd,
}


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
