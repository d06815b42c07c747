"""Run one pipeline management command for an Azure Functions invocation.

Interface code, like a Celery task: it sets Django up once per worker process, runs the same
command a person or cron would (``call_command(..., trigger="azure")``) and reports. No domain
decisions live here.

The outcome reaches Azure through the invocation's result: a run that ends ``failed`` has already
been recorded on its ``IngestRun`` by the service when this module raises ``RunFailed``, so the
portal, Application Insights and any alert on failed executions show it. A ``partial`` run (some
feeds failed, the others were stored) is logged as a warning and is not an invocation failure:
the failing sources are recorded, backed off and retried on their own schedule.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from io import StringIO
from typing import Any

DEFAULT_SETTINGS = "pipeline.settings"

# The Functions Python worker collects log records through a handler of its own on the root logger;
# every logger of the project propagates there (settings.LOGGING).
log = logging.getLogger("functions_app")
_setup_lock = threading.Lock()


class RunFailed(Exception):
    """The command could not run, or its run was recorded as failed; fails the invocation."""


def django_setup() -> None:
    """Configure Django once per process (the Python worker reuses the process between runs)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", DEFAULT_SETTINGS)
    from django.apps import apps

    if apps.ready:
        return
    with _setup_lock:  # the worker may run two functions at once in its thread pool
        if not apps.ready:
            import django
            from django.core.exceptions import ImproperlyConfigured

            host_handlers = list(logging.getLogger().handlers)
            try:
                django.setup()
            except ImproperlyConfigured as exc:
                # The sentence names the app setting to fix; a traceback into settings.py would not
                # add to it. Every invocation fails the same way until the setting is fixed.
                sentence = " ".join(str(exc).split())
                log.error("configuration error: %s", sentence)
                raise RunFailed(f"configuration error: {sentence}") from None
            _log_through(host_handlers)


def _log_through(host_handlers: list[logging.Handler]) -> None:
    """Give the root logger back the handlers the host had put there, in the project's format.

    ``django.setup()`` applied ``LOGGING``, which replaced the root logger's handlers with the
    project's one stderr handler. Under the Functions host that would bypass the host's handler
    (records with their level and logger, for Application Insights) and reach the host only as
    console text. The host's handlers take the project's formatter (``LOG_FORMAT``) and filters
    instead, and the stderr handler goes, so that each record reaches the host once. Outside a
    host (no handler on the root logger before the set-up) nothing changes.
    """
    if not host_handlers:
        return
    root = logging.getLogger()
    project = list(root.handlers)
    for handler in project:
        root.removeHandler(handler)
    for handler in host_handlers:
        if project:
            handler.setFormatter(project[0].formatter)
            for item in project[0].filters:
                handler.addFilter(item)
        root.addHandler(handler)


def _timer_fields(timer: Any) -> dict:
    status = getattr(timer, "schedule_status", None) or {}
    return {"past_due": bool(getattr(timer, "past_due", False)), "schedule_last": status.get("Last"),
            "schedule_next": status.get("Next")}


def command_run(command: str, timer: Any, *args: str) -> dict:
    """Run ``manage.py <command> --json --trigger azure``; return its JSON report.

    Raises ``RunFailed`` when the command exits with an error (the run could not work) or its run
    ended ``failed``. Database connections are closed before and after like around a web request,
    so a warm worker never starts on a connection that died while it was idle.
    """
    django_setup()
    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.db import close_old_connections

    timer_fields = _timer_fields(timer)
    if timer_fields["past_due"]:
        log.warning("timer is past due; running %s now", command, extra={"command": command, **timer_fields})
    started = time.monotonic()
    out, err = StringIO(), StringIO()
    close_old_connections()
    try:
        call_command(command, *args, json=True, trigger="azure", stdout=out, stderr=err)
    except CommandError as exc:
        log.error("%s could not run: %s", command, exc, extra={"command": command, **timer_fields})
        raise RunFailed(f"{command} could not run: {exc}") from exc
    finally:
        close_old_connections()
    report = json.loads(out.getvalue())
    fields = {"command": command, "run_id": report.get("run_id"), "status": report.get("status"),
              "elapsed_s": round(time.monotonic() - started, 3), **timer_fields}
    if report.get("status") == "failed":
        reason = _failure_reason(report)
        log.error("%s run %s failed: %s", command, report.get("run_id"), reason, extra=fields)
        raise RunFailed(f"{command} run {report.get('run_id')} failed: {reason}")
    if report.get("status") == "partial":
        log.warning("%s run %s finished with failed sources", command, report.get("run_id"), extra=fields)
    else:
        log.info("%s run %s %s", command, report.get("run_id"), report.get("status"), extra=fields)
    return report


def _failure_reason(report: dict) -> str:
    errors = [f"{s.get('url')}: {s.get('error')}" for s in report.get("sources", ()) if s.get("error")]
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        return "; ".join(errors[:3]) + more
    return "see the run's error in the admin (Ingest runs)"
