"""Small immutable values handed from one pipeline stage to the next, and the column widths.

Owns the shapes the stages exchange and the widths of the text columns those values are stored in
(``ingest.models`` declares its fields with these constants, ``ingest.parse`` and ``ingest.fetch``
cut or drop values to fit them), so that a width is written once.

No Django, no I/O, nothing from the rest of the app but ``ingest.errors``: every stage can be tested by building
these by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ingest.errors import BOT_WALL_PREFIX, SourceError

# --- column widths (characters) -------------------------------------------------------------------
KEY_LENGTH = 64  # hex digits of a SHA-256: every identity key, link key and content hash
SOURCE_NAME_MAX = 100  # TechnicalArticle.name
# TechnicalArticle.feed_url, Pingback.source_url: no longer in a unique key (the key columns are);
# kept at their old width, which every stored value already fits.
FEED_URL_MAX = 700
LINK_MAX = 2000  # Entry.link, Entry.comments_feed_url, TechnicalArticle.site_url: the widest URL column
GUID_MAX = 255  # Entry.guid, Comment.guid
HEADLINE_MAX = 255  # Entry.headline
AUTHOR_NAME_MAX = 200  # Author.name, Comment.author_name
EMAIL_MAX = 254  # Author.email, Comment.author_email (Django's EmailField default, RFC 5321's limit)
# Stored validators (TechnicalArticle, CommentFeed): a longer value is not kept at all, since a cut
# validator would never match and would only cost a full fetch.
ETAG_MAX = 255
LAST_MODIFIED_MAX = 64
LEASE_OWNER_MAX = 64  # TechnicalArticle.lease_owner, IngestRun.lease_owner
HOSTNAME_MAX = 255  # IngestRun.hostname
COMMAND_MAX = 40  # IngestRun.command
# Text columns have no width, but what is written to them is cut: a reason quotes publishers' bytes.
REASON_MAX = 2000  # last_error (TechnicalArticle, CommentFeed): a failure's reason, a parse warning
RUN_ERROR_MAX = 4000  # IngestRun.error
SCHEDULE_REASON_MAX = 200  # TechnicalArticle.schedule_reason: why the next fetch is when it is
ENCLOSURE_TYPE_MAX = 100  # Enclosure.type: a MIME type
FEED_HINTS_MAX = 200  # TechnicalArticle.feed_hints: ingest.schedule.hints_text of the last feed document
AUTH_USERNAME_MAX = 200  # TechnicalArticle.auth_username
AUTH_REFERENCE_MAX = 140  # TechnicalArticle.auth_secret: a reference (env:NAME, setting:KEY), never a value


@dataclass(frozen=True)
class FetchRequest:
    url: str
    etag: str = ""
    last_modified: str = ""
    # The source's resolved headers and credentials (ingest.fetch.credentials): redacted in repr,
    # left out of comparisons and pickles.
    credentials: Credentials = field(default_factory=lambda: NO_CREDENTIALS, repr=False, compare=False)


@dataclass(frozen=True)
class FetchResult:
    """A completed HTTP exchange that the pipeline should act on (200 or 304)."""

    url: str  # the URL finally fetched, after redirects
    status: int  # 200 or 304
    content: bytes  # decompressed body; b"" for 304
    headers: dict[str, str]  # final response headers, lower-cased names
    etag: str = ""
    last_modified: str = ""
    # Set when the chain contained only permanent redirects (301/308): the source's new URL.
    permanent_url: str | None = None

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(frozen=True)
class ParsedAuthor:
    name: str
    email: str = ""


@dataclass(frozen=True)
class ParsedEnclosure:
    """A file an entry points to (RSS <enclosure>, Atom rel="enclosure", media:content,
    media:thumbnail, a JSON Feed attachment). Stored, never fetched by the pipeline."""

    url: str  # absolute http(s) URL, at most LINK_MAX characters
    type: str = ""  # MIME type as the feed states it, at most ENCLOSURE_TYPE_MAX characters
    length: int | None = None  # bytes, as the feed states it; None when absent or not a number
    kind: str = "enclosure"  # "enclosure", "content" (media:content) or "thumbnail" (media:thumbnail)


@dataclass(frozen=True)
class ParsedEntry:
    guid: str  # stable identity within the feed, at most 255 characters
    headline: str  # plain text, at most 255 characters
    body_text: str  # sanitized HTML
    link: str  # absolute URL or ""
    published_at: datetime | None  # aware (UTC); None when missing or unparseable
    updated_at: datetime | None
    authors: tuple[ParsedAuthor, ...] = ()
    comments_feed_url: str = ""  # wfw:commentRss
    reported_comments: int | None = None  # slash:comments / thr:total
    content_hash: str = ""  # sha256 hex over every stored field of the entry
    # link_key of every http(s) link in the body except the entry's own: pingback candidates.
    # Derived from body_text and link, so not part of the hash; computed while parsing, which runs
    # in worker processes, to keep the writing thread free.
    link_keys: tuple[str, ...] = ()
    link_key: str = ""  # link_key(link), computed with the above for the same reason
    enclosures: tuple[ParsedEnclosure, ...] = ()  # in document order, duplicates (same url and kind) dropped


@dataclass(frozen=True)
class FeedHints:
    """What a feed document says about how often to fetch it (``ingest.schedule`` weighs it)."""

    ttl: int | None = None  # RSS <ttl>, minutes
    update_period: str = ""  # <sy:updatePeriod>: hourly, daily, weekly, monthly or yearly
    update_frequency: int = 1  # <sy:updateFrequency>: times per period
    skip_hours: tuple[int, ...] = ()  # RSS <skipHours>: hours 0-23 (UTC) not to fetch in
    skip_days: tuple[int, ...] = ()  # RSS <skipDays>: weekdays not to fetch on, 0 = Monday


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    site_url: str
    tagline: str
    entries: tuple[ParsedEntry, ...]
    warning: str = ""  # a recoverable parse problem (feedparser "bozo") worth recording
    hints: FeedHints = FeedHints()  # the feed's own word on its freshness (ttl, sy:*, skipHours/Days)
    # WebSub discovery (<link rel="hub">, <link rel="self">, RSS atom:link): absolute http(s) URLs or "".
    hub_url: str = ""
    self_url: str = ""
    # RFC 5005 history (<link rel="next"> of a paged feed, rel="prev-archive" of an archived one,
    # RSS atom:link too): absolute http(s) URLs or "". Followed only on a source's first fetch.
    next_url: str = ""
    prev_archive_url: str = ""
    # Not well-formed XML, read only once repaired (ingest.parse.recover); the warning says what was wrong.
    repaired: bool = False


# --- The plan of one feed's write (ingest.decide.entries_decide) ------------------------------


@dataclass(frozen=True)
class ExistingEntry:
    id: int
    content_hash: str
    published_at: datetime


@dataclass(frozen=True)
class Plan:
    new: tuple[ParsedEntry, ...]
    changed: tuple[tuple[ParsedEntry, ExistingEntry], ...]
    unchanged: int


@dataclass(frozen=True)
class UpsertCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # (entry id, parsed entry) of every created or updated entry: the input of pingback detection.
    touched: tuple[tuple[int, ParsedEntry], ...] = ()


@dataclass(frozen=True)
class ParsedComment:
    guid: str  # at most 255 characters
    author_name: str  # at most 200 characters
    author_email: str
    body: str  # sanitized HTML
    published_at: datetime | None


# --- What happened to one source or comment feed ---------------------------------------------
# A result's value is one of three: counts (it was fetched and stored, or previewed), not
# modified (a 304, or a 200 with the body stored last time), or a failure with its reason.
# ``ingest.decide`` turns results into totals and a run status; every path (the command, --json,
# the ledger, Celery, Azure) goes through it.


@dataclass(frozen=True)
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    pingbacks: int = 0  # cross-references recorded from or to this source's entries


# NotModified.reason of a 200 whose body is the one stored last time (``ingest.parse.digest``): not parsed.
SAME_BODY = "same body"


@dataclass(frozen=True)
class NotModified:
    reason: str = ""  # "" for a 304; SAME_BODY for a 200 with the body of the last successful store


@dataclass(frozen=True)
class Failure:
    error: str  # the reason shown to users, one sentence
    internal: bool = False  # something unexpected (a bug): counted apart, kept loud


@dataclass(frozen=True)
class Deferred:
    """Not fetched: its host's budget (ingest.services.hosts) stayed spent past the bounded wait, or
    the host is blocked by a Retry-After. Not a failure: no backoff, the lease is freed, a later run
    fetches it."""

    reason: str  # one sentence: which host, and why


Outcome = Counts | NotModified | Failure | Deferred


@dataclass(frozen=True, kw_only=True)
class _Result:
    value: Outcome

    @property
    def outcome(self) -> str:
        """created | updated | unchanged | not_modified | failed | deferred: the name reports use."""
        value = self.value
        if isinstance(value, Failure):
            return "failed"
        if isinstance(value, Deferred):
            return "deferred"
        if isinstance(value, NotModified):
            return "not_modified"
        return "created" if value.created else "updated" if value.updated else "unchanged"

    @property
    def failed(self) -> bool:
        return isinstance(self.value, Failure)

    @property
    def counts(self) -> Counts:
        return self.value if isinstance(self.value, Counts) else Counts()

    created = property(lambda self: self.counts.created)
    updated = property(lambda self: self.counts.updated)
    unchanged = property(lambda self: self.counts.unchanged)
    pingbacks = property(lambda self: self.counts.pingbacks)
    error = property(lambda self: self.value.error if isinstance(self.value, Failure) else "")
    internal_error = property(lambda self: isinstance(self.value, Failure) and self.value.internal)
    deferred = property(lambda self: isinstance(self.value, Deferred))
    deferred_reason = property(lambda self: self.value.reason if isinstance(self.value, Deferred) else "")
    # Blocked by the publisher's bot protection (ingest.errors.BotWall): a failure told apart.
    bot_wall = property(lambda self: isinstance(self.value, Failure) and self.value.error.startswith(BOT_WALL_PREFIX))
    # Not modified because its 200's body was the one stored last time (not parsed): told apart from a 304.
    same_body = property(lambda self: isinstance(self.value, NotModified) and self.value.reason == SAME_BODY)


@dataclass(frozen=True, kw_only=True)
class SourceResult(_Result):
    """What happened to one source in one run; the unit of reporting."""

    id: int
    url: str
    name: str = ""
    repaired: bool = False  # its document was not well-formed XML and was read once repaired

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "url": self.url,
            "name": self.name,
            "outcome": self.outcome,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "pingbacks": self.pingbacks,
            "error": self.error,
            "internal_error": self.internal_error,
            "deferred_reason": self.deferred_reason,
            "bot_wall": self.bot_wall,
            "repaired": self.repaired,
            "same_body": self.same_body,
        }


@dataclass(frozen=True, kw_only=True)
class CommentsResult(_Result):
    """What happened to one entry's comment feed in one run."""

    entry_id: int
    url: str = ""


# --- Work items handed between the claim, the fetch threads and the writer -------------------


@dataclass(frozen=True)
class CommentJob:
    """One entry's comment feed, due for a fetch."""

    entry_id: int
    url: str
    etag: str
    last_modified: str
    failures: int
    interval: int  # seconds until the next fetch on success (the source's interval)
    # The source's credentials (references) and feed URL: sent only to that URL's origin.
    auth: AuthSpec | None = None
    source_url: str = ""
    body_digest: str = ""  # CommentFeed.body_digest: of the body its last successful store parsed ("" to parse)


@dataclass(frozen=True)
class Fetched:
    """One source fetched and parsed (or failed) in a fetch thread, waiting for the writer."""

    source_id: int
    fetched_at: datetime
    result: FetchResult | None = None
    feed: ParsedFeed | None = None
    error: SourceError | None = None
    # A body a WebSub hub pushed (maybe only the new entries), not the feed document as polled.
    pushed: bool = False
    # ingest.parse.digest of a 200's body, stored with a successful write; "" for a 304 or a push.
    digest: str = ""
    same_body: bool = False  # the digest equals the stored one: not parsed, stored as not modified


@dataclass(frozen=True)
class CommentsFetched:
    job: CommentJob
    fetched_at: datetime
    result: FetchResult | None = None
    comments: tuple[ParsedComment, ...] = ()
    error: SourceError | None = None
    digest: str = ""  # as Fetched.digest
    same_body: bool = False  # as Fetched.same_body


# --- A source's credentials (ingest.fetch.credentials) -------------------------------------------


@dataclass(frozen=True)
class AuthSpec:
    """What a source says about its credentials: the scheme, the user name and references to
    secrets (``env:NAME``, ``setting:KEY``), never a secret's value, so safe to show and to log.

    ``headers``: the extra request headers, (name, value, is_reference) each: a literal value is
    sent as it is; a reference is resolved at request time, like ``secret``."""

    scheme: str = "none"  # none | basic | bearer
    username: str = ""
    secret: str = ""  # a reference, for basic and bearer
    headers: tuple[tuple[str, str, bool], ...] = ()

    @property
    def empty(self) -> bool:
        return self.scheme == "none" and not self.headers


class Credentials:
    """Resolved request headers of one source, its secrets among them: shown by no repr or str,
    left out of a pickle, compared by no ``==``.

    ``public`` headers (literal values) go with every request of the source; ``secret`` ones
    (Authorization, headers whose value is a reference) only to ``origin`` (scheme, host and
    port of the source's feed URL): ``ingest.fetch.transport`` drops them on a redirect to another
    origin, and a comment feed elsewhere never gets them.
    """

    __slots__ = ("origin", "_public", "_secret")

    def __init__(self, origin: str = "", public: tuple[tuple[str, str], ...] = (),
                 secret: tuple[tuple[str, str], ...] = ()) -> None:
        object.__setattr__(self, "origin", origin)  # a URL whose origin may receive the secret headers
        object.__setattr__(self, "_public", tuple(public))
        object.__setattr__(self, "_secret", tuple(secret))

    def __setattr__(self, name, value):
        raise AttributeError("Credentials are immutable")

    def headers(self, *, secret: bool) -> dict[str, str]:
        """The public headers, and the secret ones too when ``secret`` (same origin)."""
        return dict(self._public + (self._secret if secret else ()))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._public + self._secret)

    def __bool__(self) -> bool:
        return bool(self._public or self._secret)

    def __repr__(self) -> str:
        return f"Credentials(origin={self.origin!r}, headers={list(self.names)!r}, values redacted)"

    __str__ = __repr__

    def __reduce__(self):
        # A pickled request (a process pool, a task queue, a cache) carries no secret.
        return (Credentials, (self.origin, self._public, ()))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


NO_CREDENTIALS = Credentials()
