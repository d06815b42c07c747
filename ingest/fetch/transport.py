"""The HTTP transport: the shared client and one conditional GET per feed, redirects followed.

Owns the client every fetch of a run shares (``make_client``: connection limits, keep-alive, no
cookies, no proxy, the guarded network backend), the identifying and conditional headers, the
connect/read timeouts and the overall per-feed deadline (set here, enforced by
``ingest.fetch.deadline``), redirects (followed one hop at a time, each target checked by
``ingest.fetch.guard``, loops refused, a chain of only permanent ones reported as the feed's new
URL; the source's secret headers sent to its own origin only, ``ingest.fetch.credentials``), and
one retry of a GET that failed on a kept-alive connection the server had closed.

httpx 0.28 has no public parameter for the network backend, hence the replaced ``_pool`` of
``GuardedTransport`` (httpx is pinned in requirements.txt; tests/test_fetch.py fails if the guard
stops applying). Must not touch the ORM or any model, and must not parse feeds.
"""

from __future__ import annotations

import time
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from ingest.errors import FetchError, HTTPStatusError
from ingest.fetch.body import ACCEPT_ENCODING
from ingest.fetch.conditional import request_validators
from ingest.fetch.config import FetchSettings
from ingest.fetch.credentials import same_origin
from ingest.fetch.deadline import BUDGET, Budget
from ingest.fetch.failures import transport_errors
from ingest.fetch.guard import GuardedBackend, parse_target
from ingest.fetch.response import complete
from ingest.types import FetchRequest, FetchResult

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)

# Each fetch holds at most one connection at a time (a redirect's response is closed before the
# next hop), so a client needs one connection per worker thread sharing it.
DEFAULT_CONNECTIONS = 16

_PERMANENT_REDIRECTS = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose network backend is ``guard.GuardedBackend``."""

    def __init__(self, settings: FetchSettings, limits: httpx.Limits) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(settings.allowed_networks),
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
        transport=GuardedTransport(
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


def fetch_feed(request: FetchRequest, *, client: httpx.Client, settings: FetchSettings) -> FetchResult:
    """GET ``request.url`` conditionally, following redirects, within ``settings.deadline``.

    Returns a 2xx or 304 ``FetchResult``; raises ``BlockedURL``, ``FetchError``, ``BodyTooLarge``,
    ``HTTPStatusError`` or ``SourceGone`` with a one-sentence reason naming the host.
    """
    budget = Budget(deadline=time.monotonic() + settings.deadline)
    token = BUDGET.set(budget)
    try:
        return _follow_redirects(request, client, settings, budget)
    finally:
        BUDGET.reset(token)


def _follow_redirects(
    request: FetchRequest, client: httpx.Client, settings: FetchSettings, budget: Budget
) -> FetchResult:
    url = parse_target(request.url)
    # Stored state is checked again before it is sent: a row written by an older version, or by
    # hand, must cost at most its conditional request, never the run.
    validators = request_validators(request)
    conditional = bool(validators)
    credentials = request.credentials

    visited = {str(url)}
    only_permanent = True
    for redirects in range(settings.max_redirects + 1):
        # The source's secret headers go to its own origin only: a redirect elsewhere drops them.
        extra = credentials.headers(secret=same_origin(url, credentials.origin)) if credentials else {}
        headers = {"Accept": ACCEPT, **extra, "Accept-Encoding": ACCEPT_ENCODING, **validators}
        response = _send(client, url, headers, settings, budget)
        try:
            if response.status_code not in _REDIRECTS:
                permanent_url = str(url) if redirects and only_permanent else None
                return complete(response, url, request, settings, budget, permanent_url, conditional)
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
    client: httpx.Client, url: httpx.URL, headers: dict[str, str], settings: FetchSettings, budget: Budget
) -> httpx.Response:
    remaining = budget.deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(f"The deadline of {settings.deadline:g} s was exceeded before reaching {url.host}.")
    # The address check for this hop happens at connect time, in guard.GuardedBackend.
    http_request = client.build_request("GET", url, headers=headers, timeout=_timeouts(settings, pool=remaining))
    with transport_errors(url.host, settings, budget):
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
    return parse_target(target)
