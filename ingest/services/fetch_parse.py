"""Fetch and parse one source or one comment feed: I/O and CPU only, no database.

These run in the fetch threads of an ingest run (or in a Celery task), so they must not touch the
ORM; what they return (``Fetched``, ``CommentsFetched``) waits for the single writer. Every
exception is turned into the item's failure here: the first half of the containment boundary.

A source's first fetch (it never succeeded: ``last_success_at`` is null) may also read its RFC 5005
history: up to ``INGEST_BACKFILL_PAGES`` pages, following ``rel="next"`` (a paged feed) or else
``rel="prev-archive"`` (an archived feed), each through the same fetch (guard, cap) and parse, all
within the source's one deadline. Their entries join the first page's (the first page wins a guid);
everything else (validators, schedule) is the first page's. A page seen before ends the walk; a page
that fails ends it with a warning on the feed, the entries read so far kept.

A 200 is digested before it is parsed (``ingest.parse.digest``, salted with what changes its parse):
when the digest equals the one the last successful store wrote, the body is not parsed and the
item is not modified, "same body" (stored like a 304: the new validators kept, the schedule as
unchanged). A ``force``d run (``ingest_feeds --all``) parses anyway, to apply changed rules; so does
a source's first fetch. An entry deleted by hand (no tombstone) therefore comes back only with a
changed body or a forced run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from dataclasses import replace

from django.conf import settings
from django.utils import timezone

from ingest import fetch as fetching
from ingest.errors import SourceError, first_line
from ingest.identity import first_by_guid
from ingest.models import TechnicalArticle
from ingest.parse import parse_comments, parse_feed
from ingest.parse.digest import body_digest
from ingest.parsepool import ParsePool
from ingest.services.boundary import internal
from ingest.services.credentials import job_credentials, source_auth, source_credentials
from ingest.types import CommentJob, CommentsFetched, Credentials, Fetched, FetchRequest, FetchResult, ParsedFeed

# Starting a parse process costs about as much as parsing this many typical feeds.
FEEDS_PER_PARSE_PROCESS = 8
# A body below this is parsed in its fetch thread, a larger one in the run's parse processes. On the
# 200 real feeds parsing costs about 0.14 CPU-s per MB, and some 25 MB of memory per MB while it
# runs: the 157 bodies below 256 KiB take 12 ms each (2 s in all, less than the round trip's
# pickling of a large body would save), the 43 above carry 34 of the 45 MB and 4.3 of the 6.3 s,
# and the memory that parsing them in the fetch threads at once would add up.
POOL_MIN_BYTES = 256 * 1024

log = logging.getLogger("ingest.services")


def source_fetch_parse(
    source: TechnicalArticle, *, client, fetch_settings: fetching.FetchSettings, parse_pool: ParsePool | None = None,
    force: bool = False,
) -> Fetched:
    """Fetch and parse one source. I/O + CPU only: touches no database, safe in a thread.

    With ``parse_pool`` (a process pool) the CPU-bound parse of a large body runs there, so parsing
    uses every core and does not hold the GIL that the writing thread needs; a small one runs here
    (``POOL_MIN_BYTES``), so a run of small feeds never starts a parse process. A 200 with the
    body stored last time is not parsed (``same_body``) unless ``force``.
    """
    fetched_at = timezone.now()
    started = time.monotonic()
    try:
        # Secrets are looked up now, and live only in this request (never in a row or a log line).
        credentials = source_credentials(source)
        result = fetching.fetch_feed(
            FetchRequest(url=source.feed_url, etag=source.etag, last_modified=source.last_modified,
                         credentials=credentials),
            client=client,
            settings=fetch_settings,
        )
        if result.not_modified:
            return Fetched(source.pk, fetched_at, result=result)
        digest = body_digest(result.content, url=result.url, headers=result.headers, kind="feed",
                             source_url=source.feed_url, auth=source_auth(source), options=digest_options())
        if not force and source.last_success_at is not None and source.body_digest == digest:
            return Fetched(source.pk, fetched_at, result=replace(result, content=b""), digest=digest, same_body=True)
        # Without a pool (a Celery task, a small run) the parse runs here, behind parse's HTML
        # limits; in the pool it also has INGEST_PARSE_TIMEOUT, past which ParseError fails the source.
        pool = parse_pool or ParsePool(0, timeout=settings.INGEST_PARSE_TIMEOUT)
        feed = _parse(pool, result)
        _note_repaired(feed, source.pk, result.url)
        pages = settings.INGEST_BACKFILL_PAGES
        if pages and source.last_success_at is None:
            feed = _backfill(feed, (source.feed_url, result.url), pages=pages, client=client,
                             fetch_settings=fetch_settings, pool=pool, deadline=started + fetch_settings.deadline,
                             source_id=source.pk, credentials=credentials)
        # The body is parsed: do not keep it in memory while the writer catches up.
        return Fetched(source.pk, fetched_at, result=replace(result, content=b""), feed=feed, digest=digest)
    except SourceError as exc:
        return Fetched(source.pk, fetched_at, error=exc)
    except Exception as exc:  # the containment boundary: anything else fails this source alone
        return Fetched(source.pk, fetched_at, error=internal(exc, what="a source", source_id=source.pk))


def _backfill(
    feed: ParsedFeed, seen: tuple[str, ...], *, pages: int, client, fetch_settings: fetching.FetchSettings,
    pool: ParsePool, deadline: float, source_id: int, credentials: Credentials,
) -> ParsedFeed:
    """``feed`` with the entries of up to ``pages`` history pages after it (RFC 5005), the first
    page's entry winning a guid; a failed page or a spent deadline ends the walk with a warning."""
    visited = set(seen)
    entries = list(feed.entries)
    warning = ""
    url = _history_link(feed)
    for number in range(1, pages + 1):
        if not url or url in visited:
            break  # the end of the history, or a page that leads back to one already read
        visited.add(url)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            warning = f"the history stopped before page {number}: the deadline of {fetch_settings.deadline:g} s was spent"
            break
        try:
            # The source's credentials go with each page, to the feed's own origin only (as on redirects).
            page_result = fetching.fetch_feed(FetchRequest(url=url, credentials=credentials), client=client,
                                              settings=replace(fetch_settings, deadline=remaining))
            page = _parse(pool, page_result)
        except SourceError as exc:
            warning = f"the history stopped at page {number} ({url[:200]}): {first_line(exc, 300)}"
            break
        visited.add(page_result.url)
        entries.extend(page.entries)
        url = _history_link(page)
    if warning:
        log.warning("history backfill stopped", extra={"source_id": source_id, "error": warning})
    return replace(
        feed,
        entries=tuple(entry for _, entry in first_by_guid(entries)),
        warning="; ".join(text for text in (feed.warning, warning) if text),
    )


def _parse(pool: ParsePool, result: FetchResult) -> ParsedFeed:
    """``result``'s body parsed where it pays: in this thread below ``POOL_MIN_BYTES``, else in
    ``pool`` (a worker, started at the first such body; or one at a time here without workers)."""
    parse = pool.parse_here if len(result.content) < POOL_MIN_BYTES else pool.parse
    return parse(parse_feed, result.content, headers=result.headers, url=result.url, parser=settings.INGEST_PARSER)


def _note_repaired(feed: ParsedFeed, source_id: int, url: str) -> None:
    """A feed read only once repaired (ingest.parse.recover) is stored as usual, and said so here:
    its publisher's document is broken, and a reader may have missed something."""
    if feed.repaired:
        log.warning("feed repaired: not well-formed XML", extra={"source_id": source_id, "url": url,
                                                                   "warning": feed.warning})


def _history_link(feed: ParsedFeed) -> str:
    """The next page of the history: a paged feed's ``next``, else an archived feed's ``prev-archive``."""
    return feed.next_url or feed.prev_archive_url


def source_parse_pushed(source: TechnicalArticle, *, content: bytes, headers: dict[str, str]) -> Fetched:
    """A body a WebSub hub pushed for ``source``, parsed as a fetch's 200 with that content would be.

    The source's validators are kept (a push is not a conditional GET's answer), and any failure is
    this source's, exactly as in ``source_fetch_parse``. No database.
    """
    fetched_at = timezone.now()
    result = FetchResult(url=source.feed_url, status=200, content=content, headers=headers,
                         etag=source.etag, last_modified=source.last_modified)
    try:
        pool = ParsePool(0, timeout=settings.INGEST_PARSE_TIMEOUT)
        feed = pool.parse(parse_feed, content, headers=headers, url=source.feed_url, parser=settings.INGEST_PARSER)
        _note_repaired(feed, source.pk, source.feed_url)
        return Fetched(source.pk, fetched_at, result=replace(result, content=b""), feed=feed, pushed=True)
    except SourceError as exc:
        return Fetched(source.pk, fetched_at, error=exc)
    except Exception as exc:  # the containment boundary, as for a fetch
        return Fetched(source.pk, fetched_at, error=internal(exc, what="a pushed body", source_id=source.pk))


def comments_fetch_parse(job: CommentJob, *, client, fetch_settings: fetching.FetchSettings,
                         force: bool = False) -> CommentsFetched:
    """Fetch and parse one entry's comment feed. No database: safe in a thread. A 200 with the body
    stored last time is not parsed (``same_body``) unless ``force``."""
    fetched_at = timezone.now()
    try:
        result = fetching.fetch_feed(FetchRequest(url=job.url, etag=job.etag, last_modified=job.last_modified,
                                                  credentials=job_credentials(job)),
                                     client=client, settings=fetch_settings)
        if result.not_modified:
            return CommentsFetched(job, fetched_at, result=result)
        digest = body_digest(result.content, url=result.url, headers=result.headers, kind="comments",
                             source_url=job.source_url, auth=job.auth, options=digest_options())
        if not force and job.body_digest == digest:
            return CommentsFetched(job, fetched_at, result=replace(result, content=b""), digest=digest, same_body=True)
        comments = parse_comments(result.content, headers=result.headers, url=result.url,
                                  parser=settings.INGEST_PARSER)
        return CommentsFetched(job, fetched_at, result=replace(result, content=b""), comments=comments, digest=digest)
    except SourceError as exc:
        return CommentsFetched(job, fetched_at, error=exc)
    except Exception as exc:  # the containment boundary, as for sources
        return CommentsFetched(job, fetched_at, error=internal(exc, what="a comment feed", entry_id=job.entry_id))


def digest_options() -> dict[str, object]:
    """The settings that change what a parsed body becomes once stored: part of every body digest."""
    return {"INGEST_CROSS_FEED_DEDUP": bool(settings.INGEST_CROSS_FEED_DEDUP)}


def parse_processes(sources: int) -> int:
    """How many parse processes a run of ``sources`` feeds may use (0: parse in the fetch threads).

    INGEST_PARSE_PROCESSES, or unset one per CPU beyond the two the run's own process keeps busy
    (the writer, and the fetch threads with their small parses). Measured on two shared cores, the
    200 real feeds (``python -m bench.ingest``), seven interleaved pairs: one process was faster in
    two, even in one, slower in four (median 22.7 s against 21.0 s in the fetch threads), and the
    run's peak was 204-212 MB against 148-165 MB; two processes were no faster, at 238-258 MB. A
    process is 35 MB idle and up to 88 MB while it parses a 2 MB feed, and where cores are scarce
    it competes with the writer for one. Each process must have ``FEEDS_PER_PARSE_PROCESS``
    feeds to pay for itself. Never inside a daemonic process (a Celery prefork child may not have
    children). These are at most: a process starts only when a body of ``POOL_MIN_BYTES`` or more
    finds every started one busy, so a run of small feeds starts none.
    """
    if multiprocessing.current_process().daemon:
        return 0
    wanted = settings.INGEST_PARSE_PROCESSES
    if wanted is None:
        wanted = _usable_cpus() - 2
    return max(0, min(wanted, sources // FEEDS_PER_PARSE_PROCESS))


def _usable_cpus() -> int:
    """The CPUs this process may run on (``taskset``, a container's cpuset), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_pool(processes: int) -> ParsePool:
    """0: parse in the fetch threads (overruns logged); else spawned workers, each parse under the budget."""
    return ParsePool(processes, timeout=settings.INGEST_PARSE_TIMEOUT)
