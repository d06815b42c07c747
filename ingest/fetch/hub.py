"""A WebSub subscription request: one form POST to a hub, through the same guard as a fetch.

Owns the HTTP side of ``hub.mode=subscribe|unsubscribe`` (W3C WebSub, section 5.1): the form, the
SSRF guard on the hub's address (the client of ``make_client``), the connect/read timeouts and the
overall deadline of a fetch, no redirects followed (a hub answers the request itself), and what the
hub's answer means: any 2xx is "accepted, verification to follow" (202 is the usual one); anything
else is an ``HTTPStatusError`` quoting the start of the hub's reason. The form holds the
subscription's secret: nothing here logs it. Must not touch the ORM.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from ingest.fetch.config import FetchSettings
from ingest.fetch.post import guarded_post


def hub_request(hub_url: str, form: Mapping[str, str], *, client: httpx.Client, settings: FetchSettings) -> int:
    """POST ``form`` (``hub.mode``, ``hub.topic``, ``hub.callback``...) to the hub; its 2xx status.

    Raises ``BlockedURL`` for a hub the guard refuses, ``FetchError`` for the network, and
    ``HTTPStatusError`` when the hub answers anything but 2xx.
    """
    return guarded_post(hub_url, client=client, settings=settings, data=form, headers={"Accept": "*/*"},
                        refused=lambda host, status: f"The hub {host} refused the {form.get('hub.mode', '')} "
                                                     f"request with {status}")
