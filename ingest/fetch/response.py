"""The final response of a fetch (no more redirects): a ``FetchResult`` or the error it means.

Owns the meaning of status codes: 2xx is read (``ingest.fetch.body``), 304 is "not modified" only
in answer to a request that carried validators, 410 is ``SourceGone``, a 403, 429 or 503 challenge
page of a bot protection is a ``BotWall`` (``ingest.fetch.botwall``), 429 and 503 carry their
``Retry-After`` (``parse_retry_after``, capped at ``RETRY_AFTER_CAP``), anything else is an
``HTTPStatusError``. Must not follow redirects or touch the ORM.
"""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from ingest.errors import BotWall, HTTPStatusError, SourceGone
from ingest.fetch import botwall
from ingest.fetch.body import read_body, read_head
from ingest.fetch.conditional import kept_validator
from ingest.fetch.config import FetchSettings
from ingest.fetch.deadline import Budget
from ingest.fetch.failures import transport_errors
from ingest.types import FetchRequest, FetchResult

RETRY_AFTER_CAP = 7 * 24 * 3600.0


def complete(
    response: httpx.Response,
    url: httpx.URL,
    request: FetchRequest,
    settings: FetchSettings,
    budget: Budget,
    permanent_url: str | None,
    conditional: bool,
) -> FetchResult:
    """The ``FetchResult`` of a final response, its body read; raises for a status that is a failure."""
    status = response.status_code
    if status == 304 and not conditional:
        # "Not modified since" what? Taken as success, the source would stay empty for good.
        raise HTTPStatusError(
            f"{url.host} answered HTTP 304 Not Modified to a request that sent no validators (no ETag or "
            f"Last-Modified is stored), so there is nothing it can be unchanged from.",
            status=status,
        )
    if status == 304:
        content = b""
    elif 200 <= status < 300:
        with transport_errors(url.host, settings, budget):
            content = read_body(response, url.host, settings.max_bytes)
    else:
        raise _refusal(response, url.host, settings, budget)
    return FetchResult(
        url=str(url),
        status=status,
        content=content,
        headers=dict(response.headers.items()),  # httpx lower-cases names and joins repeats
        # A 304 may omit the validators; the ones the request carried then remain current.
        etag=kept_validator(response, "etag", request.etag if status == 304 else ""),
        last_modified=kept_validator(response, "last-modified", request.last_modified if status == 304 else ""),
        permanent_url=permanent_url,
    )


def _refusal(response: httpx.Response, host: str, settings: FetchSettings, budget: Budget) -> HTTPStatusError:
    """The error of a failure status: a ``BotWall`` when its headers and the start of its body are
    a bot protection's challenge (``ingest.fetch.botwall``), else the status's own error."""
    status = response.status_code
    if status in botwall.STATUSES:
        with transport_errors(host, settings, budget):
            head = read_head(response, host, botwall.PEEK_BYTES)
        vendor = botwall.detect(status, response.headers, head)
        if vendor:
            return BotWall(status=status, host=host, vendor=vendor,
                           retry_after=parse_retry_after(response.headers.get("retry-after")))
    return _status_error(status, response.headers, host)


def _status_error(status: int, headers: httpx.Headers, host: str) -> HTTPStatusError:
    phrase = httpx.codes.get_reason_phrase(status)
    message = f"HTTP {status} {phrase} from {host}." if phrase else f"HTTP {status} from {host}."
    if status == 410:
        return SourceGone(message, status=status)
    if status in (429, 503):
        return HTTPStatusError(message, status=status, retry_after=parse_retry_after(headers.get("retry-after")))
    return HTTPStatusError(message, status=status)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped at 7 days.

    None when absent or unusable; a date already past means "now" (0.0).
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is GMT by definition
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)

