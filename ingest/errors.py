"""One exception tree for the pipeline.

``SourceError`` and its subclasses fail one source: the run records the reason and goes on.
``RunError`` means the run itself cannot work; commands turn it into a ``CommandError``.
``transient`` says whether trying again later may help (it drives backoff, not the DB retry).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class SourceError(PipelineError):
    """A failure that concerns one source only. ``str(exc)`` is the reason shown to users."""

    transient = True
    retry_after: float | None = None  # seconds, from a Retry-After header
    deactivate = False  # True: stop fetching this source (HTTP 410 Gone)


class BlockedURL(SourceError):
    """The URL is not allowed: a non-http(s) scheme, or a host in a private/reserved network."""

    transient = False


class FetchError(SourceError):
    """The HTTP exchange failed: connection, timeout, deadline, bad status, too many redirects."""


class HTTPStatusError(FetchError):
    def __init__(self, message: str, *, status: int, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class SourceGone(HTTPStatusError):
    """HTTP 410: the publisher removed the feed for good."""

    transient = False
    deactivate = True


class BodyTooLarge(FetchError):
    """The body passed the size cap (counted after decompression); reading stopped there."""


class ParseError(SourceError):
    """The bytes are not a feed feedparser can read."""


class StoreError(SourceError):
    """The database refused this source's data (a value too large for the server, invalid for its
    column). Only this source fails; the data will not become acceptable by retrying soon."""

    transient = False


class LeaseLost(PipelineError):
    """The source's lease expired mid-work and another run took the source over."""


class RunError(PipelineError):
    """The run cannot work at all (database unreachable, bad configuration)."""


class NestedAtomicError(RuntimeError):
    """The retrying helper was called inside an outer atomic block, where a retry cannot restart."""
