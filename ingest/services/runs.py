"""The run ledger: one ``IngestRun`` row per run of a command, whatever started it.

A run is started, its results are counted on it (all at once by an in-process run, one source at
a time by a fanned-out Celery run), and it is finished with the status ``ingest.decide`` derives.
A run that can no longer finish (its process was killed, its leases expired) is closed by the next
run. ``IngestRun.stats`` has one shape for ``ingest_feeds`` runs on every path (``run_stats``).

``run_unlogged`` is the scope of a long-running piece of work (a run, a recount, a prune, a webhook
delivery): no DEBUG query log (``ingest.db.no_query_log``). The command base and every Celery
task enter it, so that DJANGO_DEBUG=1 never makes a run hold every statement it sent.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import Error, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from ingest.db import no_query_log
from ingest.decide import CommentTotals, Totals, run_status, tally
from ingest.errors import RunError, first_line
from ingest.models import IdleTick, IngestRun, TechnicalArticle
from ingest.services.heartbeat import heartbeat_after, heartbeat_idle
from ingest.services.leases import sources_release
from ingest.types import HOSTNAME_MAX, RUN_ERROR_MAX, SourceResult

log = logging.getLogger("ingest.services")

# The interfaces' name for the scope of long-running work (they do not import ingest.db).
run_unlogged = no_query_log


def run_owner() -> str:
    """A lease owner unique to one in-process run: host, pid and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def run_start(*, command: str, trigger: str, lease_owner: str = "") -> IngestRun:
    try:
        return IngestRun.objects.create(
            command=command, trigger=trigger, hostname=socket.gethostname()[:HOSTNAME_MAX], pid=os.getpid(),
            lease_owner=lease_owner,
        )
    except Error as exc:
        raise RunError.database(exc, doing="the run cannot start") from exc


def run_idle_tick(*, command: str, now: datetime) -> None:
    """Count a scheduled run of ``command`` that found nothing to do, instead of recording a run.

    One UPDATE with F() + 1 (concurrent ticks never lose a count); the command's row is created by
    its first idle tick (a concurrent first tick that created it first is counted by the retry).
    """
    try:
        if not IdleTick.objects.filter(command=command).update(idle_ticks=F("idle_ticks") + 1, last_idle_at=now):
            try:
                with transaction.atomic():
                    IdleTick.objects.create(command=command, idle_ticks=1, last_idle_at=now)
            except IntegrityError:
                IdleTick.objects.filter(command=command).update(idle_ticks=F("idle_ticks") + 1, last_idle_at=now)
    except Error as exc:
        raise RunError.database(exc, doing="the idle tick cannot be counted") from exc
    heartbeat_idle(command)  # the pipeline is alive: it had nothing to do


def run_finish(run: IngestRun, *, status: str, error: str = "", **counters) -> None:
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    for name, value in counters.items():
        setattr(run, name, value)
    run.save()
    heartbeat_after(run)  # after the commit: a monitor that hangs never holds a transaction open


def run_failed(run: IngestRun, exc: BaseException, **counters) -> None:
    """Record a run that stopped on ``exc``, as best it can: the database may be what failed, and
    then the original error is what matters (logged, never raised over it)."""
    try:
        run_finish(run, status=IngestRun.Status.FAILED, error=f"{type(exc).__name__}: {first_line(exc)}"[:RUN_ERROR_MAX],
                   **counters)
    except Exception as err:
        log.warning("could not record the failed run", extra={"run_id": run.pk, "error": first_line(err)})


def run_stats(*, retries: int = 0, skipped_leased: int = 0, comments: CommentTotals = CommentTotals(),
              sources: Sequence[SourceResult] = ()) -> dict:
    """``IngestRun.stats`` of an ingest run: the same keys on every path."""
    return {"retries": retries, "skipped_leased": skipped_leased, "comments": comments.as_dict(),
            "sources": [r.as_dict() for r in sources]}


def run_columns(totals: Totals) -> dict:
    """The counter columns of ``IngestRun`` for these totals."""
    return {
        "sources_fetched": totals.sources - totals.failed - totals.deferred,
        "sources_not_modified": totals.not_modified,
        "sources_failed": totals.failed,
        "sources_internal_errors": totals.internal_errors,
        "entries_created": totals.created,
        "entries_updated": totals.updated,
        "entries_unchanged": totals.unchanged,
        "sources_deferred": totals.deferred,
    }


def run_add(run_id: int, *, result: SourceResult | None = None, comments: CommentTotals = CommentTotals(),
            retries: int = 0) -> None:
    """Count one source's result (and its comment feeds) on a fanned-out run; the last source to
    report closes the run.

    Runs inside the caller's transaction. The increment is one UPDATE with F() expressions, so
    concurrent workers never lose a count; the row lock it takes orders them (and makes the
    read-modify-write of ``stats`` below safe), and exactly one of them sees the run complete.
    """
    totals = tally([result] if result else [])
    IngestRun.objects.filter(pk=run_id).update(**{name: F(name) + value for name, value in run_columns(totals).items()})
    run = IngestRun.objects.get(pk=run_id)
    stats = {**run_stats(), **(run.stats or {})}
    stats["retries"] += retries
    stats["comments"] = (CommentTotals(**stats["comments"]) + comments).as_dict()
    if result is not None:
        stats["sources"] = [*stats["sources"], result.as_dict()]
    IngestRun.objects.filter(pk=run_id).update(stats=stats)
    if result is not None and run.status == IngestRun.Status.RUNNING and _reported(run) >= run.sources_total:
        run_close_counted(run)


def _reported(run: IngestRun) -> int:
    """The sources of a fanned-out run whose task reported: stored, failed or deferred."""
    return run.sources_fetched + run.sources_failed + run.sources_deferred


def run_close_counted(run: IngestRun, *, lost: int = 0) -> None:
    """Close a fanned-out run from the counts on its row (``lost``: tasks that never reported)."""
    status = run_status(total=run.sources_total, failed=run.sources_failed, lost=lost)
    if lost:
        error = f"{lost} source task(s) never reported (lost or expired); those sources are due again."
    elif status == IngestRun.Status.FAILED:
        error = "every source failed; see the sources' last_error"
    elif run.sources_failed:
        error = f"{run.sources_failed} source(s) failed; see the sources' last_error"
    else:
        error = ""
    if IngestRun.objects.filter(pk=run.pk, status=IngestRun.Status.RUNNING).update(
        status=status, error=error, finished_at=timezone.now()
    ):
        run.status, run.error = status, error
        if not lost:  # a run closed for lost tasks is closed by a later run, whose own outcome is pinged
            heartbeat_after(run)  # once, by the task that closed it, after its transaction commits


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
    host, me = socket.gethostname()[:HOSTNAME_MAX], os.getpid()
    closed = 0
    for run in IngestRun.objects.filter(status=IngestRun.Status.RUNNING, started_at__lt=now).order_by("pk"):
        fanned_out = run.lease_owner.startswith("run-") or (not run.lease_owner and run.sources_total > 0)
        if fanned_out:
            if run.started_at < now - 2 * ttl:
                run_close_counted(run, lost=max(0, run.sources_total - _reported(run)))
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


def process_gone(hostname: str, pid: int) -> bool:
    """Whether process ``pid`` of machine ``hostname`` (as ``run_owner`` writes it) provably ended:
    only a process of this machine can be asked, and this process is not gone."""
    return hostname == socket.gethostname()[:40] and pid != os.getpid() and not _process_exists(pid)


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
