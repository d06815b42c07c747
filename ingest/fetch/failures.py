"""httpx's transport exceptions, turned into a ``FetchError`` with a sentence a user can act on.

Owns the wording of network failures: deadline spent, connect and read timeouts (with the
configured number of seconds), TLS certificate and handshake failures, a connection closed early,
refused or reset. Must not retry, decide anything about the source, or touch the ORM.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ingest.errors import FetchError
from ingest.fetch.config import FetchSettings
from ingest.fetch.deadline import Budget


@contextmanager
def transport_errors(host: str, settings: FetchSettings, budget: Budget) -> Iterator[None]:
    """Turn httpx's transport exceptions into a FetchError with a sentence a user can act on."""
    try:
        yield
    except httpx.TimeoutException as exc:
        if budget.exhausted or isinstance(exc, httpx.PoolTimeout):
            message = f"The deadline of {settings.deadline:g} s was exceeded while fetching from {host}."
        elif isinstance(exc, httpx.ConnectTimeout):
            message = f"Connecting to {host} timed out after {settings.connect_timeout:g} s."
        else:
            message = f"{host} did not respond within the {settings.read_timeout:g} s read timeout."
        raise FetchError(message) from exc
    except httpx.TransportError as exc:
        raise FetchError(_transport_message(exc, host)) from exc


def _transport_message(exc: httpx.TransportError, host: str) -> str:
    # httpcore's pool re-raises with ``from None``, so the socket or TLS error that explains the
    # failure survives only as the implicit context.
    cause: BaseException = exc
    while (inner := cause.__cause__ or cause.__context__) is not None:
        cause = inner
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"The TLS certificate of {host} is not valid ({str(cause.verify_message).rstrip('.')})."
    if isinstance(cause, ssl.SSLError):
        return f"The TLS handshake with {host} failed ({cause.reason or 'SSL error'})."
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} closed the connection early or sent a malformed HTTP response."
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause) or "network error"
    if isinstance(exc, httpx.ConnectError):
        return f"Could not connect to {host} ({reason.lower()})."
    return f"The connection to {host} failed ({reason.lower()})."
