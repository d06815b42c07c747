"""Conditional GET: the validators a request sends and the ones a response leaves to store.

Owns the rule for a usable validator (``validator``): it fits its column (``VALIDATOR_MAX``, from
``ingest.types``) and can be sent back byte for byte as a request header. Stored state is checked
again before it is sent, so a row written by an older version, or by hand, costs at most its
conditional request, never the run; a value that cannot be echoed is neither sent nor kept.

Must not send requests or touch the ORM.
"""

from __future__ import annotations

import httpx

from ingest.types import ETAG_MAX, LAST_MODIFIED_MAX, FetchRequest

# The stored validators' columns (ingest.types): a longer value is neither sent nor kept, never cut.
VALIDATOR_MAX = {"etag": ETAG_MAX, "last_modified": LAST_MODIFIED_MAX}
_VISIBLE_ASCII = frozenset(range(0x20, 0x7F))


def validator(value: str, limit: int) -> bool:
    """True when ``value`` can be stored and sent back verbatim as a request header.

    HTTP field values may carry obs-text (bytes over 0x7F), but httpx encodes outgoing values as
    ASCII and a validator is opaque: one that cannot be echoed byte for byte is useless, and one
    stored would break every later request of its source.
    """
    return bool(value) and len(value) <= limit and value.strip() == value and all(ord(c) in _VISIBLE_ASCII for c in value)


def kept_validator(response: httpx.Response, name: str, fallback: str) -> str:
    value = response.headers.get(name) or fallback
    return value if validator(value, VALIDATOR_MAX[name.replace("-", "_")]) else ""


def request_validators(request: FetchRequest) -> dict[str, str]:
    """The conditional headers for ``request``'s stored validators, those that can be sent."""
    headers = {}
    if validator(request.etag, VALIDATOR_MAX["etag"]):
        headers["If-None-Match"] = request.etag
    if validator(request.last_modified, VALIDATOR_MAX["last_modified"]):
        headers["If-Modified-Since"] = request.last_modified
    return headers
