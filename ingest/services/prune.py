"""Pruning the run ledger: ``prune_runs`` (by hand, cron, beat, the Azure timer) deletes the
finished ``IngestRun`` rows older than a cutoff, so that the ledger does not grow forever.

What it never deletes:

* a ``running`` row (its run may still finish; ``runs_close_stale`` closes the dead ones first);
* the last completed run of each command, however old: ``pipeline_status`` and ``/healthz`` judge
  freshness from it, and an operator still sees when a job last worked.

It works in chunks of at most ``MAX_CHUNK`` ids (below SQL Server's 2,100 parameters and its lock
escalation threshold), each one ``run_atomic`` transaction of one SELECT of ids and one DELETE by
primary key: the statements grow with the number of chunks, never with the rows of one chunk.
A failure part-way leaves fewer old rows; running it again finishes the job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import Error
from django.utils import timezone

from ingest.db import MAX_ROWS_PER_STATEMENT, in_batch_size, no_query_log
from ingest.errors import RunError
from ingest.models import IngestRun
from ingest.retry import RetryStats, run_atomic
from ingest.selectors import run_last_completed

MAX_CHUNK = MAX_ROWS_PER_STATEMENT  # ids per chunk, transaction and statement


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    dry_run: bool
    deleted: int  # with dry_run: how many would be deleted
    kept: tuple[int, ...]  # the last completed run of each command, kept whatever its age
    chunks: int
    retries: int
    elapsed_s: float

    def as_dict(self) -> dict:
        return {"cutoff": self.cutoff.isoformat(), "dry_run": self.dry_run, "deleted": self.deleted,
                "kept": list(self.kept), "chunks": self.chunks, "retries": self.retries,
                "elapsed_s": round(self.elapsed_s, 3)}


def _prunable(*, cutoff: datetime, kept: tuple[int, ...]):
    return (IngestRun.objects.exclude(status=IngestRun.Status.RUNNING)
            .filter(finished_at__isnull=False, finished_at__lt=cutoff).exclude(pk__in=kept))


@no_query_log()  # long-running: no DEBUG query log (ingest.db)
def runs_prune(*, older_than: timedelta, dry_run: bool = False, chunk_size: int = MAX_CHUNK,
               now: datetime | None = None) -> PruneResult:
    """Delete (or with ``dry_run`` count) the finished runs that finished more than ``older_than`` ago."""
    started = time.monotonic()
    now = now or timezone.now()
    cutoff = now - older_than
    chunk = max(1, min(chunk_size, MAX_CHUNK, in_batch_size()))
    stats = RetryStats()
    deleted = chunks = 0
    try:
        commands = sorted(set(IngestRun.objects.order_by().values_list("command", flat=True).distinct()))
        kept = tuple(sorted(run.pk for run in (run_last_completed(job=c) for c in commands) if run is not None))
        if dry_run:
            would = _prunable(cutoff=cutoff, kept=kept).count()
            return PruneResult(cutoff, True, would, kept, 0, 0, time.monotonic() - started)
        while True:
            def one_chunk() -> int:
                ids = list(_prunable(cutoff=cutoff, kept=kept).order_by("pk").values_list("pk", flat=True)[:chunk])
                if not ids:
                    return 0
                IngestRun.objects.filter(pk__in=ids).delete()  # no relation or signal: one DELETE
                return len(ids)

            done = run_atomic(one_chunk, stats=stats, label="prune runs")
            if not done:
                break
            deleted += done
            chunks += 1
            if done < chunk:
                break
    except Error as exc:
        raise RunError.database(exc, doing=f"pruning stopped after {deleted} runs") from exc
    return PruneResult(cutoff, False, deleted, kept, chunks, stats.retries, time.monotonic() - started)
