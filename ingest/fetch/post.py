"""One POST through the same guard as a fetch: the SSRF guard on the target's address (the client
of ``make_client``), the connect/read timeouts and the overall deadline of a fetch, no redirect
followed, and a cap on the answer read. Shared by the WebSub hub request (``hub.py``) and the
webhook delivery (``webhook.py``): both only need to know that the other side answered 2xx, or
why it did not. Must not touch the ORM; logs nothing (the bodies hold secrets).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import httpx

from ingest.errors import HTTPStatusError
from ingest.fetch.body import read_head
from ingest.fetch.config import FetchSettings
from ingest.fetch.deadline import BUDGET, Budget
from ingest.fetch.failures import transport_errors
from ingest.fetch.guard import parse_target

REASON_BYTES = 300  # of a refusing answer's body, quoted in the error


def guarded_post(url: str, *, client: httpx.Client, settings: FetchSettings, headers: Mapping[str, str],
                 refused: Callable[[str, str], str], content: bytes | None = None,
                 data: Mapping[str, str] | None = None) -> int:
    """POST ``content`` (or the form ``data``) to ``url``; the 2xx status.

    Raises ``BlockedURL`` for a URL the guard refuses, ``FetchError`` for the network or the
    deadline, and ``HTTPStatusError`` for any other status: its sentence is ``refused(host,
    "HTTP 503 Service Unavailable")`` and the start of the answer's body.
    """
    budget = Budget(deadline=time.monotonic() + settings.deadline)
    token = BUDGET.set(budget)
    try:
        target = parse_target(url)
        request = client.build_request(
            "POST", target, content=content, data=dict(data) if data is not None else None, headers=dict(headers),
            timeout=httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                                  write=settings.read_timeout, pool=settings.deadline))
        with transport_errors(target.host, settings, budget):
            response = client.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return status
                reason = read_head(response, target.host, REASON_BYTES).decode("utf-8", "replace").strip()
            finally:
                response.close()
        phrase = httpx.codes.get_reason_phrase(status)
        said = f": {' '.join(reason.split())[:200]}" if reason else ""
        raise HTTPStatusError(f"{refused(target.host, f'HTTP {status}' + (f' {phrase}' if phrase else ''))}{said}",
                              status=status)
    finally:
        BUDGET.reset(token)
