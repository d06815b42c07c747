"""A webhook POST: one signed batch to a receiver, through the same guard as a fetch.

Owns the HTTP side of a delivery: the Standard Webhooks headers (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``), the SSRF guard on the receiver's address (the client
of ``make_client``), the connect/read timeouts and the overall deadline of a fetch, a cap on the
answer read, and what the answer means: any 2xx acknowledges the batch; anything else (a redirect
too: a receiver answers itself, and a redirect to another host is never followed) is an
``HTTPStatusError`` quoting the start of the receiver's reason. Must not touch the ORM, and never
logs the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx

from ingest.fetch.config import FetchSettings
from ingest.fetch.post import guarded_post

SECRET_PREFIX = "whsec_"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body``
    under the secret's key (the base64 after ``whsec_``), as the Standard Webhooks specification says.

    Written here rather than taken from the ``standardwebhooks`` package: signing is these few lines
    of the standard library, the spec's own test vector pins them (tests/test_webhooks.py), and the
    pipeline's install stays without a package that would only ever run this function.
    """
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(secret: str, message_id: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers of one message, signed now."""
    timestamp = int(time.time() if now is None else now)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(secret, message_id, timestamp, body)}


def webhook_post(url: str, body: bytes, *, message_id: str, secret: str, client: httpx.Client,
                 settings: FetchSettings) -> int:
    """POST one signed JSON ``body`` to ``url``; the receiver's 2xx status.

    Raises ``BlockedURL`` for a URL the guard refuses, ``FetchError`` for the network or the
    deadline, and ``HTTPStatusError`` when the receiver answers anything but 2xx.
    """
    return guarded_post(url, client=client, settings=settings, content=body,
                        headers={"Content-Type": "application/json", "Accept": "*/*",
                                 **signed_headers(secret, message_id, body)},
                        refused=lambda host, status: f"The webhook receiver {host} answered {status}")
