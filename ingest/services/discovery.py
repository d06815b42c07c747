"""Feed autodiscovery at registration: is the URL a user gave a feed, or a web page that names one?

One GET through the fetch stage (the same SSRF guard, size cap, deadline and redirects as every
feed fetch), then ``ingest.parse.discover``: a body that is a feed (or not a web page) is
registered as given; an HTML page is read for the feeds it advertises, and one of them is chosen
(``pick``, 1-based, when there are several). A URL whose fetch fails (the server down, a timeout,
an error status) is registered as given, with the reason as a warning: that is a feed temporarily
unreachable more often than a page. A fetch the guard refuses (a redirect into a private network)
is the guard's ``BlockedURL``. No database: callers register what this returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from ingest import fetch as fetching
from ingest.errors import BlockedURL, NoFeedChosen, SourceError
from ingest.parse.discover import FeedLink, body_kind, content_charset, discover_feeds
from ingest.types import FetchRequest


@dataclass(frozen=True)
class Discovery:
    """What fetching a URL said about it. ``feed_url`` is what to register; ``page_url`` is set when
    it was found on a page (the page's final URL), with all the page's ``candidates``; ``warning``
    says why the URL is registered unchecked ("" when it was checked)."""

    given: str
    feed_url: str
    page_url: str = ""
    candidates: tuple[FeedLink, ...] = ()
    warning: str = ""


@contextmanager
def discovery_client() -> Iterator[httpx.Client]:
    """A fetch client for a few registrations in a row (an OPML import), closed afterwards."""
    client = fetching.make_client(fetching.FetchSettings.from_settings(), connections=1)
    try:
        yield client
    finally:
        client.close()


def discover(url: str, *, pick: int | None = None, client: httpx.Client | None = None) -> Discovery:
    """Fetch ``url`` and say which feed it means; see the module docstring.

    Raises ``BlockedURL`` when the guard refuses the fetch, ``NoFeedChosen`` when ``url`` is a page
    that advertises no feed, or several with no (or no valid) ``pick``."""
    if client is None:
        with discovery_client() as own:
            return discover(url, pick=pick, client=own)
    settings = fetching.FetchSettings.from_settings()
    try:
        result = fetching.fetch_feed(FetchRequest(url=url), client=client, settings=settings)
    except BlockedURL:
        raise
    except SourceError as exc:
        return Discovery(given=url, feed_url=url, warning=str(exc))
    content_type = result.headers.get("content-type", "")
    kind = body_kind(result.content, content_type)
    if kind == "feed":
        return Discovery(given=url, feed_url=url)
    if kind == "other":
        return Discovery(given=url, feed_url=url, warning="The response is neither a feed nor a web page.")
    page = result.url
    candidates = discover_feeds(result.content, page, charset=content_charset(content_type))
    if not candidates:
        raise NoFeedChosen(f"The page {page} advertises no feed (no <link rel=\"alternate\"> of a feed type in "
                           f"its head); give the feed's own URL.", page_url=page)
    if pick is None and len(candidates) == 1:
        pick = 1
    if pick is None:
        raise NoFeedChosen(f"The page {page} advertises {len(candidates)} feeds; choose one.",
                           page_url=page, candidates=candidates)
    if not 1 <= pick <= len(candidates):
        raise NoFeedChosen(f"The page {page} advertises {len(candidates)} feed{'s' if len(candidates) > 1 else ''}, "
                           f"so there is no number {pick} to choose.", page_url=page, candidates=candidates)
    return Discovery(given=url, feed_url=candidates[pick - 1].url, page_url=page, candidates=candidates)
