"""The HTTP stage: one conditional GET per feed, turned into a ``FetchResult`` or a ``SourceError``.

Owns everything about talking to a publisher's server: the identifying headers, conditional
requests, redirects (followed here, one hop at a time), the connect/read timeouts and the overall
per-feed deadline, the size cap counted after decompression (so a gzip bomb stays small in
memory), and the SSRF guard that refuses non-http(s) URLs and hosts in private or reserved
networks, on the first request and on every redirect.

It must not touch the ORM or any model, must not parse feeds, and reads ``django.conf.settings``
only in ``FetchSettings.from_settings()``; everything else receives its configuration explicitly.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
import typing
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import partial
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from pipeline.networks import NetworkListError, parse_networks

from ingest.errors import BlockedURL, BodyTooLarge, FetchError, HTTPStatusError, SourceGone
from ingest.types import FetchRequest, FetchResult

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
# Only what _Inflater can decode with bounded memory; brotli/zstd would need their own guard.
ACCEPT_ENCODING = "gzip, deflate"

# Each fetch holds at most one connection at a time (a redirect's response is closed before the
# next hop), so a client needs one connection per worker thread sharing it.
DEFAULT_CONNECTIONS = 16

RETRY_AFTER_CAP = 7 * 24 * 3600.0

_PERMANENT_REDIRECTS = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str
    connect_timeout: float  # seconds to establish TCP (and TLS)
    read_timeout: float  # seconds of silence tolerated while waiting for bytes
    deadline: float  # seconds for the whole fetch of one feed: every hop, headers and body
    max_bytes: int  # cap on the decompressed body
    max_redirects: int
    allowed_networks: tuple[IPNetwork, ...] = ()  # exceptions to the private-address refusal

    @classmethod
    def from_settings(cls) -> FetchSettings:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        # pipeline/settings.py already parsed (and so validated) these at start-up; strings still
        # arrive from settings changed at run time (override_settings), and are checked here.
        try:
            networks = parse_networks(settings.INGEST_ALLOWED_NETWORKS, name="INGEST_ALLOWED_NETWORKS")
        except NetworkListError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        return cls(
            user_agent=settings.INGEST_USER_AGENT,
            connect_timeout=float(settings.INGEST_CONNECT_TIMEOUT),
            read_timeout=float(settings.INGEST_READ_TIMEOUT),
            deadline=float(settings.INGEST_DEADLINE),
            max_bytes=int(settings.INGEST_MAX_BYTES),
            max_redirects=int(settings.INGEST_MAX_REDIRECTS),
            allowed_networks=tuple(networks),
        )


# --- SSRF guard -------------------------------------------------------------------------------

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; not is_private on every Python
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# Checked in order; the first match names the reason. The final catch-all refuses anything the
# ipaddress module does not consider globally routable (documentation, benchmarking, ...).
_REFUSED: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("a loopback", lambda ip: ip.is_loopback),
    ("a link-local", lambda ip: ip.is_link_local),
    ("an unspecified", lambda ip: ip.is_unspecified),
    ("a multicast", lambda ip: ip.is_multicast),
    ("a shared (carrier-grade NAT)", lambda ip: ip in _SHARED),
    ("a private", lambda ip: ip.is_private),
    ("a reserved", lambda ip: ip.is_reserved),
    ("a site-local", lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
    ("a non-public", lambda ip: not ip.is_global),
)


def _effective_address(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address really reaches, when it embeds one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        # DNS64/NAT64 networks hand out 64:ff9b::a.b.c.d for IPv4-only hosts, so these must be
        # judged by the IPv4 address, not refused wholesale.
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def _refusal(ip: IPAddress, allowed: tuple[IPNetwork, ...]) -> str | None:
    """Why connecting to ``ip`` is refused ("a private"), or None when it is allowed."""
    ip = _effective_address(ip)
    if any(ip in network for network in allowed):
        return None
    for reason, matches in _REFUSED:
        if matches(ip):
            return reason
    return None


def _resolve_allowed(host: str, port: int, allowed: tuple[IPNetwork, ...]) -> list[str]:
    """Every address ``host`` resolves to, refusing the host if any one of them is not allowed.

    All addresses are checked, not only the first, because which one gets connected to is up to
    the resolver's ordering and to fallbacks after a failed attempt.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"Could not resolve the host name {host}.") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        reason = _refusal(ipaddress.ip_address(address), allowed)
        if reason is not None:
            what = "it is" if host == address else f"it resolves to {address},"
            raise BlockedURL(f"Refused to fetch from {host}: {what} {reason} address.")
    return addresses


# The widest URL column (Entry.link, comments_feed_url); this module cannot import the models.
# A feed's own URL has a narrower column, which registration checks.
_URL_MAX = 2000
_HOST_MAX = 253  # DNS: a name of at most 253 characters, in labels of 1 to 63
_LABEL_MAX = 63
# What an IDNA-encoded host name may contain. The underscore is not valid DNS for a host, but real
# publishers use it and resolvers answer it.
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _parse_target(url: str | httpx.URL) -> httpx.URL:
    """The URL as httpx will send it, if it is a well-formed http(s) URL that may be fetched.

    The one check of every URL that is registered, fetched or followed (redirects too): refused
    with a sentence (``BlockedURL``) are other schemes, over-long URLs, whitespace and control
    characters anywhere, a missing or malformed host, and ports outside 1-65535.
    """
    text = str(url)
    shown = text[:200]
    if len(text) > _URL_MAX:
        raise BlockedURL(f"The URL is longer than {_URL_MAX} characters.")
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018  (decodes the IDNA host lazily; error messages use it later)
    except (httpx.InvalidURL, ValueError) as exc:  # ValueError: idna's IDNAError for hosts like xn--
        _refuse_invisible(text)
        raise BlockedURL(f"{shown!r} is not a valid URL ({exc}).") from None
    if parsed.scheme not in _DEFAULT_PORTS:
        what = f"{parsed.scheme}: URLs" if parsed.scheme else "URLs without a scheme"
        raise BlockedURL(f"Only http and https URLs can be fetched, not {what}.")
    _refuse_invisible(text)
    if not parsed.raw_host:
        raise BlockedURL(f"The URL {shown} has no host name.")
    _refuse_malformed_host(parsed.raw_host.decode("ascii"))
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise BlockedURL(f"The URL {shown} has the port {parsed.port}; a port is a number from 1 to 65535.")
    if len(str(parsed)) > _URL_MAX:  # percent-encoding and IDNA make a URL longer
        raise BlockedURL(f"The URL is longer than {_URL_MAX} characters once encoded.")
    return parsed


def _refuse_invisible(text: str) -> None:
    # A URL has no whitespace or control characters; httpx would percent-encode some of them (a
    # space in a host becomes "%20"), so the URL stored or fetched would not be the one given.
    # isprintable() is False for controls and for invisible format characters (bidi overrides).
    for position, character in enumerate(text):
        if character.isspace() or not character.isprintable():
            what = "a space" if character == " " else f"the character {character!r}"
            raise BlockedURL(f"The URL {text[:200]!r} contains {what} at position {position}; "
                             "percent-encode it (a space is %20).")


def _refuse_malformed_host(host: str) -> None:
    """``host`` as httpx sends it (IDNA-encoded, lower case): an IP literal or a DNS name."""
    if ":" in host:  # an IPv6 literal, without its brackets; its zone id arrives as %25
        try:
            ipaddress.ip_address(host.replace("%25", "%", 1))
        except ValueError:
            raise BlockedURL(f"The host [{host[:100]}] is not a valid IPv6 address.") from None
        return
    labels = host.removesuffix(".").split(".")
    if (len(host) > _HOST_MAX or not all(0 < len(label) <= _LABEL_MAX for label in labels)
            or not set(host) <= _HOST_CHARACTERS | {"."}):
        raise BlockedURL(f"The host name {host[:100]!r} is not valid: a host name is letters, digits and "
                         f"hyphens in dot-separated labels of at most {_LABEL_MAX} characters.")


def check_url(url: str, settings: FetchSettings) -> None:
    """Refuse (``BlockedURL``) a URL the fetcher must never request; ``FetchError`` if DNS fails.

    Meant for registration time. ``fetch_feed`` does not trust this earlier answer: DNS may
    change (or be made to change) in between, so it checks again when it connects.
    """
    parsed = _parse_target(url)
    _resolve_allowed(_ascii_host(parsed), parsed.port or _DEFAULT_PORTS[parsed.scheme], settings.allowed_networks)


def _ascii_host(url: httpx.URL) -> str:
    # The IDNA-encoded form is what httpcore resolves, so check exactly that name.
    return url.raw_host.decode("ascii")


# --- Transport: address pinning and the overall deadline ----------------------------------------
#
# Both guards live below httpx, in an httpcore network backend, because that is the only layer
# that sees every socket operation:
#
# * SSRF / DNS rebinding. Checking a name and then letting the library resolve it again to
#   connect leaves a window in which the answer can change to 10.0.0.1. Checking the peer address
#   after connecting (``network_stream.get_extra_info("server_addr")``) closes the window only
#   after a SYN and the request have already gone to the refused address. Instead the backend
#   resolves the name once, checks every address, and connects to the checked IP literal. TLS
#   still verifies the certificate against the host name, since httpcore passes the origin's name
#   as ``server_hostname`` to ``start_tls``, and the pool stays keyed by host name, so a
#   connection is only ever reused for the origin it was checked for.
# * Deadline. httpx's timeouts apply to each socket operation, so a server sending one byte every
#   second never trips them. Each operation's timeout is clamped to what remains of the fetch's
#   deadline, which makes the deadline hard for connect, TLS, headers and body alike.
#
# httpx 0.28 has no public parameter for the network backend, hence the replaced ``_pool``
# (httpx is pinned in requirements.txt; tests/test_fetch.py fails if the guard stops applying).


@dataclass
class _Budget:
    deadline: float  # time.monotonic() by which the fetch must be over
    exhausted: bool = False  # set when a timeout was caused by the deadline, not the setting


_BUDGET: ContextVar[_Budget | None] = ContextVar("ingest_fetch_budget", default=None)

_T = typing.TypeVar("_T")


def _within_budget(
    operation: Callable[[float | None], _T], timeout: float | None, on_expiry: type[httpcore.TimeoutException]
) -> _T:
    # Sync httpx does all I/O in the calling thread, so the context variable set by fetch_feed is
    # the budget of the fetch this socket operation belongs to.
    budget = _BUDGET.get()
    if budget is None:
        return operation(timeout)
    remaining = budget.deadline - time.monotonic()
    if remaining <= 0:
        budget.exhausted = True
        raise on_expiry("the overall deadline is exhausted")
    if timeout is not None and timeout < remaining:
        return operation(timeout)
    try:
        return operation(remaining)
    except httpcore.TimeoutException:
        budget.exhausted = True
        raise


class _BudgetedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return _within_budget(lambda t: self._inner.read(max_bytes, t), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _within_budget(lambda t: self._inner.write(buffer, t), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = _within_budget(
            lambda t: self._inner.start_tls(ssl_context, server_hostname, t), timeout, httpcore.ConnectTimeout
        )
        return _BudgetedStream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.NetworkBackend):
    def __init__(self, allowed: tuple[IPNetwork, ...]) -> None:
        self._allowed = allowed
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        options = list(socket_options or ())
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in _resolve_allowed(host, port, self._allowed):
            connect = partial(
                self._sockets.connect_tcp, address, port, local_address=local_address, socket_options=options
            )
            try:
                stream = _within_budget(connect, timeout, httpcore.ConnectTimeout)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the host's next address, as socket.create_connection would
                continue
            return _BudgetedStream(stream)
        assert failure is not None  # getaddrinfo never returns an empty list without raising
        raise failure


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, settings: FetchSettings, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(settings.allowed_networks),
        )


def make_client(settings: FetchSettings, *, connections: int = DEFAULT_CONNECTIONS) -> httpx.Client:
    """A client for ``fetch_feed``, safe to share between threads; close it after the run.

    ``connections`` should be at least the number of threads sharing it: beyond that, fetches
    queue for a connection while their deadline runs. The address guard is built into the client
    from ``settings.allowed_networks``, so pass the same settings to ``fetch_feed``.
    """
    return httpx.Client(
        # An explicit transport also means HTTP(S)_PROXY is ignored, on purpose: through a proxy the
        # address guard would vet the proxy's address instead of the publisher's.
        transport=_GuardedTransport(
            settings,
            httpx.Limits(max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=30),
        ),
        headers={"User-Agent": settings.user_agent},
        timeout=_timeouts(settings, pool=settings.deadline),
        follow_redirects=False,
        # One client serves every source of a run from many threads: a cookie set by one feed
        # must not follow into the next request, so none is ever stored.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def _timeouts(settings: FetchSettings, *, pool: float) -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings.connect_timeout, read=settings.read_timeout, write=settings.read_timeout, pool=pool
    )


# --- The fetch ---------------------------------------------------------------------------------


def fetch_feed(request: FetchRequest, *, client: httpx.Client, settings: FetchSettings) -> FetchResult:
    """GET ``request.url`` conditionally, following redirects, within ``settings.deadline``.

    Returns a 2xx or 304 ``FetchResult``; raises ``BlockedURL``, ``FetchError``, ``BodyTooLarge``,
    ``HTTPStatusError`` or ``SourceGone`` with a one-sentence reason naming the host.
    """
    budget = _Budget(deadline=time.monotonic() + settings.deadline)
    token = _BUDGET.set(budget)
    try:
        return _follow_redirects(request, client, settings, budget)
    finally:
        _BUDGET.reset(token)


def _follow_redirects(
    request: FetchRequest, client: httpx.Client, settings: FetchSettings, budget: _Budget
) -> FetchResult:
    url = _parse_target(request.url)
    headers = {"Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING}
    # Stored state is checked again before it is sent: a row written by an older version, or by
    # hand, must cost at most its conditional request, never the run.
    if validator(request.etag, VALIDATOR_MAX["etag"]):
        headers["If-None-Match"] = request.etag
    if validator(request.last_modified, VALIDATOR_MAX["last_modified"]):
        headers["If-Modified-Since"] = request.last_modified
    conditional = len(headers) > 2

    visited = {str(url)}
    only_permanent = True
    for redirects in range(settings.max_redirects + 1):
        response = _send(client, url, headers, settings, budget)
        try:
            if response.status_code not in _REDIRECTS:
                permanent_url = str(url) if redirects and only_permanent else None
                return _complete(response, url, request, settings, budget, permanent_url, conditional)
            target = _redirect_target(response, url)
        finally:
            response.close()
        only_permanent = only_permanent and response.status_code in _PERMANENT_REDIRECTS
        if str(target) in visited:
            raise FetchError(f"{url.host} redirects in a loop.")
        visited.add(str(target))
        url = target
    raise FetchError(f"Gave up after {settings.max_redirects} redirects, the last one from {url.host}.")


def _send(
    client: httpx.Client, url: httpx.URL, headers: dict[str, str], settings: FetchSettings, budget: _Budget
) -> httpx.Response:
    remaining = budget.deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(f"The deadline of {settings.deadline:g} s was exceeded before reaching {url.host}.")
    # The address check for this hop happens in the transport, at connect time (see above).
    http_request = client.build_request("GET", url, headers=headers, timeout=_timeouts(settings, pool=remaining))
    with _transport_errors(url.host, settings, budget):
        for attempt in range(2):
            try:
                return client.send(http_request, stream=True)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                # A kept-alive connection the server closed in the meantime fails before any byte
                # of the response (httpcore does not retry it). A GET may be sent again: once, on a
                # fresh connection, as browsers do.
                if attempt or budget.deadline <= time.monotonic():
                    raise
            except (httpx.InvalidURL, UnicodeError) as exc:
                # httpx builds the next request of a redirect even with follow_redirects off (for
                # response.next_request), so a Location it cannot parse (or whose host is not valid
                # IDNA) fails here, before ours is read.
                raise FetchError(f"{url.host} redirected to a URL that cannot be followed ({exc}).") from None
    raise AssertionError("unreachable")  # the loop returns or raises


def _redirect_target(response: httpx.Response, url: httpx.URL) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise HTTPStatusError(
            f"{url.host} answered HTTP {response.status_code} without saying where to go.",
            status=response.status_code,
        )
    try:
        # A fragment is never sent and would only defeat the loop detection.
        target = url.join(location.strip()).copy_with(fragment=None)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise FetchError(f"{url.host} redirected to an invalid URL ({location[:200]!r}).") from None
    return _parse_target(target)


def _complete(
    response: httpx.Response,
    url: httpx.URL,
    request: FetchRequest,
    settings: FetchSettings,
    budget: _Budget,
    permanent_url: str | None,
    conditional: bool,
) -> FetchResult:
    status = response.status_code
    if status == 304 and not conditional:
        # "Not modified since" what? Taken as success, the source would stay empty for good.
        raise HTTPStatusError(
            f"{url.host} answered HTTP 304 Not Modified to a request that sent no validators (no ETag or "
            f"Last-Modified is stored), so there is nothing it can be unchanged from.",
            status=status,
        )
    if status == 304:
        content = b""
    elif 200 <= status < 300:
        with _transport_errors(url.host, settings, budget):
            content = _read_body(response, url.host, settings.max_bytes)
    else:
        raise _status_error(status, response.headers, url.host)
    return FetchResult(
        url=str(url),
        status=status,
        content=content,
        headers=dict(response.headers.items()),  # httpx lower-cases names and joins repeats
        # A 304 may omit the validators; the ones the request carried then remain current.
        etag=_kept_validator(response, "etag", request.etag if status == 304 else ""),
        last_modified=_kept_validator(response, "last-modified", request.last_modified if status == 304 else ""),
        permanent_url=permanent_url,
    )


# Column widths of the stored validators (TechnicalArticle / CommentFeed): a longer value is not
# kept at all, since a cut validator would never match and would only cost a full fetch.
VALIDATOR_MAX = {"etag": 255, "last_modified": 64}
_VISIBLE_ASCII = frozenset(range(0x20, 0x7F))


def validator(value: str, limit: int) -> bool:
    """True when ``value`` can be stored and sent back verbatim as a request header.

    HTTP field values may carry obs-text (bytes over 0x7F), but httpx encodes outgoing values as
    ASCII and a validator is opaque: one that cannot be echoed byte for byte is useless, and one
    stored would break every later request of its source.
    """
    return bool(value) and len(value) <= limit and value.strip() == value and all(ord(c) in _VISIBLE_ASCII for c in value)


def _kept_validator(response: httpx.Response, name: str, fallback: str) -> str:
    value = response.headers.get(name) or fallback
    return value if validator(value, VALIDATOR_MAX[name.replace("-", "_")]) else ""


def _status_error(status: int, headers: httpx.Headers, host: str) -> HTTPStatusError:
    phrase = httpx.codes.get_reason_phrase(status)
    message = f"HTTP {status} {phrase} from {host}." if phrase else f"HTTP {status} from {host}."
    if status == 410:
        return SourceGone(message, status=status)
    if status in (429, 503):
        return HTTPStatusError(message, status=status, retry_after=parse_retry_after(headers.get("retry-after")))
    return HTTPStatusError(message, status=status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at 7 days.

    None when absent or unusable; a date already past means "now" (0.0).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


# --- Body: decompression with bounded memory ------------------------------------------------------


def _read_body(response: httpx.Response, host: str, max_bytes: int) -> bytes:
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


# --- Errors -------------------------------------------------------------------------------------


@contextmanager
def _transport_errors(host: str, settings: FetchSettings, budget: _Budget) -> Iterator[None]:
    """Turn httpx's transport exceptions into a FetchError with a sentence a user can act on."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if budget.exhausted or isinstance(exc, httpx.PoolTimeout):
            message = f"The deadline of {settings.deadline:g} s was exceeded while fetching from {host}."
        elif isinstance(exc, httpx.ConnectTimeout):
            message = f"Connecting to {host} timed out after {settings.connect_timeout:g} s."
        else:
            message = f"{host} did not respond within the {settings.read_timeout:g} s read timeout."
        raise FetchError(message) from exc
    except httpx.TransportError as exc:
        raise FetchError(_transport_message(exc, host)) from exc


def _transport_message(exc: httpx.TransportError, host: str) -> str:
    # httpcore's pool re-raises with ``from None``, so the socket or TLS error that explains the
    # failure survives only as the implicit context.
    cause: BaseException = exc
    while (inner := cause.__cause__ or cause.__context__) is not None:
        cause = inner
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"The TLS certificate of {host} is not valid ({str(cause.verify_message).rstrip('.')})."
    if isinstance(cause, ssl.SSLError):
        return f"The TLS handshake with {host} failed ({cause.reason or 'SSL error'})."
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} closed the connection early or sent a malformed HTTP response."
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause) or "network error"
    if isinstance(exc, httpx.ConnectError):
        return f"Could not connect to {host} ({reason.lower()})."
    return f"The connection to {host} failed ({reason.lower()})."
