"""Heartbeats: a ping to a cron monitor (healthchecks.io, Cronitor, Better Stack, Uptime Kuma ...)
after each ingest run that worked, so that the monitor raises the alarm when the pings stop (the
dead-man's switch), whatever stopped them: cron, beat, the workers, the Functions host, the database.

The ledger (``services.runs``) calls ``heartbeat_after`` where a run's outcome is recorded, on every
path (the command, the Celery fan-out, the Azure timer, which runs the command). The ping is sent
once the transaction that recorded the outcome has committed, never inside it, with a short timeout
(``PIPELINE_HEARTBEAT_TIMEOUT``); a ping that fails is one warning and never changes the run.

What is pinged (docs/heartbeats.md): ``PIPELINE_HEARTBEAT_URL`` after an ``ingest_feeds`` run that
ended ``succeeded`` or ``partial`` (some sources failed; they are backed off and retried on their
own) and after a tick that found nothing due (the pipeline is alive, it had nothing to do);
``PIPELINE_HEARTBEAT_FAIL_URL``, when set, after a run that ended ``failed``. Other commands do not ping.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db import transaction

from ingest.errors import first_line

log = logging.getLogger("ingest.services")

COMMAND = "ingest_feeds"  # the run a dead-man's switch watches: entries stop arriving when it stops
COUNTS = ("sources_total", "sources_fetched", "sources_not_modified", "sources_failed", "sources_internal_errors",
          "sources_deferred", "entries_created", "entries_updated", "entries_unchanged")


def heartbeat_after(run) -> None:
    """Ping for ``run`` (an ``IngestRun`` whose status was just recorded) once that is committed."""
    url = heartbeat_url(run.command, run.status)
    if url:
        body = {"command": run.command, "run_id": run.pk, "status": run.status, "trigger": run.trigger,
                "error": run.error, "counts": {name: getattr(run, name) for name in COUNTS}}
        transaction.on_commit(lambda: heartbeat_send(url, body))


def heartbeat_idle(command: str) -> None:
    """Ping for a tick of ``command`` that found nothing to do (no run is recorded for it)."""
    url = heartbeat_url(command, "idle")
    if url:
        body = {"command": command, "run_id": None, "status": "idle", "trigger": "celery", "error": "", "counts": {}}
        transaction.on_commit(lambda: heartbeat_send(url, body))


def heartbeat_url(command: str, status: str) -> str:
    """Where a run of ``command`` ending ``status`` is reported; empty: nowhere."""
    if command != COMMAND:
        return ""
    if status in ("succeeded", "partial", "idle"):
        return settings.PIPELINE_HEARTBEAT_URL
    if status == "failed":
        return settings.PIPELINE_HEARTBEAT_FAIL_URL
    return ""


def heartbeat_send(url: str, body: dict) -> bool:
    """POST ``body`` as JSON to ``url``; whether the monitor took it. Never raises: a monitor that
    is down, slow or refusing costs one warning (naming its host only: the path is the check's key)."""
    where = urlsplit(url).hostname or "?"
    try:
        response = httpx.post(url, json=body, timeout=settings.PIPELINE_HEARTBEAT_TIMEOUT, follow_redirects=False,
                              headers={"User-Agent": settings.INGEST_USER_AGENT})
    except Exception as exc:  # noqa: BLE001  (a heartbeat never fails the run, whatever went wrong)
        log.warning("heartbeat not sent", extra={"host": where, "run_id": body.get("run_id"),
                                                 "error": f"{type(exc).__name__}: {first_line(exc)}"})
        return False
    if not response.is_success:
        log.warning("heartbeat refused", extra={"host": where, "run_id": body.get("run_id"),
                                                "http_status": response.status_code})
        return False
    return True
