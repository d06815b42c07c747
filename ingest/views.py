"""Web endpoints of the pipeline: ``/healthz``, and the error pages of ``/api/`` paths (the admin is
Django's own, the API is ``ingest/api/``).

``/healthz`` answers 200 while the web process can serve (the database answers), 503 when it
cannot; the age of the last completed ingest run is in the body (``ingest.stale``), for monitors,
but does not change the status code, so that an orchestrator never restarts the web process because
a worker is down. Likewise ``health`` counts the sources per health state (docs/health.md) and
leaves the status code alone: one broken feed is the publisher's problem, not the web process's.
The body names no host, user, URL or error text: it is safe to expose.
"""

from __future__ import annotations

from django import db
from django.conf import settings
from django.http import JsonResponse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ingest import selectors


@never_cache
@require_safe
def healthz(request):
    now = timezone.now()
    body: dict = {"status": "ok", "time": now.isoformat(), "database": "ok"}
    try:
        selectors.database_ping()
        ingest = selectors.job_freshness(job="ingest_feeds", now=now, max_age_s=settings.PIPELINE_HEALTH_MAX_AGE)
        recount = selectors.run_last_completed(job="recompute_counts")
        health = selectors.health_counts(now=now)
    except db.Error:  # the base: through ODBC Driver 18 a deadlock is not a DatabaseError
        body.update(status="unavailable", database="unreachable")
        return JsonResponse(body, status=503)
    body["ingest"] = {key: value for key, value in ingest.as_dict().items() if key != "job"}
    body["recount"] = {
        "run_id": recount.pk if recount else None,
        "finished_at": recount.finished_at.isoformat() if recount else None,
        "age_s": round((now - recount.finished_at).total_seconds(), 1) if recount else None,
    }
    body["health"] = health
    if ingest.stale:
        body["status"] = "stale"
    return JsonResponse(body)


def _api(request) -> bool:
    return request.path.startswith("/api/")


def not_found(request, exception):
    """A 404 no view answered: JSON under /api/ (the API's ``Error`` shape), Django's page elsewhere."""
    if _api(request):
        return JsonResponse({"detail": "No API endpoint has this address; /api/ lists them."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """A 500 outside DRF's handler (a middleware, the URL resolver): JSON under /api/."""
    if _api(request):
        return JsonResponse({"detail": "The server failed on this request; the error is in its log."}, status=500)
    return defaults.server_error(request)
