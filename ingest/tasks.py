"""Celery entry points: thin. Each parses its arguments, calls one service, returns a small dict.

``ingest_feeds`` (periodic) claims the due sources with ``ingest_dispatch`` and fans out one
``ingest_source`` task per claimed source, so that more worker processes, on more machines, fetch
more feeds at once. Every run is an ``IngestRun`` with trigger ``celery``; a tick that finds
nothing due is counted on ``IdleTick`` instead. ``prune_runs`` (periodic, daily by default)
deletes the finished runs older than INGEST_RUNS_KEEP_DAYS; ``prune_entries`` (daily) the entries
past their source's retention. ``ingest.events.deliver`` (after each write that recorded events,
and every WEBHOOK_SCHEDULE_SECONDS) sends the outbox's events to the webhooks.

Delivery is at least once (``acks_late``): a task may run again after a worker died. That is safe
because ``source_ingest`` does nothing once its lease is gone (an earlier delivery stored the
source), and the lease keeps overlapping runs (Celery, cron, Azure, manual) off each other's sources.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django import db
from django.conf import settings
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from ingest.errors import RunError, first_line
from ingest.models import IngestRun
from ingest.retry import is_transient
from ingest.services.fanout import ingest_dispatch, source_abandon, source_ingest
from ingest.services.prune import runs_prune
from ingest.services.recount import counts_recompute
from ingest.services.retention import entries_prune
from ingest.services.runs import run_unlogged
from ingest.services.webhooks import webhooks_deliver
from ingest.services.websub import subscriptions_maintain


class DatabaseBusy(Exception):
    """A transient database error that outlived run_atomic's own retries (deadlock victim, lock
    timeout, Azure SQL throttling). Through ODBC Driver 18 those arrive as ``django.db.Error`` or
    ``ProgrammingError``, which no class in ``autoretry_for`` can tell from a bug; is_transient can."""


@contextmanager
def database_busy_retried():
    """Every task's database scope: no DEBUG query log (``run_unlogged``: a worker with
    DJANGO_DEBUG=1 would otherwise keep each task's statements), and a transient database error
    the task's service let through turned into ``DatabaseBusy``."""
    try:
        with run_unlogged():
            yield
    except db.Error as exc:
        if not isinstance(exc, TRANSIENT) and is_transient(exc, db.connection.vendor):
            raise DatabaseBusy(first_line(exc)) from exc
        raise


# Worth another try later: the database or the broker was unreachable, or the database was busy
# (DatabaseBusy). Anything else is a bug: it fails.
TRANSIENT = (OperationalError, InterfaceError, DatabaseBusy, RunError, BrokerError)

RETRY = {
    "autoretry_for": TRANSIENT,
    "retry_backoff": 5,  # 5 s, 10 s, 20 s ... with full jitter
    "retry_backoff_max": settings.PIPELINE_TASK_RETRY_BACKOFF_MAX,  # below the visibility timeout
    "retry_jitter": True,
    "max_retries": settings.PIPELINE_TASK_MAX_RETRIES,
}


@shared_task(name="ingest.tasks.ingest_feeds", **RETRY)
def ingest_feeds(source_ids: list[int] | None = None, force: bool = False) -> dict:
    """Claim the due sources (or ``source_ids``) and queue one ``ingest_source`` per source."""
    ids = [int(pk) for pk in source_ids or ()]
    with database_busy_retried():
        run_id, owner, claimed = ingest_dispatch(trigger=IngestRun.Trigger.CELERY, source_ids=ids, force=bool(force))
    for source_id in claimed:
        # A task not started within the lease is pointless: another run may own the source by then.
        ingest_source.apply_async(
            # ``force`` only when set: a forced run parses even bodies stored last time.
            kwargs={"source_id": source_id, "owner": owner, "run_id": run_id, **({"force": True} if force else {})},
            expires=settings.INGEST_LEASE_SECONDS
        )
    # run_id is None when nothing was due: the tick is counted (IdleTick), not recorded as a run.
    return {"run_id": run_id, "sources": len(claimed), "idle": run_id is None}


@shared_task(name="ingest.tasks.ingest_source", **RETRY)
def ingest_source(source_id: int, owner: str, run_id: int | None = None, force: bool = False) -> dict:
    """Fetch and store one source leased by ``owner``; counts it on run ``run_id`` (``force``: a
    forced run, which parses even a body stored last time)."""
    source_id, owner, run_id = int(source_id), str(owner), int(run_id) if run_id else None
    with database_busy_retried():
        try:
            result = source_ingest(source_id=source_id, owner=owner, run_id=run_id, force=bool(force))
        except SoftTimeLimitExceeded:
            # The transaction in flight was rolled back; record why and free the source now.
            result = source_abandon(source_id=source_id, owner=owner, run_id=run_id,
                                    reason=f"The task exceeded its soft time limit of {settings.CELERY_TASK_SOFT_TIME_LIMIT} s.")
    if result is None:
        return {"id": source_id, "outcome": "skipped", "error": "lease not held: already stored or taken over"}
    return result.as_dict()


@shared_task(name="ingest.tasks.recompute_counts", **RETRY)
def recompute_counts() -> dict:
    """Reconcile the comment and pingback counters (a full run, recorded with trigger celery)."""
    with database_busy_retried():
        return counts_recompute(trigger=IngestRun.Trigger.CELERY).as_dict()


@shared_task(name="ingest.tasks.prune_runs", **RETRY)
def prune_runs() -> dict:
    """Delete the finished runs older than INGEST_RUNS_KEEP_DAYS (as ``manage.py prune_runs``)."""
    with database_busy_retried():
        return runs_prune(older_than=timedelta(days=settings.INGEST_RUNS_KEEP_DAYS)).as_dict()


@shared_task(name="ingest.tasks.prune_entries", **RETRY)
def prune_entries() -> dict:
    """Delete the entries past their source's retention (as ``manage.py prune_entries``), recorded with trigger celery."""
    with database_busy_retried():
        return entries_prune(trigger=IngestRun.Trigger.CELERY).as_dict()


@shared_task(name="ingest.tasks.websub_maintain", **RETRY)
def websub_maintain() -> dict:
    """Send, renew and cancel WebSub subscriptions (the pass ``ingest_feeds`` makes after a run)."""
    with database_busy_retried():
        return subscriptions_maintain()


@shared_task(name="ingest.events.deliver", **RETRY)
def deliver_events() -> dict:
    """Fan the new outbox events out to the webhook endpoints and send the due batches (as
    ``manage.py webhooks deliver``); queued after each write that recorded events, and by beat."""
    with database_busy_retried():
        return webhooks_deliver().as_dict()
