"""Every error the API returns is JSON with a sentence in ``detail`` (DRF's shape, and the schema's
``Error``), never an HTML page: DRF's own errors as DRF words them, the database's mapped to what a
client can do about it, anything unforeseen a logged 500."""

from __future__ import annotations

import logging

from django.db import utils as db_utils
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from ingest.errors import PipelineError, UsageError
from ingest.retry import is_transient

log = logging.getLogger("ingest.api")

BUSY_RETRY_AFTER_S = 5


def exception_handler(exc: Exception, context: dict) -> Response:
    response = drf_exception_handler(exc, context)
    if response is not None:
        return response
    set_rollback()
    view = context.get("view")
    where = {"view": type(view).__name__ if view else "", "action": getattr(view, "action", "") or ""}
    if isinstance(exc, db_utils.IntegrityError):
        log.warning("API write refused by a unique or foreign key", extra={**where, "error": str(exc)[:300]})
        return _error(status.HTTP_409_CONFLICT, "The change conflicts with a row written at the same time; "
                      "read the resource again and retry.")
    if isinstance(exc, db_utils.Error) and is_transient(exc):
        log.warning("API request gave up on a busy database", extra={**where, "error": str(exc)[:300]})
        response = _error(status.HTTP_503_SERVICE_UNAVAILABLE, "The database is busy; try again in a few seconds.")
        response["Retry-After"] = str(BUSY_RETRY_AFTER_S)
        return response
    if isinstance(exc, UsageError):
        return _error(status.HTTP_400_BAD_REQUEST, str(exc))
    if isinstance(exc, db_utils.Error):
        log.error("API request failed on the database", extra=where, exc_info=exc)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "The database failed on this request; the error is "
                      "in the server's log.")
    kind = "a pipeline error" if isinstance(exc, PipelineError) else "an unexpected error"
    log.error(f"API request failed on {kind}", extra=where, exc_info=exc)
    return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "The server failed on this request; the error is in its log.")


def _error(code: int, detail: str) -> Response:
    return Response({"detail": detail}, status=code)
