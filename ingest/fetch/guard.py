"""The SSRF guard: which URLs and which addresses the fetcher may ever reach.

What it guarantees, for every request of a fetch (the first one and every redirect hop):

* the URL is a well-formed http(s) URL of at most ``LINK_MAX`` characters (also once encoded), with
  no whitespace or control characters, a valid host name or IP literal and a port in 1-65535
  (``parse_target``; ``check_url`` applies the same rule at registration time);
* no connection is opened to a loopback, link-local, unspecified, multicast, carrier-grade NAT,
  private, reserved, site-local or otherwise non-global address, judged by the IPv4 address an
  IPv6 address embeds (mapped, 6to4, NAT64), unless it lies in ``FetchSettings.allowed_networks``;
  a host is refused if any one of the addresses it resolves to is refused;
* no DNS rebinding: the name is resolved once, every address is checked, and the connection goes
  to the checked IP literal (``GuardedBackend``, an httpcore network backend, the only layer that
  sees every socket operation). Checking a name and then letting the library resolve it again
  leaves a window in which the answer can change to 10.0.0.1; checking the peer address after
  connecting closes it only after a SYN and the request have already gone to the refused address.
  TLS still verifies the certificate against the host name, since httpcore passes the origin's
  name as ``server_hostname`` to ``start_tls``, and the pool stays keyed by host name, so a
  connection is only ever reused for the origin it was checked for.

Refusals are ``BlockedURL`` with a sentence naming the host (and, for an address refusal, the
``INGEST_ALLOWED_NETWORKS`` entry that would allow it on purpose); a name that does not resolve is a
``FetchError``. Must not: send requests, read bodies or touch the ORM; it imports only the fetch
configuration, the deadline clamp it connects under, ``ingest.errors``, ``ingest.links`` and
``ingest.types``. tests/test_fetch.py fails if the guard stops applying.
"""

from __future__ import annotations

import ipaddress
import socket
import typing
from collections.abc import Callable
from functools import partial

import httpcore
import httpx

from ingest.errors import BlockedURL, FetchError
from ingest.fetch.config import FetchSettings, IPAddress, IPNetwork
from ingest.fetch.deadline import BudgetedStream, within_budget
from ingest.links import DEFAULT_PORTS
from ingest.types import LINK_MAX

# --- address classification -----------------------------------------------------------------------

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
        ip = ipaddress.ip_address(address)
        reason = _refusal(ip, allowed)
        if reason is not None:
            what = "it is" if host == address else f"it resolves to {address},"
            raise BlockedURL(f"Refused to fetch from {host}: {what} {reason} address. {_allow_hint(ip)}")
    return addresses


def _allow_hint(ip: IPAddress) -> str:
    """How an operator allows this address on purpose: the one network that holds just it (the
    IPv4 address an IPv6 address embeds, since that is what the allowed networks are matched with)."""
    reached = _effective_address(ip)
    return f"To fetch from it on purpose, add {reached}/{reached.max_prefixlen} to INGEST_ALLOWED_NETWORKS."


# A URL is at most LINK_MAX, the widest URL column (Entry.link, comments_feed_url); a feed's own URL
# has a narrower column, which registration checks.
_HOST_MAX = 253  # DNS: a name of at most 253 characters, in labels of 1 to 63
_LABEL_MAX = 63
# What an IDNA-encoded host name may contain. The underscore is not valid DNS for a host, but real
# publishers use it and resolvers answer it.
_HOST_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


# --- URLs -------------------------------------------------------------------------------------------


def parse_target(url: str | httpx.URL) -> httpx.URL:
    """The URL as httpx will send it, if it is a well-formed http(s) URL that may be fetched.

    The one check of every URL that is registered, fetched or followed (redirects too): refused
    with a sentence (``BlockedURL``) are other schemes, over-long URLs, whitespace and control
    characters anywhere, a missing or malformed host, and ports outside 1-65535.
    """
    text = str(url)
    shown = text[:200]
    if len(text) > LINK_MAX:
        raise BlockedURL(f"The URL is longer than {LINK_MAX} characters.")
    try:
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018  (decodes the IDNA host lazily; error messages use it later)
    except (httpx.InvalidURL, ValueError) as exc:  # ValueError: idna's IDNAError for hosts like xn--
        _refuse_invisible(text)
        raise BlockedURL(f"{shown!r} is not a valid URL ({exc}).") from None
    if parsed.scheme not in DEFAULT_PORTS:
        what = f"{parsed.scheme}: URLs" if parsed.scheme else "URLs without a scheme"
        raise BlockedURL(f"Only http and https URLs can be fetched, not {what}.")
    _refuse_invisible(text)
    if not parsed.raw_host:
        raise BlockedURL(f"The URL {shown} has no host name.")
    _refuse_malformed_host(parsed.raw_host.decode("ascii"))
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise BlockedURL(f"The URL {shown} has the port {parsed.port}; a port is a number from 1 to 65535.")
    if len(str(parsed)) > LINK_MAX:  # percent-encoding and IDNA make a URL longer
        raise BlockedURL(f"The URL is longer than {LINK_MAX} characters once encoded.")
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
    parsed = parse_target(url)
    _resolve_allowed(_ascii_host(parsed), parsed.port or DEFAULT_PORTS[parsed.scheme], settings.allowed_networks)


def _ascii_host(url: httpx.URL) -> str:
    # The IDNA-encoded form is what httpcore resolves, so check exactly that name.
    return url.raw_host.decode("ascii")


# --- address pinning ------------------------------------------------------------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to checked addresses: resolve once, check all, connect to the IP literal."""

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
                stream = within_budget(connect, timeout, httpcore.ConnectTimeout)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the host's next address, as socket.create_connection would
                continue
            return BudgetedStream(stream)
        assert failure is not None  # getaddrinfo never returns an empty list without raising
        raise failure
