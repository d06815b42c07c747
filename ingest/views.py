"""Web endpoints of the pipeline: ``/healthz``, ``/metrics`` (Prometheus, docs/metrics.md), and the error pages of ``/api/`` paths (the admin is
Django's own, the API is ``ingest/api/``).

``/healthz`` answers 200 while the web process can serve (the database answers), 503 when it
cannot; the age of the last completed ingest run is in the body (``ingest.stale``), for monitors,
but does not change the status code, so that an orchestrator never restarts the web process because
a worker is down. Likewise ``health`` counts the sources per health state (docs/health.md) and
leaves the status code alone: one broken feed is the publisher's problem, not the web process's.
The body names no host, user, URL or error text: it is safe to expose.
"""

from __future__ import annotations

import hmac
import ipaddress

from django import db
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from ingest import selectors
from ingest.services.metrics import metrics_registry


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


def _metrics_allowed(request) -> bool:
    """The bearer token, when one is configured and sent; else the client's address in
    METRICS_ALLOWED_NETWORKS (REMOTE_ADDR: behind a proxy, the proxy's address)."""
    token = settings.METRICS_TOKEN
    scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(sent.strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


@never_cache
@require_safe
def metrics(request):
    """The Prometheus text exposition of ``ingest.services.metrics``, computed from the database now."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if not _metrics_allowed(request):
        response = HttpResponse("Forbidden: send the METRICS_TOKEN as a bearer token, or scrape from "
                                "METRICS_ALLOWED_NETWORKS.\n", status=401 if settings.METRICS_TOKEN else 403,
                                content_type="text/plain; charset=utf-8")
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    app = None
    if settings.PIPELINE_CELERY:
        from pipeline.celery import app
    try:
        body = generate_latest(metrics_registry(celery_app=app, broker_timeout=settings.METRICS_BROKER_TIMEOUT))
    except db.Error:
        return HttpResponse("The database is unreachable.\n", status=503, content_type="text/plain; charset=utf-8")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


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
