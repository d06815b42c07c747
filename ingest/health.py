"""A source's health, decided in one place (docs/health.md): the state a fetch outcome leaves, and
the state a reader sees once staleness is judged.

Two halves, so that a feed that breaks is reported once: ``health_after`` is what the one writer
of fetch state (``ingest.services.store``) stores after each fetch, in the same transaction, with
an event when it changes; ``health_effective`` is what every reader shows (the admin, the API,
``pipeline_status``, ``/healthz``): the stored state, except that an inactive source is ``gone``
and a healthy one past its ``health_stale_at`` is ``degraded``. ``ingest.selectors`` writes the
same rule as queries; a test holds the two together.

No Django, no ORM: a function of its arguments (the settings come in as a ``HealthRule``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ingest.errors import BlockedURL, BotWall, SourceError, SourceGone

# ingest.models.Health values (the models are not imported here), worst last.
HEALTHY, DEGRADED, FAILING, BLOCKED, GONE = "healthy", "degraded", "failing", "blocked", "gone"
STATES = (HEALTHY, DEGRADED, FAILING, BLOCKED, GONE)
# The states of an active source that is broken now: what pipeline_status's exit status counts.
BROKEN = (FAILING, BLOCKED)
# An HTTP refusal that names the fetcher, not the feed: trying again cannot pass it.
REFUSED_STATUSES = frozenset({401, 403})


@dataclass(frozen=True)
class HealthRule:
    """INGEST_HEALTH_FAILING_AFTER and INGEST_HEALTH_STALE_FACTOR, read once by the caller."""

    failing_after: int = 3
    stale_factor: float = 3.0

    @classmethod
    def from_settings(cls, settings) -> HealthRule:
        return cls(settings.INGEST_HEALTH_FAILING_AFTER, settings.INGEST_HEALTH_STALE_FACTOR)


@dataclass(frozen=True)
class Change:
    """A stored state that changed: from what, to what, and the one sentence why."""

    before: str
    after: str
    reason: str


def health_after(*, error: SourceError | None, failures: int, active: bool, rule: HealthRule) -> tuple[str, str]:
    """The stored state after one fetch outcome, and why.

    ``failures`` counts the failures in a row including this one (0 after a success); ``active``
    is the source's switch after the outcome (a 410 has just turned it off). In this order: an
    inactive source, or a 410, is ``gone``; a refused URL, a bot protection's challenge page or an
    HTTP 401/403 is ``blocked``; ``failing_after`` failures in a row or more are ``failing``;
    fewer are ``degraded``; a success is ``healthy``.
    """
    if not active or isinstance(error, SourceGone):
        return GONE, "the feed is gone (HTTP 410)" if isinstance(error, SourceGone) else "the source is deactivated"
    if error is None:
        return HEALTHY, "fetched successfully"
    if isinstance(error, (BlockedURL, BotWall)) or getattr(error, "status", None) in REFUSED_STATUSES:
        return BLOCKED, str(error)
    if failures >= rule.failing_after:
        return FAILING, f"{failures} failures in a row: {error}"
    return DEGRADED, f"{failures} failure{'s' if failures != 1 else ''} in a row: {error}"


def health_change(before: str, after: str, reason: str) -> Change | None:
    """The change to record, or None when the state stays (no write, no event)."""
    return None if before == after else Change(before, after, reason)


def stale_at(*, now: datetime, next_fetch_at: datetime, rule: HealthRule) -> datetime:
    """When a source fetched successfully ``now`` turns stale: ``stale_factor`` times the interval
    its schedule just chose (``next_fetch_at - now``: its own cadence, hints and bounds) after now."""
    interval = max(timedelta(0), next_fetch_at - now)
    return now + interval * rule.stale_factor


def health_effective(*, stored: str, active: bool, stale_since: datetime | None, now: datetime) -> str:
    """The state a reader sees: ``gone`` when inactive; ``degraded`` when stored ``healthy`` but
    not fetched successfully by ``stale_since`` (``health_stale_at``; none: never judged stale);
    otherwise the stored state."""
    if not active:
        return GONE
    if stored == HEALTHY and stale_since is not None and stale_since < now:
        return DEGRADED
    return stored
