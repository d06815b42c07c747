"""Orchestration: the functions that commands, Celery tasks and timer functions call.

Services take keyword-only, typed arguments, named ``<thing>_<verb>``. They own the run ledger
(``IngestRun``), the source lease and the per-source transaction; the stages they chain
(fetch, parse, upsert) do the actual work. A failing source becomes a ``SourceResult`` with a
reason; only a problem with the run itself (the database, the arguments) raises.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import Error, IntegrityError, close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from ingest import fetch as fetching
from ingest.comments import comments_upsert
from ingest.db import chunked, commit_asynchronously, in_batch_size
from ingest.errors import BlockedURL, InternalError, LeaseLost, RunError, SourceError, StoreError, first_line
from ingest.models import CommentFeed, Entry, IngestRun, TechnicalArticle
from ingest.parse import parse_comments, parse_feed
from ingest.parsepool import ParsePool
from ingest.pingbacks import pingbacks_record
from ingest.retry import RetryStats, constraint_named, is_transient, run_atomic
from ingest.types import FetchRequest, FetchResult, ParsedComment, ParsedFeed, SourceResult
from ingest.upsert import entries_decide, existing_load, feed_upsert

log = logging.getLogger("ingest.services")

FEEDS_PER_PARSE_PROCESS = 8


# --- Run ledger ---------------------------------------------------------------------------------


def run_start(*, command: str, trigger: str, lease_owner: str = "") -> IngestRun:
    try:
        return IngestRun.objects.create(
            command=command, trigger=trigger, hostname=socket.gethostname()[:255], pid=os.getpid(),
            lease_owner=lease_owner,
        )
    except Error as exc:
        raise RunError(f"The database is unreachable, so the run cannot start: {_first_line(exc)}") from exc


def run_finish(run: IngestRun, *, status: str, error: str = "", **counters) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    for name, value in counters.items():
        setattr(run, name, value)
    run.save()


def _first_line(exc: BaseException) -> str:
    return first_line(exc, 500)


_UNSTORABLE = dict.fromkeys(range(0x20), " ") | {0x7F: " "}


def _storable(text: str, limit: int = 2000) -> str:
    """An error text safe for a text column: no NUL or control characters (PostgreSQL refuses NUL;
    a reason may quote the publisher's bytes), cut to ``limit``."""
    return text.translate(_UNSTORABLE)[:limit]


def _internal(exc: Exception, *, what: str, **ids) -> InternalError:
    """The containment boundary's verdict on an unexpected exception: this item's failure, loudly.

    Reader re-raises such errors to keep bugs visible; a worker that runs unattended must not let
    one publisher stop every run, so the traceback goes to the log at ERROR and the failure is
    counted apart (``internal_errors``) in the report, the run ledger and ``pipeline_status``.
    """
    log.error(f"internal error while handling {what}", exc_info=exc, extra={**ids, "error": _first_line(exc)})
    return InternalError.wrap(exc)


# --- Sources ------------------------------------------------------------------------------------


def _default_name(url: str) -> str:
    return (urlsplit(url).hostname or url)[:100]


def source_add(*, url: str, name: str = "", fetch_comments: bool = False) -> tuple[TechnicalArticle, bool]:
    """Register a feed. Idempotent: an already registered URL returns the existing row, "already
    registered" meaning the same feed URL key (``ingest.identity``: scheme and host case, default
    port, fragment and trailing slash do not matter; path and query do).

    Refuses at once what can never be fetched (not http(s), a private address, too long); a host
    that does not resolve right now is accepted, since the guard checks again at every fetch.
    """
    url = url.strip()
    limit = TechnicalArticle._meta.get_field("feed_url").max_length
    if len(url) > limit:
        raise BlockedURL(f"The URL is longer than {limit} characters.")
    try:
        fetching.check_url(url, fetching.FetchSettings.from_settings())
    except BlockedURL:
        raise
    except SourceError as exc:
        log.info("source registered while its host does not resolve", extra={"url": url, "error": str(exc)})
    article, created = TechnicalArticle.objects.get_or_create(
        **TechnicalArticle.keys_for(feed_url=url),
        defaults={"feed_url": url, "name": (name or _default_name(url))[:100], "fetch_comments": fetch_comments},
    )
    return article, created


def sources_resolve(selectors: Iterable[str]) -> list[int]:
    """Turn ``--source`` values (an id or a feed URL) into ids; an unknown one raises RunError."""
    ids: list[int] = []
    for raw in selectors:
        value = str(raw).strip()
        query = Q(pk=int(value)) if value.isdigit() else Q(**TechnicalArticle.keys_for(feed_url=value))
        pk = TechnicalArticle.objects.filter(query).values_list("pk", flat=True).first()
        if pk is None:
            raise RunError(f"No source matches {value!r}; list them with the admin or `manage.py pipeline_status`.")
        if pk not in ids:
            ids.append(pk)
    return ids


def sources_due(*, now: datetime, ids: Sequence[int] = (), force: bool = False) -> list[int]:
    query = TechnicalArticle.objects.all()
    if ids:
        query = query.filter(pk__in=ids)
    else:
        query = query.filter(active=True)
    if not force:
        query = query.filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now))
    return list(query.order_by("next_fetch_at", "pk").values_list("pk", flat=True))


def sources_claim(*, ids: Sequence[int], owner: str, now: datetime, ttl: int | None = None) -> list[TechnicalArticle]:
    """Lease the given sources for ``owner``; returns the ones this call won.

    One UPDATE per batch whose WHERE re-checks that the lease is free: every backend evaluates it
    atomically per row (row locks on PostgreSQL, MariaDB and SQL Server; the database lock on SQLite),
    so two runs that race for a source never both get it.
    """
    expires = now + timedelta(seconds=ttl or settings.INGEST_LEASE_SECONDS)
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)

    def claim() -> None:
        for batch in chunked(list(ids), in_batch_size()):
            TechnicalArticle.objects.filter(free, pk__in=batch).update(lease_owner=owner, lease_expires_at=expires)

    run_atomic(claim, label="sources_claim")
    return list(TechnicalArticle.objects.filter(lease_owner=owner, pk__in=ids).order_by("pk")) if ids else []


def sources_release(*, owner: str) -> int:
    return run_atomic(
        lambda: TechnicalArticle.objects.filter(lease_owner=owner).update(lease_owner="", lease_expires_at=None),
        label="sources_release",
    )


# --- Fetch + parse (no database: runs in worker threads) ----------------------------------------


@dataclass(frozen=True)
class Fetched:
    source_id: int
    fetched_at: datetime
    result: FetchResult | None = None
    feed: ParsedFeed | None = None
    error: SourceError | None = None


def source_fetch_parse(
    source: TechnicalArticle, *, client, fetch_settings: fetching.FetchSettings, parse_pool: ParsePool | None = None
) -> Fetched:
    """Fetch and parse one source. I/O + CPU only: touches no database, safe in a thread.

    With ``parse_pool`` (a process pool) the CPU-bound parse runs there, so parsing uses every core
    and does not hold the GIL that the writing thread needs.
    """
    fetched_at = timezone.now()
    try:
        result = fetching.fetch_feed(
            FetchRequest(url=source.feed_url, etag=source.etag, last_modified=source.last_modified),
            client=client,
            settings=fetch_settings,
        )
        if result.not_modified:
            return Fetched(source.pk, fetched_at, result=result)
        # Without a pool (a Celery task, a small run) the parse runs here, behind parse.py's HTML
        # limits; in the pool it also has INGEST_PARSE_TIMEOUT, past which ParseError fails the source.
        pool = parse_pool or ParsePool(0, timeout=settings.INGEST_PARSE_TIMEOUT)
        feed = pool.parse(parse_feed, result.content, headers=result.headers, url=result.url)
        # The body is parsed: do not keep it in memory while the writer catches up.
        return Fetched(source.pk, fetched_at, result=replace(result, content=b""), feed=feed)
    except SourceError as exc:
        return Fetched(source.pk, fetched_at, error=exc)
    except Exception as exc:  # the containment boundary: anything else fails this source alone
        return Fetched(source.pk, fetched_at, error=_internal(exc, what="a source", source_id=source.pk))


def parse_processes(sources: int) -> int:
    """How many parse processes a run of ``sources`` feeds should use (0: parse in the fetch threads).

    Starting a process costs about as much as parsing a few typical feeds, so each process must
    have ``FEEDS_PER_PARSE_PROCESS`` feeds to pay for itself. Never inside a daemonic process (a
    Celery prefork child may not have children).
    """
    if multiprocessing.current_process().daemon:
        return 0
    wanted = settings.INGEST_PARSE_PROCESSES
    if wanted is None:
        wanted = os.cpu_count() or 1
    wanted = min(wanted, sources // FEEDS_PER_PARSE_PROCESS)
    return wanted if wanted > 1 else 0


def _parse_pool(processes: int) -> ParsePool:
    # 0: parse in the fetch threads (overruns logged); else spawned workers, each parse under the budget.
    return ParsePool(processes, timeout=settings.INGEST_PARSE_TIMEOUT)


@dataclass(frozen=True)
class CommentJob:
    entry_id: int
    url: str
    etag: str
    last_modified: str
    failures: int
    interval: int  # seconds until the next fetch on success (the source's interval)


@dataclass(frozen=True)
class CommentsFetched:
    job: CommentJob
    fetched_at: datetime
    result: FetchResult | None = None
    comments: tuple[ParsedComment, ...] = ()
    error: SourceError | None = None


def comments_fetch_parse(job: CommentJob, *, client, fetch_settings: fetching.FetchSettings) -> CommentsFetched:
    """Fetch and parse one entry's comment feed. No database: safe in a thread."""
    fetched_at = timezone.now()
    try:
        result = fetching.fetch_feed(FetchRequest(url=job.url, etag=job.etag, last_modified=job.last_modified),
                                     client=client, settings=fetch_settings)
        if result.not_modified:
            return CommentsFetched(job, fetched_at, result=result)
        return CommentsFetched(job, fetched_at, result=result, comments=parse_comments(result.content, headers=result.headers, url=result.url))
    except SourceError as exc:
        return CommentsFetched(job, fetched_at, error=exc)
    except Exception as exc:  # the containment boundary, as for sources
        return CommentsFetched(job, fetched_at, error=_internal(exc, what="a comment feed", entry_id=job.entry_id))


def comment_feeds_due(*, source: TechnicalArticle, now: datetime, force: bool = False) -> list[CommentJob]:
    """Comment feeds of the source's recent entries (INGEST_COMMENTS_DAYS) that are due (all with ``force``)."""
    recent = now - timedelta(days=settings.INGEST_COMMENTS_DAYS)
    interval = source.fetch_interval or settings.INGEST_DEFAULT_INTERVAL
    rows = Entry.objects.filter(technical_article_id=source.pk, published_at__gte=recent).exclude(comments_feed_url="")
    if not force:
        rows = rows.filter(Q(comment_feed__isnull=True) | Q(comment_feed__next_fetch_at__isnull=True) | Q(comment_feed__next_fetch_at__lte=now))
    rows = (
        rows.order_by("pk")
        .values_list("pk", "comments_feed_url", "comment_feed__etag", "comment_feed__last_modified", "comment_feed__consecutive_failures")
    )
    return [CommentJob(pk, url, etag or "", modified or "", failures or 0, interval) for pk, url, etag, modified, failures in rows]


def comment_feeds_unclaimed(*, now: datetime) -> list[CommentJob]:
    """Due comment feeds of active comment-fetching sources that this run did not claim.

    A source's comment feeds are normally polled right after its entries are stored. A run that
    died in between (killed, crashed) stored the source, so the source is not due again for a
    whole interval; its comment feeds are taken by the next run from here instead. Leased sources
    (this run's own claims included) are left to the run that holds them.
    """
    recent = now - timedelta(days=settings.INGEST_COMMENTS_DAYS)
    rows = (
        Entry.objects.filter(technical_article__active=True, technical_article__fetch_comments=True, published_at__gte=recent)
        .exclude(comments_feed_url="")
        .filter(Q(technical_article__lease_expires_at__isnull=True) | Q(technical_article__lease_expires_at__lt=now))
        .filter(Q(comment_feed__isnull=True) | Q(comment_feed__next_fetch_at__isnull=True) | Q(comment_feed__next_fetch_at__lte=now))
        .order_by("pk")
        .values_list("pk", "comments_feed_url", "comment_feed__etag", "comment_feed__last_modified",
                     "comment_feed__consecutive_failures", "technical_article__fetch_interval")
    )
    return [CommentJob(pk, url, etag or "", modified or "", failures or 0, interval or settings.INGEST_DEFAULT_INTERVAL)
            for pk, url, etag, modified, failures, interval in rows]


def comments_store(*, fetched: CommentsFetched, stats: RetryStats | None = None) -> tuple[str, int, int]:
    """Write one comment feed's comments and its fetch state; returns (outcome, created, updated)."""
    now = timezone.now()
    job = fetched.job
    if fetched.error is not None:
        return _comment_failure(job, fetched.error, now=now, stats=stats)
    result = fetched.result
    state = {"etag": (result.etag or "")[:255], "last_modified": (result.last_modified or "")[:64],
             "last_fetched_at": now, "consecutive_failures": 0, "last_error": "",
             "next_fetch_at": now + timedelta(seconds=job.interval)}

    def write():
        counts = (0, 0)
        commit_asynchronously()
        if not result.not_modified:
            counts = comments_upsert(entry_id=job.entry_id, comments=fetched.comments, fetched_at=fetched.fetched_at)
        CommentFeed.objects.update_or_create(entry_id=job.entry_id, defaults=state)
        return counts

    try:
        created, updated = run_atomic(write, stats=stats, label=f"comments {job.entry_id}")
    except Exception as exc:  # noqa: BLE001 - the containment boundary (a failing database re-raises)
        return _comment_failure(job, _write_failure(exc, what="a comment feed", entry_id=job.entry_id), now=now, stats=stats)
    return ("not_modified" if result.not_modified else "fetched"), created, updated


def _comment_failure(job: CommentJob, error: SourceError, *, now: datetime, stats: RetryStats | None) -> tuple[str, int, int]:
    failures = job.failures + 1
    state = {"last_fetched_at": now, "consecutive_failures": failures, "last_error": _storable(str(error)),
             "next_fetch_at": now + timedelta(seconds=backoff_seconds(failures, error.retry_after))}
    run_atomic(lambda: CommentFeed.objects.update_or_create(entry_id=job.entry_id, defaults=state), stats=stats,
               label=f"comments {job.entry_id}")
    return "failed", 0, 0


def _write_failure(exc: Exception, *, what: str, **ids) -> SourceError:
    """What a write that raised means for the one item it was writing.

    A database that is failing (a transient error whose retries are spent) is not this item's
    fault: it re-raises and the run stops. A unique key that collided again after the retry, or a
    value the database refuses, is about this item's data: a ``StoreError``. Anything else is an
    internal error of this item.
    """
    if isinstance(exc, IntegrityError):
        name = constraint_named(exc)
        return StoreError(
            f"The database refused this feed's entries: two of its keys collide in a unique constraint"
            f"{f' ({name})' if name else ''}, which a database with a case- or accent-insensitive collation "
            f"reports for keys that differ only in case or accents: {_first_line(exc)[:300]}"
        )
    if isinstance(exc, Error):
        if is_transient(exc, connection.vendor):
            raise exc  # the database itself is failing (its retries are spent): the run cannot go on
        # MariaDB: a value over max_allowed_packet; a value invalid for its column.
        return StoreError(f"The database refused this feed's entries: {_first_line(exc)}")
    return _internal(exc, what=what, **ids)


# --- Per-source writes --------------------------------------------------------------------------


def _success_fields(source: TechnicalArticle, fetched: Fetched, now: datetime) -> dict:
    result = fetched.result
    assert result is not None
    interval = source.fetch_interval or settings.INGEST_DEFAULT_INTERVAL
    values = {
        "etag": (result.etag or "")[:255],
        "last_modified": (result.last_modified or "")[:64],
        "last_fetched_at": now,
        "last_success_at": now,
        "last_status": result.status,
        "next_fetch_at": now + timedelta(seconds=interval),
        "consecutive_failures": 0,
        "last_error": "",
        "lease_owner": "",
        "lease_expires_at": None,
    }
    feed = fetched.feed
    if feed is not None:
        if feed.title and source.name == _default_name(source.feed_url):
            values["name"] = feed.title[:100]
        if feed.tagline and not source.tagline:
            values["tagline"] = feed.tagline
        if feed.site_url and not source.site_url and len(feed.site_url) <= 2000:
            values["site_url"] = feed.site_url
        if feed.warning:
            values["last_error"] = f"warning: {feed.warning}"[:2000]
    new_url = result.permanent_url
    if new_url and new_url != source.feed_url and len(new_url) <= TechnicalArticle._meta.get_field("feed_url").max_length:
        if not TechnicalArticle.objects.filter(**TechnicalArticle.keys_for(feed_url=new_url)).exclude(pk=source.pk).exists():
            values["feed_url"] = new_url
            log.info("source moved permanently", extra={"source_id": source.pk, "old_url": source.feed_url, "new_url": new_url})
    return values


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    """Exponential backoff, capped; never earlier than the server's Retry-After."""
    delay = min(settings.INGEST_MAX_BACKOFF, settings.INGEST_BACKOFF_BASE * 2 ** max(0, failures - 1))
    if retry_after:
        delay = max(delay, min(retry_after, settings.INGEST_MAX_BACKOFF))
    return delay


def source_record_failure(
    *, source: TechnicalArticle, error: SourceError, owner: str, now: datetime, also: Callable[[], None] | None = None
) -> None:
    failures = source.consecutive_failures + 1
    values = {
        "last_fetched_at": now,
        "last_status": getattr(error, "status", None),
        "consecutive_failures": F("consecutive_failures") + 1,
        "last_error": _storable(str(error)),
        "next_fetch_at": now + timedelta(seconds=backoff_seconds(failures, error.retry_after)),
        "lease_owner": "",
        "lease_expires_at": None,
    }
    if error.deactivate:
        values["active"] = False
        values["last_error"] = _storable(f"{error} The source was deactivated; re-activate it in the admin.")

    def write() -> None:
        if TechnicalArticle.objects.filter(pk=source.pk, lease_owner=owner).update(**values) and also:
            also()

    run_atomic(write, label="source_record_failure")


def source_store(
    *, source: TechnicalArticle, fetched: Fetched, owner: str, stats: RetryStats | None = None, run_id: int | None = None
) -> SourceResult:
    """Write one fetched source: entries, then bookkeeping, in one retry-wrapped transaction.

    With ``run_id`` (a fanned-out Celery run), the run's counters are incremented in the same
    transaction, so a redelivered task can neither lose nor double-count a source.
    """
    now = timezone.now()
    base = {"id": source.pk, "url": source.feed_url, "name": source.name}
    if fetched.error is not None:
        return _store_failure(source, fetched.error, base=base, owner=owner, now=now, run_id=run_id)

    def write():
        counts, pingbacks = None, 0
        if fetched.feed is not None:
            counts = feed_upsert(article_id=source.pk, feed=fetched.feed, fetched_at=fetched.fetched_at)
            pingbacks = pingbacks_record(touched=counts.touched)
        # Bookkeeping last: if anything above fails, the source stays due and the next run redoes it.
        # It also proves the lease is still ours: if it expired and another run took the source
        # over, this transaction is rolled back and that run's work stands alone.
        values = _success_fields(source, fetched, now)
        if not TechnicalArticle.objects.filter(pk=source.pk, lease_owner=owner).update(**values):
            raise LeaseLost(f"The lease on source {source.pk} expired and another run took it over; nothing was written.")
        result = _result({**base, "name": values.get("name", source.name)}, counts, pingbacks)
        if run_id:
            run_add_result(run_id, result)
        return result

    try:
        return run_atomic(write, stats=stats, label=f"source {source.pk}")
    except LeaseLost as exc:
        log.warning("lease lost before commit", extra={"source_id": source.pk, "owner": owner})
        return SourceResult(**base, outcome="failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the containment boundary (a failing database re-raises)
        error = _write_failure(exc, what="a source", source_id=source.pk)
        return _store_failure(source, error, base=base, owner=owner, now=now, run_id=run_id)


def _store_failure(source: TechnicalArticle, error: SourceError, *, base: dict, owner: str, now: datetime,
                   run_id: int | None) -> SourceResult:
    result = SourceResult(**base, outcome="failed", error=_storable(str(error)), internal_error=error.internal)
    source_record_failure(source=source, error=error, owner=owner, now=now,
                          also=(lambda: run_add_result(run_id, result)) if run_id else None)
    return result


def _result(base: dict, counts, pingbacks: int) -> SourceResult:
    if counts is None:
        return SourceResult(**base, outcome="not_modified")
    outcome = "created" if counts.created else "updated" if counts.updated else "unchanged"
    return SourceResult(**base, outcome=outcome, created=counts.created, updated=counts.updated,
                        unchanged=counts.unchanged, pingbacks=pingbacks)


def source_preview(*, source: TechnicalArticle, fetched: Fetched) -> SourceResult:
    """Dry run: what ``source_store`` would do, reading only."""
    base = {"id": source.pk, "url": source.feed_url, "name": source.name}
    if fetched.error is not None:
        return SourceResult(**base, outcome="failed", error=str(fetched.error))
    if fetched.feed is None:
        return SourceResult(**base, outcome="not_modified")
    plan = entries_decide(fetched.feed.entries, existing_load(article_id=source.pk, guids=[e.guid for e in fetched.feed.entries]))
    created, updated = len(plan.new), len(plan.changed)
    outcome = "created" if created else "updated" if updated else "unchanged"
    return SourceResult(**base, outcome=outcome, created=created, updated=updated, unchanged=plan.unchanged)


# --- The ingest run -----------------------------------------------------------------------------


@dataclass
class IngestReport:
    run_id: int | None
    status: str
    elapsed_s: float
    results: list[SourceResult] = field(default_factory=list)
    dry_run: bool = False
    skipped_leased: int = 0
    retries: int = 0
    comments: dict[str, int] = field(default_factory=lambda: {"feeds": 0, "created": 0, "updated": 0, "not_modified": 0, "failed": 0})

    @property
    def totals(self) -> dict[str, int]:
        totals = {"sources": len(self.results), "created": 0, "updated": 0, "unchanged": 0, "not_modified": 0,
                  "failed": 0, "internal_errors": 0, "pingbacks": 0}
        for result in self.results:
            totals["internal_errors"] += result.internal_error
            totals["pingbacks"] += result.pingbacks
            totals["created"] += result.created
            totals["updated"] += result.updated
            totals["unchanged"] += result.unchanged
            if result.outcome in ("not_modified", "failed"):
                totals[result.outcome] += 1
        return totals

    def as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "elapsed_s": round(self.elapsed_s, 3),
            "totals": self.totals,
            "skipped_leased": self.skipped_leased,
            "retries": self.retries,
            "comments": self.comments,
            "sources": [result.as_dict() for result in self.results],
        }


def _status(results: Sequence[SourceResult]) -> str:
    failed = sum(1 for r in results if r.outcome == "failed")
    if failed and failed == len(results):
        return IngestRun.Status.FAILED
    return IngestRun.Status.PARTIAL if failed else IngestRun.Status.SUCCEEDED


def feeds_ingest(
    *,
    source_ids: Sequence[int] = (),
    force: bool = False,
    dry_run: bool = False,
    workers: int | None = None,
    trigger: str = IngestRun.Trigger.MANUAL,
    on_progress: Callable[[SourceResult, int, int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest the due sources (or ``source_ids``; ``force`` ignores the schedule).

    Fetch and parse run in ``workers`` threads; each source's writes run in the calling thread,
    one retry-wrapped transaction per source, so the database sees one writer per run.
    """
    started = time.monotonic()
    workers = max(1, workers or settings.INGEST_WORKERS)
    now = timezone.now()
    owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
    if not dry_run:
        try:
            runs_close_stale(now=now)
        except Error as exc:
            raise RunError(f"The database is unreachable, so the run cannot start: {_first_line(exc)}") from exc
    run = None if dry_run else run_start(command="ingest_feeds", trigger=trigger, lease_owner=owner)
    stats = RetryStats()
    results: list[SourceResult] = []
    comments = {"feeds": 0, "created": 0, "updated": 0, "not_modified": 0, "failed": 0}
    skipped = 0
    try:
        try:
            due = sources_due(now=now, ids=source_ids, force=force or bool(source_ids))
            sources = list(TechnicalArticle.objects.filter(pk__in=due).order_by("pk")) if dry_run else sources_claim(ids=due, owner=owner, now=now)
            # After the claim: the sources this run holds are leased, so they are not in this list.
            orphans = [] if dry_run or source_ids else comment_feeds_unclaimed(now=now)
        except Error as exc:
            raise RunError(f"The database is unreachable: {_first_line(exc)}") from exc
        skipped = len(due) - len(sources)
        if run is not None:
            run.sources_total = len(sources)
            IngestRun.objects.filter(pk=run.pk).update(sources_total=run.sources_total)
        if skipped:
            log.info("sources skipped: leased by another run", extra={"count": skipped, "run_id": run and run.pk})
        if on_start:
            on_start(len(sources))
        results = _ingest_sources(sources, owner=owner, workers=workers, dry_run=dry_run, force=force, stats=stats,
                                  on_progress=on_progress, comments=comments, comment_jobs=orphans)
    except BaseException as exc:
        if run is not None:
            _abort(run, owner, exc, results)
        raise
    report = IngestReport(
        run_id=run.pk if run else None,
        status=_status(results),
        elapsed_s=time.monotonic() - started,
        results=sorted(results, key=lambda r: r.id),
        dry_run=dry_run,
        skipped_leased=skipped,
        retries=stats.retries,
        comments=comments,
    )
    if run is not None:
        totals = report.totals
        run_finish(
            run,
            status=report.status,
            error="; ".join(f"{r.url}: {r.error}" for r in report.results if r.error)[:4000],
            sources_fetched=totals["sources"] - totals["failed"],
            sources_not_modified=totals["not_modified"],
            sources_failed=totals["failed"],
            sources_internal_errors=totals["internal_errors"],
            entries_created=totals["created"],
            entries_updated=totals["updated"],
            entries_unchanged=totals["unchanged"],
            stats={"retries": stats.retries, "skipped_leased": skipped, "comments": comments,
                   "sources": [r.as_dict() for r in report.results]},
        )
    log.info("ingest finished", extra={"run_id": report.run_id, "status": report.status, "elapsed_s": round(report.elapsed_s, 3),
                                       **{f"total_{key}": value for key, value in report.totals.items()}})
    return report


def _abort(run: IngestRun, owner: str, exc: BaseException, results: list[SourceResult]) -> None:
    """Record a run that died, and free its leases so the next run is not blocked for the TTL."""
    try:
        close_old_connections()
        sources_release(owner=owner)
        failed = sum(1 for r in results if r.outcome == "failed")
        run_finish(run, status=IngestRun.Status.FAILED, error=f"{type(exc).__name__}: {_first_line(exc)}"[:4000],
                   sources_fetched=len(results) - failed, sources_failed=failed)
    except Exception as err:  # the database may be what failed; the original error is what matters
        log.warning("could not record the failed run", extra={"run_id": run.pk, "error": _first_line(err)})


def _ingest_sources(sources, *, owner, workers, dry_run, force, stats, on_progress, comments, comment_jobs=()) -> list[SourceResult]:
    """Fetch + parse in a thread pool; store in this thread as results arrive.

    Sources with comment fetching on add their due comment feeds to the same pool once their
    entries are stored, so comment feeds never wait for the whole run.
    """
    fetch_settings = fetching.FetchSettings.from_settings()
    results: list[SourceResult] = []
    by_id = {s.pk: s for s in sources}
    # Popped from the end: sources first, then comment feeds no claimed source will bring.
    pending: list = [("comments", job) for job in reversed(comment_jobs)] + [("source", s) for s in reversed(sources)]
    with (
        _parse_pool(parse_processes(len(sources))) as parse_pool,
        fetching.make_client(fetch_settings) as client,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool,
    ):
        in_flight: dict[Future, tuple[str, object]] = {}

        def refill() -> None:
            # Bounded look-ahead: parsed feeds wait in memory only while the writer catches up.
            while pending and len(in_flight) < workers * 2:
                kind, item = pending.pop()
                if kind == "source":
                    future = pool.submit(source_fetch_parse, item, client=client, fetch_settings=fetch_settings, parse_pool=parse_pool)
                else:
                    future = pool.submit(comments_fetch_parse, item, client=client, fetch_settings=fetch_settings)
                in_flight[future] = (kind, item)

        refill()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                kind, item = in_flight.pop(future)
                if kind == "comments":
                    outcome, created, updated = comments_store(fetched=future.result(), stats=stats)
                    comments["feeds"] += 1
                    comments["created"] += created
                    comments["updated"] += updated
                    if outcome in ("failed", "not_modified"):
                        comments[outcome] += 1
                    continue
                fetched: Fetched = future.result()
                source = by_id[fetched.source_id]
                if dry_run:
                    try:
                        result = source_preview(source=source, fetched=fetched)
                    except Exception as exc:  # noqa: BLE001 - the containment boundary, as in source_store
                        error = _write_failure(exc, what="a source", source_id=source.pk)
                        result = SourceResult(id=source.pk, url=source.feed_url, name=source.name, outcome="failed",
                                              error=_storable(str(error)), internal_error=error.internal)
                else:
                    result = source_store(source=source, fetched=fetched, owner=owner, stats=stats)
                    if source.fetch_comments and result.outcome != "failed":
                        jobs = comment_feeds_due(source=source, now=timezone.now(), force=force)
                        pending.extend(("comments", job) for job in reversed(jobs))
                results.append(result)
                _log_result(result)
                if on_progress:
                    on_progress(result, len(results), len(sources))
            refill()
    return results


def _log_result(result: SourceResult) -> None:
    extra = {"source_id": result.id, "url": result.url, "outcome": result.outcome,
             "entries_created": result.created, "entries_updated": result.updated, "entries_unchanged": result.unchanged}
    if result.outcome == "failed":
        log.warning("source failed", extra={**extra, "error": result.error})
    else:
        log.info("source done", extra=extra)


@dataclass(frozen=True)
class OpmlImport:
    added: list[tuple[int, str]]
    existing: list[tuple[int, str]]
    rejected: list[tuple[str, str]]  # (url, reason)


def opml_import(*, content: bytes) -> OpmlImport:
    """Register every feed of an OPML document. Idempotent; a bad URL is rejected with its reason."""
    from ingest.opml import parse_opml

    added, existing, rejected = [], [], []
    for feed in parse_opml(content):
        try:
            article, created = source_add(url=feed.url, name=feed.title)
        except SourceError as exc:
            rejected.append((feed.url, str(exc)))
            continue
        (added if created else existing).append((article.pk, article.feed_url))
    return OpmlImport(added, existing, rejected)


# --- Counter reconciliation ---------------------------------------------------------------------


@dataclass
class RecountReport:
    run_id: int | None
    status: str
    scanned: int = 0
    changed: int = 0
    chunks: int = 0
    retries: int = 0
    elapsed_s: float = 0.0
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "dry_run": self.dry_run, "scanned": self.scanned,
                "changed": self.changed, "chunks": self.chunks, "retries": self.retries,
                "elapsed_s": round(self.elapsed_s, 3)}


def counts_scope(*, source_ids: Sequence[int] = (), entry_ids: Sequence[int] = (), since: datetime | None = None):
    from ingest.models import Comment, Pingback

    query = Entry.objects.all()
    if source_ids:
        query = query.filter(technical_article_id__in=source_ids)
    if entry_ids:
        query = query.filter(pk__in=entry_ids)
    if since is not None:
        query = query.filter(
            Q(pk__in=Comment.objects.filter(created_at__gte=since).values("entry_id"))
            | Q(pk__in=Pingback.objects.filter(created_at__gte=since).values("target_id"))
        )
    return query


def counts_recompute(
    *,
    source_ids: Sequence[int] = (),
    entry_ids: Sequence[int] = (),
    since: datetime | None = None,
    chunk_size: int = 1000,
    dry_run: bool = False,
    trigger: str = IngestRun.Trigger.MANUAL,
    reconcile: Callable[..., object] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RecountReport:
    """Reconcile comment and pingback counters, chunk by chunk in primary-key order.

    Each chunk is its own retry-wrapped transaction, so a long run holds no lock for long and a
    deadlock with a concurrent ingest costs one chunk's retry. A comment committed while a chunk is
    being counted is seen by this run or the next one, never lost.

    ``reconcile`` does one chunk, with the signature and result of
    ``ingest.counters.chunk_reconcile(base, *, after, size, dry_run)`` (a ``ChunkResult``, or None
    when the walk is over); None means that one, the product's. The benchmarks pass the strategies
    it was chosen from (``bench/recount_strategies.py``).
    """
    from ingest import counters

    started = time.monotonic()
    run = None if dry_run else run_start(command="recompute_counts", trigger=trigger)
    report = RecountReport(run_id=run.pk if run else None, status=IngestRun.Status.RUNNING, dry_run=dry_run)
    stats = RetryStats()
    try:
        try:
            base = counts_scope(source_ids=source_ids, entry_ids=entry_ids, since=since)
            total = base.count() if (on_start or on_progress) else 0
        except Error as exc:
            raise RunError(f"The database is unreachable: {_first_line(exc)}") from exc
        if on_start:
            on_start(total)
        after = 0
        while True:
            result = run_atomic(
                lambda after=after: (reconcile or counters.chunk_reconcile)(base, after=after, size=chunk_size, dry_run=dry_run),
                stats=stats, label="recount chunk",
            )
            if result is None:
                break
            after = result.last_pk
            report.chunks += 1
            report.scanned += result.scanned
            report.changed += result.changed
            if on_progress:
                on_progress(report.scanned, total)
    except BaseException as exc:
        if run is not None:
            try:
                run_finish(run, status=IngestRun.Status.FAILED, error=f"{type(exc).__name__}: {_first_line(exc)}",
                           stats={"scanned": report.scanned, "changed": report.changed, "chunks": report.chunks})
            except Exception as err:
                log.warning("could not record the failed run", extra={"run_id": run.pk, "error": _first_line(err)})
        raise
    report.retries = stats.retries
    report.elapsed_s = time.monotonic() - started
    report.status = IngestRun.Status.SUCCEEDED
    if run is not None:
        run_finish(run, status=report.status, stats=report.as_dict())
    log.info("recount finished", extra=report.as_dict())
    return report


# --- Fan-out (Celery): one dispatcher run, one task per source ----------------------------------


def run_add_result(run_id: int, result: SourceResult) -> None:
    """Count one source's result on a fanned-out run; the last source to report closes the run.

    Runs inside the caller's transaction. The increment is one UPDATE with F() expressions, so
    concurrent workers never lose a count; the row lock it takes orders them, and exactly one
    of them sees the run complete.
    """
    failed = result.outcome == "failed"
    IngestRun.objects.filter(pk=run_id).update(
        sources_fetched=F("sources_fetched") + (0 if failed else 1),
        sources_failed=F("sources_failed") + (1 if failed else 0),
        sources_internal_errors=F("sources_internal_errors") + (1 if result.internal_error else 0),
        sources_not_modified=F("sources_not_modified") + (1 if result.outcome == "not_modified" else 0),
        entries_created=F("entries_created") + result.created,
        entries_updated=F("entries_updated") + result.updated,
        entries_unchanged=F("entries_unchanged") + result.unchanged,
    )
    run = IngestRun.objects.get(pk=run_id)
    if run.status == IngestRun.Status.RUNNING and run.sources_fetched + run.sources_failed >= run.sources_total:
        _close_fanned_out(run)


def _close_fanned_out(run: IngestRun, *, lost: int = 0) -> None:
    if lost:
        status, error = IngestRun.Status.PARTIAL, f"{lost} source task(s) never reported (lost or expired); those sources are due again."
    elif run.sources_failed and run.sources_failed == run.sources_total:
        status, error = IngestRun.Status.FAILED, "every source failed; see the sources' last_error"
    elif run.sources_failed:
        status, error = IngestRun.Status.PARTIAL, f"{run.sources_failed} source(s) failed; see the sources' last_error"
    else:
        status, error = IngestRun.Status.SUCCEEDED, ""
    IngestRun.objects.filter(pk=run.pk, status=IngestRun.Status.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    )


def ingest_dispatch(*, trigger: str = IngestRun.Trigger.CELERY, source_ids: Sequence[int] = (), force: bool = False) -> tuple[int, str, list[int]]:
    """Claim the due sources for a fanned-out run; returns (run id, lease owner, claimed ids).

    The lease makes overlapping periodic runs safe: a source still leased by an earlier run (or by a
    cron, Azure or manual run) is not claimed again until that lease is released or expires.
    """
    now = timezone.now()
    runs_close_stale(now=now)
    run = run_start(command="ingest_feeds", trigger=trigger)
    owner = f"run-{run.pk}"
    IngestRun.objects.filter(pk=run.pk).update(lease_owner=owner)
    try:
        due = sources_due(now=now, ids=source_ids, force=force or bool(source_ids))
        claimed = [s.pk for s in sources_claim(ids=due, owner=owner, now=now)]
    except Error as exc:
        run_finish(run, status=IngestRun.Status.FAILED, error=_first_line(exc))
        raise RunError(f"The database is unreachable: {_first_line(exc)}") from exc
    stats = {"skipped_leased": len(due) - len(claimed)}
    IngestRun.objects.filter(pk=run.pk).update(sources_total=len(claimed), stats=stats)
    if not claimed:
        run_finish(run, status=IngestRun.Status.SUCCEEDED, stats=stats)
    return run.pk, owner, claimed


def source_ingest(*, source_id: int, owner: str, run_id: int | None = None) -> SourceResult | None:
    """Fetch, parse and store one leased source (a fanned-out task). Idempotent.

    Returns None without doing anything when ``owner`` no longer holds the lease: the source was
    already stored by an earlier delivery of the same task, or its lease expired and another run
    took it over.
    """
    source = TechnicalArticle.objects.filter(pk=source_id, lease_owner=owner).first()
    if source is None:
        log.info("source task skipped: lease not held", extra={"source_id": source_id, "owner": owner, "run_id": run_id})
        return None
    fetch_settings = fetching.FetchSettings.from_settings()
    with fetching.make_client(fetch_settings) as client:
        fetched = source_fetch_parse(source, client=client, fetch_settings=fetch_settings)
        result = source_store(source=source, fetched=fetched, owner=owner, run_id=run_id)
        _log_result(result)
        if source.fetch_comments and result.outcome != "failed":
            for job in comment_feeds_due(source=source, now=timezone.now()):
                comments_store(fetched=comments_fetch_parse(job, client=client, fetch_settings=fetch_settings))
    return result


def runs_close_stale(*, now: datetime) -> int:
    """Close the runs still marked ``running`` that can no longer finish; returns how many.

    Called at the start of every ingest run, whatever started it (cron, by hand, Celery, Azure), so
    that a killed run is never left ``running``. A run is over when

    * its process is gone: it ran on this host and its pid no longer exists (its leases are freed
      at once, so the next run takes its sources now rather than after the lease TTL); or
    * it is older than the lease TTL and no source holds a live lease of its owner: whatever it
      had claimed is free again, wherever it ran.

    A fanned-out run whose tasks never all reported is closed ``partial`` once it is older than
    twice the TTL (its tasks cannot hold a source longer than that).
    """
    ttl = timedelta(seconds=settings.INGEST_LEASE_SECONDS)
    host, me = socket.gethostname()[:255], os.getpid()
    closed = 0
    for run in IngestRun.objects.filter(status=IngestRun.Status.RUNNING, started_at__lt=now).order_by("pk"):
        fanned_out = run.lease_owner.startswith("run-") or (not run.lease_owner and run.sources_total > 0)
        if fanned_out:
            if run.started_at < now - 2 * ttl:
                _close_fanned_out(run, lost=max(0, run.sources_total - run.sources_fetched - run.sources_failed))
                closed += 1
            continue
        gone = run.hostname == host and run.pid and run.pid != me and not _process_exists(run.pid)
        # Only an ingest run says what it holds; a recount elsewhere is judged by its process alone.
        leases_expired = bool(run.lease_owner) and run.started_at < now - ttl and not TechnicalArticle.objects.filter(
            lease_owner=run.lease_owner, lease_expires_at__gt=now).exists()
        if not (gone or leases_expired):
            continue
        reason = ("its process ended without finishing it (killed or crashed)" if gone
                  else f"it holds no live lease {_duration_text(ttl.total_seconds())} after it started")
        if IngestRun.objects.filter(pk=run.pk, status=IngestRun.Status.RUNNING).update(
            status=IngestRun.Status.FAILED, finished_at=now,
            error=f"Closed by a later run: {reason}; the sources it had not stored are due again.",
        ):
            closed += 1
            log.warning("stale run closed", extra={"run_id": run.pk, "reason": reason})
            if gone and run.lease_owner:
                sources_release(owner=run.lease_owner)
    return closed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but belongs to someone else (or cannot be asked): not provably gone
    return True


def _duration_text(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def source_abandon(*, source_id: int, owner: str, run_id: int | None, reason: str) -> SourceResult | None:
    """Record a source whose task was stopped (e.g. its time limit) as failed, back it off and free
    its lease, so that neither the source nor the run waits for the lease to expire."""
    source = TechnicalArticle.objects.filter(pk=source_id, lease_owner=owner).first()
    if source is None:
        return None
    error = SourceError(reason)
    result = SourceResult(id=source.pk, url=source.feed_url, name=source.name, outcome="failed", error=reason)
    source_record_failure(source=source, error=error, owner=owner, now=timezone.now(),
                          also=(lambda: run_add_result(run_id, result)) if run_id else None)
    return result
