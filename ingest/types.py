"""Small immutable values handed from one pipeline stage to the next.

No Django, no I/O: every stage can be tested by building these by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class FetchRequest:
    url: str
    etag: str = ""
    last_modified: str = ""


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


@dataclass(frozen=True)
class ParsedFeed:
    title: str
    site_url: str
    tagline: str
    entries: tuple[ParsedEntry, ...]
    warning: str = ""  # a recoverable parse problem (feedparser "bozo") worth recording


@dataclass(frozen=True)
class SourceResult:
    """What happened to one source in one run; the unit of reporting."""

    id: int
    url: str
    outcome: str  # created | updated | unchanged | not_modified | failed
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str = ""
    name: str = ""
    pingbacks: int = 0  # cross-references recorded from or to this source's entries
    internal_error: bool = False  # failed on something unexpected (a bug): counted apart, kept loud

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
        }


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
