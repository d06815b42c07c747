"""The body of a 2xx response: read under the size cap, decompressed with bounded memory.

Owns ``Accept-Encoding``'s counterpart: which content codings are decoded (gzip, x-gzip, deflate,
raw or zlib-wrapped, several gzip members), and the cap on the decompressed size, counted as the
bytes are inflated so that a gzip bomb stays small in memory. A body over the cap is a
``BodyTooLarge``; an unsupported or corrupt coding a ``FetchError``.

Must not follow redirects, judge status codes, parse the document or touch the ORM.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import httpx

from ingest.errors import BodyTooLarge, FetchError

# Only what _Inflater can decode with bounded memory; brotli/zstd would need their own guard.
ACCEPT_ENCODING = "gzip, deflate"


def read_body(response: httpx.Response, host: str, max_bytes: int) -> bytes:
    decode = _decoder(response.headers.get("content-encoding", ""), host)
    declared = response.headers.get("content-length", "")
    if decode is _identity and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(host, max_bytes)
    body = bytearray()
    # iter_raw, not iter_bytes: httpx's own decoder inflates each network read without limit, so a
    # 64 KiB read of a gzip bomb would become 64 MiB before any cap could be checked.
    for chunk in response.iter_raw():
        body += decode(chunk, max_bytes - len(body) + 1)
        if len(body) > max_bytes:
            raise _too_large(host, max_bytes)
    return bytes(body)


def read_head(response: httpx.Response, host: str, limit: int) -> bytes:
    """The first ``limit`` decoded bytes of a refusal's body (to recognise a challenge page); the
    rest is never read. A coding that cannot be decoded gives what was decoded so far: the status
    stays the failure, whatever its page is made of."""
    head = bytearray()
    try:
        decode = _decoder(response.headers.get("content-encoding", ""), host)
        for chunk in response.iter_raw():
            head += decode(chunk, limit - len(head))
            if len(head) >= limit:
                break
    except FetchError:
        pass
    return bytes(head)


def _too_large(host: str, max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"The body from {host} exceeds the {_size(max_bytes)} cap.")


def _identity(data: bytes, max_length: int) -> bytes:
    return data[:max_length]


def _decoder(content_encoding: str, host: str) -> Callable[[bytes, int], bytes]:
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return _identity
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflater(codings[0], host).decode
    raise FetchError(f"{host} sent the body in an unsupported Content-Encoding ({content_encoding[:100]}).")


class _Inflater:
    """gzip/deflate decoding that never produces more than the caller asks for per call."""

    def __init__(self, coding: str, host: str) -> None:
        self._gzip = coding != "deflate"
        self._host = host
        # "deflate" is meant to be zlib-wrapped, but some servers send raw deflate; the first two
        # bytes tell them apart, so deflate waits for them before choosing.
        self._head = b""
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._gzip else None

    def decode(self, data: bytes, max_length: int) -> bytes:
        """Up to ``max_length`` decoded bytes; fewer means every input byte was consumed."""
        try:
            return self._decode(data, max_length)
        except zlib.error as exc:
            kind = "gzip" if self._gzip else "deflate"
            raise FetchError(f"{self._host} sent a corrupt {kind}-compressed body.") from exc

    def _decode(self, data: bytes, max_length: int) -> bytes:
        if self._zlib is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        out = bytearray()
        while data and len(out) < max_length:
            if self._zlib.eof:
                if not self._gzip:
                    break  # bytes after the end of a deflate stream carry nothing
                # gzip allows several members back to back (RFC 1952, section 2.2).
                self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out += self._zlib.decompress(data, max_length - len(out))
            data = self._zlib.unused_data if self._zlib.eof else self._zlib.unconsumed_tail
        return bytes(out)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
