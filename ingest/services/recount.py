"""Reconciling the denormalized counters (``Entry.number_of_comments`` / ``number_of_pingbacks``):
the ``recompute_counts`` run, chunk by chunk, and the admin's refresh of a few entries.

``ingest.counters`` does the counting; this module owns the run around it (ledger, chunks, retries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import Error

from ingest import counters
from ingest.db import no_query_log
from ingest.errors import RunError
from ingest.models import IngestRun
from ingest.retry import RetryStats, run_atomic
from ingest.selectors import counts_scope
from ingest.services.duplicates import duplicates_repair
from ingest.services.runs import run_failed, run_finish, run_start

log = logging.getLogger("ingest.services")

MAX_CHUNK = counters.MAX_CHUNK  # the largest --chunk-size: an IN list far below SQL Server's 2,100 parameters

# How one chunk is reconciled: (base queryset, after=pk, size=n, dry_run=bool) -> ChunkResult | None.
Reconciler = Callable[..., "counters.ChunkResult | None"]


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
    duplicates_changed: int | None = None  # with dedup: entries whose duplicate_of the repair pass changed

    def as_dict(self) -> dict:
        found = {"run_id": self.run_id, "status": self.status, "dry_run": self.dry_run, "scanned": self.scanned,
                 "changed": self.changed, "chunks": self.chunks, "retries": self.retries,
                 "elapsed_s": round(self.elapsed_s, 3)}
        if self.duplicates_changed is not None:
            found["duplicates_changed"] = self.duplicates_changed
        return found


@no_query_log()  # long-running: no DEBUG query log (ingest.db)
def counts_recompute(
    *,
    source_ids: Sequence[int] = (),
    entry_ids: Sequence[int] = (),
    since: datetime | None = None,
    chunk_size: int = 1000,
    dry_run: bool = False,
    trigger: str = IngestRun.Trigger.MANUAL,
    reconcile: Reconciler | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    dedup: bool = False,
) -> RecountReport:
    """Reconcile comment and pingback counters, chunk by chunk in primary-key order.

    Each chunk is its own retry-wrapped transaction, so a long run holds no lock for long and a
    deadlock with a concurrent ingest costs one chunk's retry. A comment committed while a chunk is
    being counted is seen by this run or the next one, never lost. ``reconcile`` replaces the way
    one chunk is reconciled (``counters.chunk_reconcile``); the benchmarks use it to compare others.
    With ``dedup`` (not with ``dry_run``), a first walk over the same entries repairs their duplicate
    marks (``duplicates.duplicates_repair``; cleared when INGEST_CROSS_FEED_DEDUP is off), chunk by
    chunk in the same way, before the counters are reconciled.
    """
    reconcile = reconcile or counters.chunk_reconcile
    started = time.monotonic()
    run = None if dry_run else run_start(command="recompute_counts", trigger=trigger)
    report = RecountReport(run_id=run.pk if run else None, status=IngestRun.Status.RUNNING, dry_run=dry_run)
    stats = RetryStats()
    try:
        try:
            base = counts_scope(source_ids=source_ids, entry_ids=entry_ids, since=since)
            total = base.count() if (on_start or on_progress) else 0
        except Error as exc:
            raise RunError.database(exc) from exc
        if dedup and not dry_run:
            report.duplicates_changed = _dedup_walk(base, chunk_size=chunk_size, stats=stats)
        if on_start:
            on_start(total)
        after = 0
        while True:
            result = run_atomic(
                lambda after=after: reconcile(base, after=after, size=chunk_size, dry_run=dry_run),
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
            report.status, report.retries = IngestRun.Status.FAILED, stats.retries
            report.elapsed_s = time.monotonic() - started
            run_failed(run, exc, stats=report.as_dict())
        raise
    report.retries = stats.retries
    report.elapsed_s = time.monotonic() - started
    report.status = IngestRun.Status.SUCCEEDED
    if run is not None:
        run_finish(run, status=report.status, stats=report.as_dict())
    log.info("recount finished", extra=report.as_dict())
    return report


def _dedup_walk(base, *, chunk_size: int, stats: RetryStats) -> int:
    changed, after = 0, 0
    while True:
        result = run_atomic(lambda after=after: duplicates_repair(base=base, after=after, size=chunk_size),
                            stats=stats, label="dedup chunk")
        if result is None:
            return changed
        changed += result[1]
        after = result[2]


def entries_counts_refresh(*, entry_ids: Sequence[int]) -> int:
    """Set these entries' counters from their rows now, inside the caller's transaction (the admin
    wraps each change in one, so the counters commit with the comment or pingback that moved them)."""
    return counters.counters_refresh(entry_ids)
