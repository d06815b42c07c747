"""The same ingest run spread over Celery: one dispatcher claims the due sources, one task per
source fetches, parses and stores it, and the last task to report closes the run.

Delivery is at least once: a task whose lease is gone does nothing (an earlier delivery stored
the source, or another run took it over), and each source is counted on the run in the same
transaction that stores it, so a redelivered task can neither lose nor double-count a source.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import Error
from django.utils import timezone

from ingest import fetch as fetching
from ingest.decide import tally_comments
from ingest.errors import RunError, SourceError, first_line
from ingest.models import IngestRun, TechnicalArticle
from ingest.retry import RetryStats, run_atomic
from ingest.selectors import comment_feeds_due, sources_due
from ingest.services.fetch_parse import comments_fetch_parse, source_fetch_parse
from ingest.services.hosts import HostRules, Turn, host_release, host_wait
from ingest.services.ingest import log_result
from ingest.services.leases import sources_claim
from ingest.services.runs import run_add, run_finish, run_idle_tick, run_start, run_stats, runs_close_stale
from ingest.services.store import comments_store, source_defer, source_record_failure, source_store
from ingest.types import CommentsResult, Deferred, SourceResult

log = logging.getLogger("ingest.services")


def ingest_dispatch(*, trigger: str = IngestRun.Trigger.CELERY, source_ids: Sequence[int] = (),
                    force: bool = False) -> tuple[int | None, str, list[int]]:
    """Claim the due sources for a fanned-out run; returns (run id, lease owner, claimed ids).

    The lease makes overlapping periodic runs safe: a source still leased by an earlier run (or by a
    cron, Azure or manual run) is not claimed again until that lease is released or expires.

    A tick that finds no source due records no run: it is counted on the command's ``IdleTick``
    row (``runs.run_idle_tick``) and returns ``(None, "", [])``. Sources due but all leased by
    another run still make a run (its ``skipped_leased`` says so).
    """
    now = timezone.now()
    runs_close_stale(now=now)
    try:
        due = sources_due(now=now, ids=source_ids, force=force or bool(source_ids))
    except Error as exc:
        raise RunError.database(exc) from exc
    if not due:
        run_idle_tick(command="ingest_feeds", now=now)
        return None, "", []
    run = run_start(command="ingest_feeds", trigger=trigger)
    owner = f"run-{run.pk}"
    IngestRun.objects.filter(pk=run.pk).update(lease_owner=owner)
    try:
        claimed = [s.pk for s in sources_claim(ids=due, owner=owner, now=now)]
    except Error as exc:
        run_finish(run, status=IngestRun.Status.FAILED, error=first_line(exc))
        raise RunError.database(exc) from exc
    stats = run_stats(skipped_leased=len(due) - len(claimed))
    IngestRun.objects.filter(pk=run.pk).update(sources_total=len(claimed), stats=stats)
    if not claimed:
        run_finish(run, status=IngestRun.Status.SUCCEEDED, stats=stats)
    return run.pk, owner, claimed


def source_ingest(*, source_id: int, owner: str, run_id: int | None = None, force: bool = False) -> SourceResult | None:
    """Fetch, parse and store one leased source (a fanned-out task), then its due comment feeds.
    Idempotent. ``force`` (a forced run): parse even a body whose digest matches the stored one.

    Returns None without doing anything when ``owner`` no longer holds the lease: the source was
    already stored by an earlier delivery of the same task, or its lease expired and another run
    took it over. The comment feeds are counted on the run after they are stored (a worker that
    dies in between leaves them stored but uncounted).
    """
    source = TechnicalArticle.objects.filter(pk=source_id, lease_owner=owner).first()
    if source is None:
        log.info("source task skipped: lease not held", extra={"source_id": source_id, "owner": owner, "run_id": run_id})
        return None
    fetch_settings = fetching.FetchSettings.from_settings()
    rules = HostRules.from_settings()
    stats = RetryStats()
    # The host's budget is shared with every other worker and run (services.hosts); a source whose
    # host stays busy past the bounded wait is deferred: lease freed, counted, fetched by a later run.
    turn = host_wait(source.feed_url, rules=rules)
    if isinstance(turn, Deferred):
        result = source_defer(source=source, owner=owner, reason=turn.reason, run_id=run_id)
        log_result(result, run_id=run_id)
        return result
    with fetching.make_client(fetch_settings) as client:
        fetched = _fetched_in_turn(
            turn, rules, lambda: source_fetch_parse(source, client=client, fetch_settings=fetch_settings, force=force))
        result = source_store(source=source, fetched=fetched, owner=owner, run_id=run_id, stats=stats)
        log_result(result, run_id=run_id)
        if source.fetch_comments and not result.failed:
            comments = []
            for job in comment_feeds_due(source=source, now=timezone.now()):
                turn = host_wait(job.url, rules=rules)
                if isinstance(turn, Deferred):  # still due: the next run polls it
                    comments.append(CommentsResult(entry_id=job.entry_id, url=job.url, value=turn))
                    continue
                fetched_comments = _fetched_in_turn(
                    turn, rules, lambda: comments_fetch_parse(job, client=client, fetch_settings=fetch_settings, force=force))
                comments.append(comments_store(fetched=fetched_comments))
            if comments and run_id:
                run_atomic(lambda: run_add(run_id, comments=tally_comments(comments)), label=f"run {run_id} comments")
    return result


def _fetched_in_turn(turn: Turn, rules: HostRules, fetch):
    """Run ``fetch`` (which contains its own failures) in a turn of its host's budget, then free the turn."""
    fetched = None
    try:
        fetched = fetch()
    finally:
        host_release(turn, rules=rules, error=fetched.error if fetched is not None else None)
    return fetched


def source_abandon(*, source_id: int, owner: str, run_id: int | None, reason: str) -> SourceResult | None:
    """Record a source whose task was stopped (e.g. its time limit) as failed, back it off and free
    its lease, so that neither the source nor the run waits for the lease to expire."""
    source = TechnicalArticle.objects.filter(pk=source_id, lease_owner=owner).first()
    if source is None:
        return None
    return source_record_failure(source=source, error=SourceError(reason), owner=owner, now=timezone.now(), run_id=run_id)
