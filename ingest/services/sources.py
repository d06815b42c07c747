"""Registering sources and naming them: one feed URL, an OPML document, ``--source`` values; the
admin's check of a feed URL and its actions on sources ("fetch now", re-activate, reset backoff);
the sources as an OPML document. ``source_register`` (``add_source``), ``opml_import(discover=True)``
and ``source_feed_url`` (the API's create) fetch a URL first and register the feed a web page
advertises (``ingest.services.discovery``); ``source_add`` registers a URL as given.

A URL is refused at once when it can never be fetched (the fetch guard's rules); a host that does
not resolve right now is accepted, since the guard checks again at every fetch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.db.models import Q
from django.utils import timezone

from ingest import fetch as fetching
from ingest.errors import BlockedURL, NoFeedChosen, SourceError, UnknownSource
from ingest.links import default_name
from ingest.models import TechnicalArticle
from ingest.opml import OpmlOutline, parse_opml, write_opml
from ingest.types import FEED_URL_MAX, SOURCE_NAME_MAX, AuthSpec
from ingest.db import chunked, in_batch_size
from ingest.services.discovery import Discovery, discovery_client
from ingest.services.discovery import discover as discover_url

log = logging.getLogger("ingest.services")


def source_add(*, url: str, name: str = "", fetch_comments: bool = False,
               auth: AuthSpec | None = None) -> tuple[TechnicalArticle, bool]:
    """Register a feed. Idempotent: an already registered URL returns the existing row, "already
    registered" meaning the same feed URL key (``ingest.identity``: scheme and host case, default
    port, fragment and trailing slash do not matter; path and query do). ``auth`` (from
    ``credentials.auth_check``, so checked) is a new source's credentials; an existing row keeps its own.
    """
    url = url.strip()
    source_url_check(url)
    article, created = TechnicalArticle.objects.get_or_create(
        **TechnicalArticle.keys_for(feed_url=url),
        defaults={"feed_url": url, "name": (name or default_name(url))[:SOURCE_NAME_MAX], "fetch_comments": fetch_comments,
                  **(auth_columns(auth) if auth is not None else {})},
    )
    return article, created


def auth_columns(auth: AuthSpec) -> dict:
    """An ``AuthSpec``'s columns: the references as they are stored."""
    return {"auth_scheme": auth.scheme, "auth_username": auth.username, "auth_secret": auth.secret,
            "extra_headers": {name: {"secret": value} if ref else value for name, value, ref in auth.headers}}


# What a fetch learned from the old URL, forgotten when the URL changes: its validators would
# only confuse the new server, and its failures were the old URL's.
_FETCH_STATE_OF_A_URL = {"etag": "", "last_modified": "", "next_fetch_at": None, "consecutive_failures": 0,
                         "last_status": None, "last_error": "", "publish_cadence": None, "feed_hints": "",
                         "schedule_reason": ""}


def source_taken_by(*, url: str, exclude_id: int | None = None) -> int | None:
    """The id of the source registered under this feed URL's key (another than ``exclude_id``)."""
    query = TechnicalArticle.objects.filter(**TechnicalArticle.keys_for(feed_url=url.strip()))
    if exclude_id is not None:
        query = query.exclude(pk=exclude_id)
    return query.values_list("pk", flat=True).first()


def source_create(*, feed_url: str, **fields) -> TechnicalArticle:
    """Register a source with the given columns (the API's create). The caller has checked the
    URL (``source_url_check``) and that it is free (``source_taken_by``); a concurrent insert of
    the same key is the unique constraint's IntegrityError."""
    feed_url = feed_url.strip()
    if not fields.get("name"):
        fields["name"] = default_name(feed_url)[:SOURCE_NAME_MAX]
    article = TechnicalArticle(feed_url=feed_url, **fields)
    article.save(force_insert=True)
    return article


def source_update(*, source: TechnicalArticle, **fields) -> TechnicalArticle:
    """Change these columns of a source and only these (a run may be writing its fetch state at
    the same moment). A new feed URL starts from a clean fetch state, due at the next run."""
    if "feed_url" in fields:
        fields["feed_url"] = fields["feed_url"].strip()
        if TechnicalArticle.keys_for(feed_url=fields["feed_url"]) != {"feed_url_key": source.feed_url_key}:
            fields.update(_FETCH_STATE_OF_A_URL)
    for name, value in fields.items():
        setattr(source, name, value)
    if fields:
        source.save(update_fields=list(fields))
    return source


def sources_resolve(selectors: Iterable[str]) -> list[int]:
    """Turn ``--source`` values (an id or a feed URL) into ids; an unknown one raises UnknownSource."""
    ids: list[int] = []
    for raw in selectors:
        value = str(raw).strip()
        query = Q(pk=int(value)) if value.isdigit() else Q(**TechnicalArticle.keys_for(feed_url=value))
        pk = TechnicalArticle.objects.filter(query).values_list("pk", flat=True).first()
        if pk is None:
            raise UnknownSource(f"No source matches {value!r}; list them with the admin or `manage.py pipeline_status`.")
        if pk not in ids:
            ids.append(pk)
    return ids


def sources_schedule_now(*, ids: Sequence[int]) -> int:
    """Make these sources due at the next run and active again (the admin's "fetch now"), one
    UPDATE per batch of ids (SQL Server takes at most 2,100 parameters per statement)."""
    return sum(TechnicalArticle.objects.filter(pk__in=batch).update(next_fetch_at=None, active=True, schedule_reason="")
               for batch in chunked(list(ids), in_batch_size()))


def source_url_check(url: str) -> None:
    """The check ``source_add`` makes of a feed URL, for a form that registers or changes one (the
    admin): ``BlockedURL`` with the guard's sentence when the URL can never be fetched; a host that
    does not resolve right now passes, since the guard checks again at every fetch."""
    url = url.strip()
    if len(url) > FEED_URL_MAX:
        raise BlockedURL(f"The URL is longer than {FEED_URL_MAX} characters.")
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # not a URL at all: the guard below says why, in its words
        netloc = ""
    if "@" in netloc:
        # A password in the URL would be stored and logged with it; not quoted back, for the same reason.
        raise BlockedURL("The URL holds a user name or password: register the feed URL without it and name the "
                         "secret with the basic auth scheme (add_source --auth basic --username U --secret env:NAME).")
    try:
        fetching.check_url(url, fetching.FetchSettings.from_settings())
    except BlockedURL:
        raise
    except SourceError as exc:
        log.info("feed URL accepted while its host does not resolve", extra={"url": url, "error": str(exc)})


def sources_activate(*, ids: Sequence[int]) -> int:
    """Switch these sources back on, leaving their schedule as it is (the admin's "re-activate"):
    a source that is due is fetched by the next run, a backed-off one when its backoff ends.
    Returns how many were off."""
    return sum(TechnicalArticle.objects.filter(pk__in=batch, active=False).update(active=True)
               for batch in chunked(list(ids), in_batch_size()))


def sources_backoff_reset(*, ids: Sequence[int]) -> int:
    """Forget these sources' failures in a row and make them due at the next run (the admin's
    "reset backoff"): a failure after this one backs off from the first step again, not from where
    the old count had got to. ``last_error`` stays, as the record of what went wrong last, until
    the next fetch replaces or clears it; ``active`` stays too (an inactive source is not fetched).
    Returns how many sources were updated."""
    return sum(TechnicalArticle.objects.filter(pk__in=batch).update(
        consecutive_failures=0, next_fetch_at=None, schedule_reason="") for batch in chunked(list(ids), in_batch_size()))


@dataclass(frozen=True)
class OpmlImport:
    added: list[tuple[int, str]]
    existing: list[tuple[int, str]]
    rejected: list[tuple[str, str]]  # (url, reason)
    discovered: list[tuple[str, str]] = field(default_factory=list)  # (page URL, feed URL found on it)
    unchecked: list[tuple[str, str]] = field(default_factory=list)  # (url, why it could not be fetched)


def opml_import(*, content: bytes, discover: bool = False) -> OpmlImport:
    """Register every feed of an OPML document. Idempotent; a bad URL is rejected with its reason.

    With ``discover``, an outline whose URL is a web page registers the first feed the page
    advertises (``source_register``); a page that advertises none is rejected."""
    added, existing, rejected, discovered, unchecked = [], [], [], [], []
    with discovery_client() if discover else nullcontext() as client:
        for feed in parse_opml(content):
            try:
                if discover:
                    registration = source_register(url=feed.url, name=feed.title, pick=1, client=client)
                    article, created = registration.source, registration.created
                    found = registration.discovery
                    if found is not None and found.page_url:
                        discovered.append((found.page_url, found.feed_url))
                    if found is not None and found.warning:
                        unchecked.append((feed.url, found.warning))
                else:
                    article, created = source_add(url=feed.url, name=feed.title)
            except (SourceError, NoFeedChosen) as exc:  # NoFeedChosen: a page without a feed
                rejected.append((feed.url, str(exc)))
                continue
            (added if created else existing).append((article.pk, article.feed_url))
    return OpmlImport(added, existing, rejected, discovered, unchecked)


@dataclass(frozen=True)
class Registration:
    """A registered source, whether this call created it, and what discovery found (None: the URL
    was registered without fetching it, given ``discover=False`` or already registered)."""

    source: TechnicalArticle
    created: bool
    discovery: Discovery | None = None


def source_register(*, url: str, name: str = "", fetch_comments: bool = False, discover: bool = True,
                    pick: int | None = None, client=None, auth: AuthSpec | None = None) -> Registration:
    """Register the feed a URL means (``add_source``): with ``discover``, the URL is fetched first and,
    when it is a web page, the feed it advertises (the ``pick``-th of several) is registered instead
    (``ingest.services.discovery``). A URL already registered is not fetched. Raises ``BlockedURL``
    and ``NoFeedChosen`` (a ``UsageError``, with the page's candidates). A source with credentials
    (``auth``: a private feed's own address) is registered as given: discovery would fetch it
    without them."""
    url = url.strip()
    source_url_check(url)
    private = auth is not None and (auth.scheme != "none" or auth.headers)
    if not discover or private or source_taken_by(url=url) is not None:
        article, created = source_add(url=url, name=name, fetch_comments=fetch_comments, auth=auth)
        return Registration(article, created)
    found = discover_url(url, pick=pick, client=client)
    article, created = source_add(url=found.feed_url, name=name, fetch_comments=fetch_comments, auth=auth)
    return Registration(article, created, found)


def opml_export(*, include_inactive: bool = False) -> tuple[bytes, int]:
    """An OPML 2.0 document of the sources (the active ones, else all), in id order, and how many
    it lists."""
    query = TechnicalArticle.objects.order_by("pk")
    if not include_inactive:
        query = query.filter(active=True)
    outlines = [OpmlOutline(title=name, xml_url=feed_url, html_url=site_url)
                for name, feed_url, site_url in query.values_list("name", "feed_url", "site_url").iterator(chunk_size=2000)]
    return write_opml(outlines, title="Feed pipeline sources", created=timezone.now()), len(outlines)


def source_feed_url(url: str) -> str:
    """The feed URL a URL given to the API's create means: the URL itself when it is a feed, cannot
    be fetched right now, can never be fetched or is already registered (the serializer then says
    why), else the one feed the page at it advertises. Raises ``NoFeedChosen`` for a page with none
    or several, ``BlockedURL`` when the guard refuses the fetch (a redirect into a private network)."""
    url = url.strip()
    try:
        source_url_check(url)
    except BlockedURL:
        return url
    if source_taken_by(url=url) is not None:
        return url
    return discover_url(url).feed_url
