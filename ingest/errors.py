"""One exception tree for the pipeline.

``SourceError`` and its subclasses fail one source: the run records the reason and goes on.
``transient`` says whether trying again soon may help: a transient failure is backed off
exponentially, a lasting one (a refused URL, data the database refuses) straight to the longest
backoff (``ingest.decide``). It is not the database retry, which ``ingest.retry`` owns.
``RunError`` means the run itself cannot work (exit status 1); ``UsageError`` means the arguments
are wrong (exit status 2). Both become one sentence in one place, the commands' base class
(``ingest.cli.PipelineCommand``). ``first_line`` and ``storable`` make an exception's text fit a
report and a text column.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class SourceError(PipelineError):
    """A failure that concerns one source only. ``str(exc)`` is the reason shown to users."""

    transient = True
    internal = False  # True only for InternalError: a bug or an unforeseen input, counted apart
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


BOT_WALL_PREFIX = "blocked by the publisher's bot protection"  # how every BotWall reason starts


class BotWall(HTTPStatusError):
    """A challenge page of the publisher's bot protection (``ingest.fetch.botwall``), not the feed.

    Retrying soon cannot pass it, so it waits INGEST_BOT_WALL_BACKOFF at least (``ingest.decide``);
    its reason starts with ``BOT_WALL_PREFIX`` and names the vendor, so that reports tell it from a
    broken feed.
    """

    def __init__(self, *, status: int, host: str, vendor: str, retry_after: float | None = None):
        super().__init__(f"{BOT_WALL_PREFIX} ({vendor}): {host} answered HTTP {status} with a challenge page "
                         f"instead of the feed; the publisher must allow this fetcher.",
                         status=status, retry_after=retry_after)
        self.vendor = vendor


class BodyTooLarge(FetchError):
    """The body passed the size cap (counted after decompression); reading stopped there."""


class ParseError(SourceError):
    """The bytes are not a feed feedparser can read."""


class InternalError(SourceError):
    """Something unexpected (a bug, or input no rule foresaw) happened while handling one source.

    Recorded as that source's failure, ``internal error: <Type>: <message>``, logged with its
    traceback at ERROR, counted apart in every report and backed off like any failure: one
    publisher must not be able to stop every run, and a bug must stay loud.
    """

    internal = True

    @classmethod
    def wrap(cls, exc: BaseException) -> InternalError:
        detail = first_line(exc) if str(exc).strip() else "(no message)"
        error = cls(f"internal error: {type(exc).__name__}: {detail}")
        error.__cause__ = exc
        return error


class StoreError(SourceError):
    """The database refused this source's data (a value too large for the server, invalid for its
    column). Only this source fails; the data will not become acceptable by retrying soon."""

    transient = False


class CredentialsError(SourceError):
    """A source's credentials or extra headers are invalid, or a secret they name is not set
    ("secret env:FEED_X_TOKEN is not set"). The sentence names the reference, never a value; at
    request time only this source fails, when a source is registered or edited it is refused."""


class LeaseLost(PipelineError):
    """The source's lease expired mid-work and another run took the source over."""


class RunError(PipelineError):
    """The run cannot work at all (database unreachable, bad configuration)."""

    @classmethod
    def database(cls, exc: BaseException, *, doing: str = "") -> RunError:
        """"The database is unreachable[, so <doing>]: <its first line>", chained to ``exc``."""
        error = cls(f"The database is unreachable{f', so {doing}' if doing else ''}: {first_line(exc)}")
        error.__cause__ = exc
        return error


class UsageError(PipelineError):
    """The arguments are wrong; the sentence says which and how to fix them (exit status 2)."""


class UnknownSource(UsageError):
    """A ``--source`` (an id or a feed URL) that matches no registered source."""


class NoFeedChosen(UsageError):
    """A web page given for a feed advertises no feed, or several and none of them was picked.
    ``candidates`` are the feeds it advertises (``ingest.parse.discover.FeedLink``), ``page_url``
    the page they were found on."""

    def __init__(self, message: str, *, page_url: str, candidates: tuple = ()):
        super().__init__(message)
        self.page_url = page_url
        self.candidates = tuple(candidates)


class NestedAtomicError(RuntimeError):
    """The retrying helper was called inside an outer atomic block, where a retry cannot restart."""


def first_line(exc: BaseException, width: int = 500) -> str:
    """The first line of an exception's own message, for a one-sentence report.

    pyodbc's args are (SQLSTATE, message), so its ``str()`` is a tuple's repr; the message itself
    already starts with "[SQLSTATE]". An exception without a message is named by its type.
    """
    args = getattr(exc, "args", ())
    text = args[1] if len(args) == 2 and all(isinstance(a, str) for a in args) else str(exc)
    text = text.strip()
    return text.splitlines()[0][:width] if text else type(exc).__name__


_UNSTORABLE = dict.fromkeys(range(0x20), " ") | {0x7F: " "}


def storable(text: str, limit: int) -> str:
    """A reason safe for a text column: no NUL or control characters (PostgreSQL refuses NUL; a
    reason may quote the publisher's bytes), cut to ``limit``."""
    return text.translate(_UNSTORABLE)[:limit]
