"""A WebSub subscription request: one form POST to a hub, through the same guard as a fetch.

Owns the HTTP side of ``hub.mode=subscribe|unsubscribe`` (W3C WebSub, section 5.1): the form, the
SSRF guard on the hub's address (the client of ``make_client``), the connect/read timeouts and the
overall deadline of a fetch, no redirects followed (a hub answers the request itself), and what the
hub's answer means: any 2xx is "accepted, verification to follow" (202 is the usual one); anything
else is an ``HTTPStatusError`` quoting the start of the hub's reason. The form holds the
subscription's secret: nothing here logs it. Must not touch the ORM.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from ingest.errors import HTTPStatusError
from ingest.fetch.body import read_head
from ingest.fetch.config import FetchSettings
from ingest.fetch.deadline import BUDGET, Budget
from ingest.fetch.failures import transport_errors
from ingest.fetch.guard import parse_target

REASON_BYTES = 300  # of a refusing hub's body, quoted in the error


def hub_request(hub_url: str, form: Mapping[str, str], *, client: httpx.Client, settings: FetchSettings) -> int:
    """POST ``form`` (``hub.mode``, ``hub.topic``, ``hub.callback``...) to the hub; its 2xx status.

    Raises ``BlockedURL`` for a hub the guard refuses, ``FetchError`` for the network, and
    ``HTTPStatusError`` when the hub answers anything but 2xx.
    """
    budget = Budget(deadline=time.monotonic() + settings.deadline)
    token = BUDGET.set(budget)
    try:
        url = parse_target(hub_url)
        request = client.build_request(
            "POST", url, data=dict(form), headers={"Accept": "*/*"},
            timeout=httpx.Timeout(connect=settings.connect_timeout, read=settings.read_timeout,
                                  write=settings.read_timeout, pool=settings.deadline))
        with transport_errors(url.host, settings, budget):
            response = client.send(request, stream=True)
            try:
                status = response.status_code
                if 200 <= status < 300:
                    return status
                reason = read_head(response, url.host, REASON_BYTES).decode("utf-8", "replace").strip()
            finally:
                response.close()
        phrase = httpx.codes.get_reason_phrase(status)
        said = f": {' '.join(reason.split())[:200]}" if reason else ""
        raise HTTPStatusError(f"The hub {url.host} refused the {form.get('hub.mode', '')} request with HTTP "
                              f"{status}{f' {phrase}' if phrase else ''}{said}", status=status)
    finally:
        BUDGET.reset(token)
