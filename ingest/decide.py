"""The pure decisions of an ingest run, apart from the I/O that acts on them.

Which parsed entries are new, changed or unchanged (by content hash), what the fetch state of a
source or comment feed becomes after a fetch (success or failure, backoff, jitter; when a source
is due after a success is ``ingest.schedule``'s), and how results add up to the totals and the
status of a run.
Every path that reports a run (the command, ``--json``, the ``IngestRun`` ledger, the Celery
fan-out, the Azure runner) goes through ``tally`` and ``run_status``, so they cannot disagree.

No Django, no ORM, no network: everything here is a function of its arguments (the settings come
in as a ``Policy``), testable with values built by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta

from ingest.errors import BotWall, SourceError, storable
from ingest.identity import first_by_guid
from ingest.schedule import Bounds, Decision, bounded, jittered, span
from ingest.types import (
    ETAG_MAX, LAST_MODIFIED_MAX, REASON_MAX, SCHEDULE_REASON_MAX, CommentsResult, ExistingEntry, FetchResult, ParsedEntry,
    Plan, SourceResult,
)

# IngestRun.Status values (the models are not imported here).
SUCCEEDED, PARTIAL, FAILED = "succeeded", "partial", "failed"


@dataclass(frozen=True)
class Policy:
    """The scheduling settings a decision needs (INGEST_DEFAULT_INTERVAL, INGEST_BACKOFF_BASE,
    INGEST_MAX_BACKOFF; INGEST_MIN_INTERVAL, INGEST_MAX_INTERVAL, INGEST_JITTER; INGEST_BOT_WALL_BACKOFF),
    read once by the caller. Left out, the bounds do not bind and nothing is spread."""

    default_interval: int
    backoff_base: float
    max_backoff: float
    min_interval: int = 0
    max_interval: int = 10 * 365 * 86400
    jitter: float = 0.0
    bot_wall_backoff: float = 0.0

    @classmethod
    def from_settings(cls, settings) -> Policy:
        return cls(settings.INGEST_DEFAULT_INTERVAL, settings.INGEST_BACKOFF_BASE, settings.INGEST_MAX_BACKOFF,
                   settings.INGEST_MIN_INTERVAL, settings.INGEST_MAX_INTERVAL, settings.INGEST_JITTER,
                   bot_wall_backoff=settings.INGEST_BOT_WALL_BACKOFF)

    @property
    def bounds(self) -> Bounds:
        return Bounds(self.min_interval, self.max_interval, self.jitter)


def backoff_seconds(failures: int, retry_after: float | None, *, policy: Policy, transient: bool = True,
                    bot_wall: bool = False) -> float:
    """Exponential backoff after ``failures`` failures in a row, capped; never earlier than the
    server's Retry-After (itself capped). A failure that is not ``transient`` (retrying soon cannot
    help: a refused URL, data the database refuses) waits the longest backoff at once. A
    ``bot_wall`` (a challenge page of the publisher's bot protection) waits at least the bot-wall
    backoff, even past the longest one: knocking again soon only confirms the fetcher is a bot."""
    if not transient:
        return policy.max_backoff
    delay = min(policy.max_backoff, policy.backoff_base * 2 ** max(0, failures - 1))
    if retry_after:
        delay = max(delay, min(retry_after, policy.max_backoff))
    if bot_wall:
        delay = max(delay, policy.bot_wall_backoff)
    return delay


def fetch_state(*, now: datetime, interval: int | None, failures: int, policy: Policy,
                result: FetchResult | None = None, error: SourceError | None = None,
                decision: Decision | None = None, rand: Callable[[], float] | None = None,
                reason: bool = False) -> dict:
    """The fetch state of a source or comment feed after one fetch: the columns both share.

    ``failures`` is the count of failures in a row before this fetch; on success the validators of
    ``result`` are kept for the next conditional GET and the next fetch is ``decision``'s (a
    source: ``ingest.schedule.next_fetch``) or else one interval away, within the policy's bounds;
    on failure the count goes up by one and the next fetch is backed off. Both are spread by the
    policy's jitter with ``rand`` (none without it). ``reason``: add ``schedule_reason``, the why.
    """
    rand = rand or _no_spread
    if error is not None:
        failures += 1
        delay = backoff_seconds(failures, error.retry_after, policy=policy, transient=error.transient,
                                bot_wall=isinstance(error, BotWall))
        delay, why = jittered(delay, policy.jitter, rand, _backoff_reason(failures, error, delay, policy))
        state = {
            "last_fetched_at": now,
            "consecutive_failures": failures,
            "last_error": storable(str(error), REASON_MAX),
            "next_fetch_at": now + timedelta(seconds=delay),
        }
    else:
        assert result is not None
        if decision is None:
            seconds, why = bounded(interval or policy.default_interval, policy.bounds, "fixed interval")
            decision = Decision(*jittered(seconds, policy.jitter, rand, why))
        why = decision.reason
        state = {
            "etag": (result.etag or "")[:ETAG_MAX],
            "last_modified": (result.last_modified or "")[:LAST_MODIFIED_MAX],
            "last_fetched_at": now,
            "consecutive_failures": 0,
            "last_error": "",
            "next_fetch_at": now + timedelta(seconds=decision.seconds),
        }
    if reason:
        state["schedule_reason"] = why[:SCHEDULE_REASON_MAX]
    return state


def _no_spread() -> float:
    return 0.0


def _backoff_reason(failures: int, error: SourceError, delay: float, policy: Policy) -> str:
    if isinstance(error, BotWall):
        return f"backoff {span(delay)}: blocked by the publisher's bot protection"
    if not error.transient:
        return f"backoff {span(delay)}: retrying soon cannot help"
    if error.retry_after and delay > min(policy.max_backoff, policy.backoff_base * 2 ** (failures - 1)):
        return f"Retry-After {span(delay)}"
    return f"backoff {span(delay)} after {failures} failure{'s' if failures != 1 else ''}"


def entries_decide(entries: Iterable[ParsedEntry], existing: dict[str, ExistingEntry]) -> Plan:
    """Pure: which parsed entries are new, which changed (by content hash), how many are unchanged.

    ``existing`` is keyed by guid key; of several entries with one guid key only the first counts.
    """
    new: list[ParsedEntry] = []
    changed: list[tuple[ParsedEntry, ExistingEntry]] = []
    unchanged = 0
    for key, entry in first_by_guid(entries):
        current = existing.get(key)
        if current is None:
            new.append(entry)
        elif current.content_hash != entry.content_hash:
            changed.append((entry, current))
        else:
            unchanged += 1
    return Plan(tuple(new), tuple(changed), unchanged)



class _Sum:
    """Counters that add up field by field."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other):
        return type(self)(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class Totals(_Sum):
    """What a run's sources add up to (the ``totals`` of the report)."""

    sources: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    not_modified: int = 0
    failed: int = 0
    internal_errors: int = 0
    pingbacks: int = 0
    deferred: int = 0  # waited past the bound for their host's budget: not fetched, not failed
    bot_walls: int = 0  # of the failed: blocked by the publisher's bot protection
    same_body: int = 0  # of the not modified: a 200 with the body stored last time, not parsed


@dataclass(frozen=True)
class CommentTotals(_Sum):
    """What a run's comment feeds add up to (the ``comments`` of the report)."""

    feeds: int = 0
    created: int = 0
    updated: int = 0
    not_modified: int = 0
    failed: int = 0
    deferred: int = 0
    same_body: int = 0  # of the not modified: a 200 with the body stored last time, not parsed


def tally(results: Iterable[SourceResult]) -> Totals:
    totals = Totals()
    for r in results:
        totals += Totals(sources=1, created=r.created, updated=r.updated, unchanged=r.unchanged,
                         not_modified=int(r.outcome == "not_modified"), failed=int(r.failed),
                         internal_errors=int(r.internal_error), pingbacks=r.pingbacks, deferred=int(r.deferred),
                         bot_walls=int(r.bot_wall), same_body=int(r.same_body))
    return totals


def tally_comments(results: Iterable[CommentsResult]) -> CommentTotals:
    totals = CommentTotals()
    for r in results:
        totals += CommentTotals(feeds=1, created=r.created, updated=r.updated,
                                not_modified=int(r.outcome == "not_modified"), failed=int(r.failed),
                                deferred=int(r.deferred), same_body=int(r.same_body))
    return totals


def run_status(*, total: int, failed: int, lost: int = 0) -> str:
    """A run is ``failed`` when every one of its sources failed, ``partial`` when some failed or
    never reported (``lost``), else ``succeeded`` (a run with no source due succeeded)."""
    if failed and failed >= total and not lost:
        return FAILED
    return PARTIAL if failed or lost else SUCCEEDED


def host_block_seconds(error: SourceError | None, *, scope: str, policy: Policy) -> float | None:
    """How long a fetch's failure blocks its whole host (INGEST_RETRY_AFTER_SCOPE=host), or None.

    Only a 429 or 503 that came with a Retry-After does, and only in the ``host`` scope: by
    default one route's limit backs off that source alone and must not freeze a shared host. The
    wait is capped like a source's backoff (INGEST_MAX_BACKOFF)."""
    if scope != "host" or error is None or not error.retry_after or getattr(error, "status", None) not in (429, 503):
        return None
    return min(error.retry_after, policy.max_backoff)


@dataclass(frozen=True)
class DuplicateRow:
    """What the duplicates rule reads of one entry."""

    id: int
    source_id: int
    link_key: str
    ingested_at: datetime
    duplicate_of: int | None


def duplicates_resolve(rows: Iterable[DuplicateRow], *, new: Iterable[int] = (),
                       gone: Iterable[int] = ()) -> dict[int, int | None]:
    """What ``duplicate_of`` every row should hold (rows in ``gone``, about to be deleted, excluded).

    Rows with one non-empty link key form a group when they come from at least two sources. Its
    canonical entry is, in this order: the earliest (``ingested_at``, then id) of the rows the group
    already points at (a canonical stays one when another copy arrives); else the earliest of the
    rows not in ``new`` (the stored ones: a copy that arrives later never displaces them, whatever
    its fetch time); else the earliest of all. Every row of another source than the canonical's
    points at it (never a chain); the canonical and the rows of its own source (a feed that re-posts
    a link) point nowhere, as does every row outside a group.
    """
    gone, new = set(gone), set(new)
    groups: dict[str, list[DuplicateRow]] = {}
    wanted: dict[int, int | None] = {}
    for row in rows:
        if row.id in gone:
            continue
        wanted[row.id] = None
        if row.link_key:
            groups.setdefault(row.link_key, []).append(row)
    for group in groups.values():
        if len({row.source_id for row in group}) < 2:
            continue
        ids = {row.id for row in group}
        pointed = {row.duplicate_of for row in group} & ids
        candidates = ([row for row in group if row.id in pointed] or [row for row in group if row.id not in new]
                      or group)
        canonical = min(candidates, key=lambda row: (row.ingested_at, row.id))
        for row in group:
            if row.source_id != canonical.source_id:
                wanted[row.id] = canonical.id
    return wanted
