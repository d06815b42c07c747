"""One ``ingest_feeds`` run in this process: claim the due sources, fetch and parse them in
threads, store each in the calling thread as it arrives, poll the comment feeds of the sources
stored, and record the run; then the WebSub maintenance pass (``ingest.services.websub``).

The database sees one writer per run: fetch threads never touch it (``fetch_parse``), every
write goes through ``store``. Only a failing database or a failure to start stops the run.

Memory: at most twice ``workers`` fetched feeds wait for the writer (a body is dropped once
parsed); the fetch threads share two malloc arenas, and every ``TRIM_EVERY`` stored sources the
heap's freed memory goes back to the system (``ingest.parsepool.heap_trim``).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import Error, close_old_connections
from django.utils import timezone

from ingest import fetch as fetching
from ingest.db import no_query_log
from ingest.decide import run_status, tally, tally_comments
from ingest.errors import RunError, first_line, storable
from ingest.identity import host_of
from ingest.models import IngestRun, TechnicalArticle
from ingest.retry import RetryStats
from ingest.selectors import comment_feeds_due, comment_feeds_unclaimed, sources_due
from ingest.parsepool import heap_arenas_limit, heap_trim
from ingest.services.boundary import write_failure
from ingest.services.fetch_parse import comments_fetch_parse, parse_pool, parse_processes, source_fetch_parse
from ingest.services.hosts import POLL, HostRules, Turn, host_deferral, host_release, host_try
from ingest.services.leases import sources_claim, sources_release
from ingest.services.runs import run_columns, run_finish, run_owner, run_start, run_stats, runs_close_stale
from ingest.services.store import comments_store, source_defer, source_preview, source_store
from ingest.services.websub import subscriptions_maintain
from ingest.types import REASON_MAX, RUN_ERROR_MAX, CommentsResult, Deferred, Failure, Fetched, SourceResult

log = logging.getLogger("ingest.services")
TRIM_EVERY = 8  # sources stored between two heap trims (one costs 3 ms at most on the real corpus)


@dataclass
class IngestReport:
    run_id: int | None
    status: str
    elapsed_s: float
    results: list[SourceResult] = field(default_factory=list)
    comment_results: list[CommentsResult] = field(default_factory=list)
    dry_run: bool = False
    skipped_leased: int = 0
    retries: int = 0

    @property
    def totals(self) -> dict[str, int]:
        return tally(self.results).as_dict()

    @property
    def comments(self) -> dict[str, int]:
        return tally_comments(self.comment_results).as_dict()

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


@no_query_log()  # long-running: no DEBUG query log (ingest.db)
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
    """Ingest the due sources (or ``source_ids``; ``force`` ignores the schedule and the stored body
    digests: every 200 is parsed again).

    Fetch and parse run in ``workers`` threads; each source's writes run in the calling thread,
    one retry-wrapped transaction per source, so the database sees one writer per run.
    """
    started = time.monotonic()
    workers = max(1, workers or settings.INGEST_WORKERS)
    now = timezone.now()
    owner = run_owner()
    if not dry_run:
        try:
            runs_close_stale(now=now)
        except Error as exc:
            raise RunError.database(exc, doing="the run cannot start") from exc
    run = None if dry_run else run_start(command="ingest_feeds", trigger=trigger, lease_owner=owner)
    stats = RetryStats()
    results: list[SourceResult] = []
    comments: list[CommentsResult] = []
    skipped = 0
    try:
        try:
            due = sources_due(now=now, ids=source_ids, force=force or bool(source_ids))
            sources = list(TechnicalArticle.objects.filter(pk__in=due).order_by("pk")) if dry_run else sources_claim(ids=due, owner=owner, now=now)
            # After the claim: the sources this run holds are leased, so they are not in this list.
            orphans = [] if dry_run or source_ids else comment_feeds_unclaimed(now=now)
        except Error as exc:
            raise RunError.database(exc) from exc
        skipped = len(due) - len(sources)
        if run is not None:
            run.sources_total = len(sources)
            IngestRun.objects.filter(pk=run.pk).update(sources_total=run.sources_total)
        if skipped:
            log.info("sources skipped: leased by another run", extra={"count": skipped, "run_id": run and run.pk})
        if on_start:
            on_start(len(sources))
        _ingest_sources(sources, run_id=run and run.pk, owner=owner, workers=workers, dry_run=dry_run, force=force, stats=stats,
                        on_progress=on_progress, results=results, comments=comments, comment_jobs=orphans)
    except BaseException as exc:
        if run is not None:
            _abort(run, owner, exc, results)
        raise
    results.sort(key=lambda r: r.id)
    totals = tally(results)
    report = IngestReport(
        run_id=run.pk if run else None,
        status=run_status(total=totals.sources, failed=totals.failed),
        elapsed_s=time.monotonic() - started,
        results=results,
        comment_results=comments,
        dry_run=dry_run,
        skipped_leased=skipped,
        retries=stats.retries,
    )
    if run is not None:
        run_finish(
            run,
            status=report.status,
            error="; ".join(f"{r.url}: {r.error}" for r in results if r.error)[:RUN_ERROR_MAX],
            stats=run_stats(retries=stats.retries, skipped_leased=skipped, comments=tally_comments(comments), sources=results),
            **run_columns(totals),
        )
    log.info("ingest finished", extra={"run_id": report.run_id, "status": report.status, "elapsed_s": round(report.elapsed_s, 3),
                                       **{f"total_{key}": value for key, value in report.totals.items()}})
    if not dry_run:
        _websub_pass()
    return report


def _websub_pass() -> None:
    """After the run: WebSub subscriptions to send, renew or cancel (nothing while
    INGEST_WEBSUB_CALLBACK_URL is empty). The run's result stands whatever happens here."""
    try:
        subscriptions_maintain()
    except Error as exc:
        log.warning("websub maintenance skipped: the database failed", extra={"error": first_line(exc)})


def _abort(run: IngestRun, owner: str, exc: BaseException, results: list[SourceResult]) -> None:
    """Record a run that died, and free its leases so the next run is not blocked for the TTL."""
    try:
        close_old_connections()
        sources_release(owner=owner)
        columns = run_columns(tally(results))
        run_finish(run, status=IngestRun.Status.FAILED, error=f"{type(exc).__name__}: {first_line(exc)}"[:RUN_ERROR_MAX],
                   sources_fetched=columns["sources_fetched"], sources_failed=columns["sources_failed"])
    except Exception as err:  # the database may be what failed; the original error is what matters
        log.warning("could not record the failed run", extra={"run_id": run.pk, "error": first_line(err)})


def _ingest_sources(sources, *, run_id, owner, workers, dry_run, force, stats, on_progress, results, comments, comment_jobs=()) -> None:
    """Fetch + parse in a thread pool; store in this thread as results arrive (into ``results``
    and ``comments``, so that a run that dies still knows what it stored).

    Work waits in one queue per host and starts only with a turn of its host's budget
    (``services.hosts``), taken here, in the writing thread, when a fetch thread is free: the
    threads never touch the database, and a busy host never holds a thread that another host's
    source could use. A host that stays busy past the bounded wait has its queued work deferred.
    Sources with comment fetching on add their due comment feeds to the queues once their entries
    are stored, so comment feeds never wait for the whole run.
    """
    fetch_settings = fetching.FetchSettings.from_settings()
    rules = HostRules.from_settings()
    heap_arenas_limit()  # before the fetch threads start: what their parses free stays shared
    by_id = {s.pk: s for s in sources}
    queues: dict[str, deque] = {}  # host -> its waiting work, in order; hosts in the order they came
    waiting_since: dict[str, float] = {}  # host -> when its first refusal of this wait came

    def enqueue(kind: str, item) -> None:
        queues.setdefault(host_of(_url(kind, item)), deque()).append((kind, item))

    for source in sources:
        enqueue("source", source)
    for job in comment_jobs:  # comment feeds no claimed source will bring
        enqueue("comments", job)

    def defer(kind: str, item, deferred: Deferred) -> None:
        if kind == "comments":
            comments.append(CommentsResult(entry_id=item.entry_id, url=item.url, value=deferred))
            return
        result = (SourceResult(id=item.pk, url=item.feed_url, name=item.name, value=deferred) if dry_run
                  else source_defer(source=item, owner=owner, reason=deferred.reason))
        done_with(result)

    def done_with(result: SourceResult) -> None:
        results.append(result)
        log_result(result, run_id=run_id)
        if on_progress:
            on_progress(result, len(results), len(sources))

    in_flight: dict[Future, tuple[str, Turn]] = {}
    try:
        with (
            parse_pool(parse_processes(len(sources))) as pool_of_parsers,
            fetching.make_client(fetch_settings) as client,
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool,
        ):
            def refill() -> float | None:
                """Start what the budgets allow; the seconds until a refusing host may say yes (None: none waits)."""
                retry_in: list[float] = []
                for host in list(queues):
                    queue = queues[host]
                    while queue:
                        # A free thread starts a submitted fetch at once, so a turn is a request start;
                        # parsed feeds wait in memory only while the writer catches up (bounded look-ahead).
                        if sum(not f.done() for f in in_flight) >= workers or len(in_flight) >= workers * 2:
                            return min(retry_in, default=None)
                        if sum(turn.host == host for _, turn in in_flight.values()) >= rules.concurrency:
                            break  # this run holds every slot of the host: its next turn follows a fetch of ours
                        kind, item = queue[0]
                        verdict = host_try(_url(kind, item), rules=rules)
                        if isinstance(verdict, Turn):
                            queue.popleft()
                            waiting_since.pop(host, None)
                            in_flight[_submit(pool, kind, item, client, fetch_settings, pool_of_parsers,
                                              force)] = (kind, verdict)
                            continue
                        now = time.monotonic()
                        waited = now - waiting_since.setdefault(host, now)
                        if waited + verdict.seconds > rules.max_wait:
                            deferred = host_deferral(host, verdict, waited)
                            while queue:
                                defer(*queue.popleft(), deferred)
                            waiting_since.pop(host, None)
                        else:
                            retry_in.append(verdict.seconds)
                        break
                    if not queue:
                        del queues[host]
                return min(retry_in, default=None)

            retry_in = refill()
            while in_flight or queues:
                if in_flight:
                    done, _ = wait(in_flight, timeout=retry_in, return_when=FIRST_COMPLETED)
                else:  # only hosts that wait: nothing else to do until the soonest may start
                    time.sleep(retry_in if retry_in is not None else POLL)
                    done = set()
                for future in done:
                    kind, turn = in_flight.pop(future)
                    fetched = future.result()
                    host_release(turn, rules=rules, error=fetched.error)
                    if kind == "comments":
                        comments.append(comments_store(fetched=fetched, stats=stats))
                        continue
                    source = by_id[fetched.source_id]
                    if dry_run:
                        result = _preview(source, fetched)
                    else:
                        result = source_store(source=source, fetched=fetched, owner=owner, stats=stats)
                        if source.fetch_comments and not result.failed:
                            for job in comment_feeds_due(source=source, now=timezone.now(), force=force):
                                enqueue("comments", job)
                    done_with(result)
                    if len(results) % TRIM_EVERY == 0:
                        heap_trim()  # what the stored feeds freed goes back to the system, not to the peak
                retry_in = refill()
    finally:
        # After the pool has shut down (its fetches are over): a run that stops early gives its
        # hosts' slots back rather than leaving them to expire.
        _release_all([turn for _, turn in in_flight.values()], rules)


def _url(kind: str, item) -> str:
    return item.url if kind == "comments" else item.feed_url


def _submit(pool: ThreadPoolExecutor, kind: str, item, client, fetch_settings, pool_of_parsers, force: bool) -> Future:
    """Start one fetch; ``force`` (``--all``): parse even a body whose digest matches the stored one."""
    if kind == "source":
        return pool.submit(source_fetch_parse, item, client=client, fetch_settings=fetch_settings, parse_pool=pool_of_parsers,
                           force=force)
    return pool.submit(comments_fetch_parse, item, client=client, fetch_settings=fetch_settings, force=force)


def _release_all(turns: list[Turn], rules: HostRules) -> None:
    """A run that stops with fetches in flight frees their slots (else they would wait for their expiry)."""
    for turn in turns:
        try:
            host_release(turn, rules=rules)
        except Exception as exc:  # the database may be what stopped the run: the slots then expire
            log.warning("could not release a host slot", extra={"host": turn.host, "error": first_line(exc)})
            return


def _preview(source: TechnicalArticle, fetched: Fetched) -> SourceResult:
    try:
        return source_preview(source=source, fetched=fetched)
    except Exception as exc:  # noqa: BLE001 - the containment boundary, as in source_store
        error = write_failure(exc, what="a source", source_id=source.pk)
        return SourceResult(id=source.pk, url=source.feed_url, name=source.name,
                            value=Failure(storable(str(error), REASON_MAX), error.internal))


def log_result(result: SourceResult, *, run_id: int | None = None) -> None:
    """One record per source, with the run it belongs to (none for a dry run)."""
    extra = {**({"run_id": run_id} if run_id else {}), "source_id": result.id, "url": result.url, "outcome": result.outcome,
             "entries_created": result.created, "entries_updated": result.updated, "entries_unchanged": result.unchanged}
    if result.failed:
        log.warning("source failed", extra={**extra, "error": result.error})
    else:
        log.info("source done", extra=extra)
