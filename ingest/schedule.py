"""When a source is fetched next after a successful fetch, and why: one pure function, ``next_fetch``.

The interval comes from, in order: the source's explicit ``fetch_interval`` (it always wins over
the cadence and the bounds); else its publishing cadence (``cadence_seconds``: the mean gap between
its recent entries, so a busy feed is polled often and a quiet one rarely); else the default
interval. The server's word on freshness then sets the earliest next fetch (unless the source's
``honour_server_hints`` is off): the response's ``Cache-Control: max-age`` less ``Age``, or
``Expires`` against ``Date`` (``no-cache`` / ``no-store``: no floor); the feed's RSS ``<ttl>`` and
``<sy:updatePeriod>`` / ``<sy:updateFrequency>``; the latest of them counts. Cadence, default and
hints are held within ``Bounds`` (``INGEST_MIN_INTERVAL`` .. ``INGEST_MAX_INTERVAL``): a
``max-age`` of a year does not silence a feed, ``max-age=0`` does not make it hot. A next fetch
that falls in the feed's ``<skipHours>`` / ``<skipDays>`` (UTC) moves to the first hour outside
them, never past the upper bound. Last, jitter: the delay grows by a random fraction of at most
``Bounds.jitter`` (only later, never earlier than any rule said), so sources added or backed off
together drift apart.

The reason is one short line for people ("max-age 2 h", "cadence 2.1 d, capped at
INGEST_MAX_INTERVAL 1 d; +4% jitter"), stored beside the next fetch. No Django, no clock, no
randomness of its own: ``now`` and ``rand`` come in, so every decision is a test with values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from ingest.types import SCHEDULE_REASON_MAX, FeedHints

CADENCE_ENTRIES = 20  # the newest dated entries the cadence is measured over
PERIOD_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400, "monthly": 30 * 86400, "yearly": 365 * 86400}
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_WHOLE = re.compile(r"\s*([0-9]{1,10})\s*")
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Bounds:
    """INGEST_MIN_INTERVAL, INGEST_MAX_INTERVAL (seconds) and INGEST_JITTER (a fraction, 0-1)."""

    min_interval: float
    max_interval: float
    jitter: float = 0.0


@dataclass(frozen=True)
class Decision:
    seconds: float  # from now to the next fetch, jitter included
    reason: str  # why, for people


def next_fetch(*, now: datetime, bounds: Bounds, default_interval: float, rand: Callable[[], float],
               fetch_interval: int | None = None, cadence: float | None = None,
               headers: Mapping[str, str] | None = None, hints: FeedHints = FeedHints(),
               honour_hints: bool = True, cadence_share: float = 1.0) -> Decision:
    """The next fetch after a successful one (200 or 304); see the module's docstring for the rules.
    ``rand`` returns a float in [0, 1) (``random.random``; tests pass a constant). ``cadence_share``:
    the interval as a share of the cadence (1: one fetch per mean gap; bench/politeness.py measures
    other shares)."""
    if fetch_interval:
        interval, why = float(fetch_interval), f"fetch_interval {span(fetch_interval)}"
    elif cadence:
        interval, why = bounded(cadence * cadence_share, bounds, f"cadence {span(cadence)}")
    else:
        interval, why = bounded(default_interval, bounds, f"default interval {span(default_interval)}")
    if honour_hints:
        for seconds, label in (http_freshness(headers or {}, now), feed_freshness(hints)):
            if seconds is not None and seconds > interval:
                floor, label = bounded(seconds, bounds, label)
                if floor > interval:
                    interval, why = floor, label
        if hints.skip_hours or hints.skip_days:
            target = now + timedelta(seconds=interval)
            allowed = skip_shift(target, hints, limit=max(now + timedelta(seconds=bounds.max_interval), target))
            if allowed > target:
                interval = (allowed - now).total_seconds()
                why += f"; {_skip_label(hints)} until {_DAY_NAMES[allowed.weekday()]} {allowed:%H:%M} UTC"
    else:
        why += "; server hints ignored (honour_server_hints off)"
    seconds, why = jittered(interval, bounds.jitter, rand, why)
    return Decision(seconds, why[:SCHEDULE_REASON_MAX])


def bounded(seconds: float, bounds: Bounds, label: str) -> tuple[float, str]:
    """``seconds`` within the bounds, and ``label`` saying so when it was moved."""
    if seconds > bounds.max_interval:
        return float(bounds.max_interval), f"{label}, capped at INGEST_MAX_INTERVAL {span(bounds.max_interval)}"
    if seconds < bounds.min_interval:
        return float(bounds.min_interval), f"{label}, raised to INGEST_MIN_INTERVAL {span(bounds.min_interval)}"
    return float(seconds), label


def jittered(seconds: float, jitter: float, rand: Callable[[], float], why: str = "") -> tuple[float, str]:
    """``seconds`` grown by ``jitter * rand()`` of itself: never shorter, at most ``jitter`` longer."""
    share = jitter * min(max(rand(), 0.0), 1.0)
    if share >= 0.005:
        why += f"; +{share:.0%} jitter"
    return seconds * (1 + share), why


def cadence_seconds(dates: Iterable[datetime | None], now: datetime) -> int | None:
    """A feed's publishing cadence: the span from the oldest of its newest ``CADENCE_ENTRIES``
    dated entries to ``now``, over their count (the mean gap between entries, the open one since
    the newest included, so a feed that falls silent slows down). None below two dated entries."""
    recent = sorted((d for d in dates if d is not None and d <= now), reverse=True)[:CADENCE_ENTRIES]
    if len(recent) < 2:
        return None
    return min(_INT_MAX, max(1, round((now - recent[-1]).total_seconds() / len(recent))))


def http_freshness(headers: Mapping[str, str], now: datetime) -> tuple[float | None, str]:
    """Seconds the response stays fresh by its headers (RFC 9111: ``max-age`` before ``Expires``,
    less ``Age``), and how that was read; None when they say nothing or forbid reuse."""
    headers = {name.lower(): value for name, value in headers.items()}
    directives = {}
    for part in headers.get("cache-control", "").split(",")[:64]:
        name, _, value = part.partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return None, ""
    age = _whole(headers.get("age")) or 0
    less_age = f" less Age {span(age)}" if age else ""
    max_age = _whole(directives.get("max-age"))
    if max_age is not None:
        return max(0, max_age - age), f"Cache-Control max-age {span(max_age)}{less_age}"
    expires = _http_date(headers.get("expires"))
    if expires is not None:
        date = _http_date(headers.get("date")) or now
        lifetime = (expires - date).total_seconds()
        return max(0.0, lifetime - age), f"Expires {span(max(0.0, lifetime))} after Date{less_age}"
    return None, ""


def feed_freshness(hints: FeedHints) -> tuple[float | None, str]:
    """Seconds the feed document asks to be left alone (RSS ``<ttl>``, the syndication module's
    period over its frequency): the longer of the two, and which it was."""
    found = []
    if hints.ttl:
        found.append((hints.ttl * 60.0, f"ttl {hints.ttl} min"))
    if hints.update_period in PERIOD_SECONDS:
        found.append((PERIOD_SECONDS[hints.update_period] / max(1, hints.update_frequency),
                      f"sy:updatePeriod {hints.update_period} x{hints.update_frequency}"))
    return max(found) if found else (None, "")


def skip_shift(moment: datetime, hints: FeedHints, *, limit: datetime) -> datetime:
    """``moment``, or the start of the first hour after it outside the feed's skipHours / skipDays
    (UTC), but never later than ``limit``."""
    moment = moment.astimezone(timezone.utc)
    for _ in range(24 * 8):
        if moment.hour not in hints.skip_hours and moment.weekday() not in hints.skip_days:
            return moment
        moment = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        if moment >= limit:
            return limit
    return moment


def hints_text(hints: FeedHints) -> str:
    """The hints as one short text (``TechnicalArticle.feed_hints``), so a 304 still has them."""
    parts = []
    if hints.ttl:
        parts.append(f"ttl={hints.ttl}")
    if hints.update_period:
        parts.append(f"sy={hints.update_period}/{hints.update_frequency}")
    if hints.skip_hours:
        parts.append("skipHours=" + ",".join(map(str, hints.skip_hours)))
    if hints.skip_days:
        parts.append("skipDays=" + ",".join(map(str, hints.skip_days)))
    return " ".join(parts)


def hints_from_text(text: str) -> FeedHints:
    """``hints_text`` read back; what it does not recognise is no hint."""
    values: dict = {}
    for part in (text or "").split():
        name, _, value = part.partition("=")
        try:
            if name == "ttl":
                values["ttl"] = int(value)
            elif name == "sy":
                period, _, frequency = value.partition("/")
                if period in PERIOD_SECONDS:
                    values.update(update_period=period, update_frequency=max(1, int(frequency or 1)))
            elif name == "skipHours":
                values["skip_hours"] = tuple(h for h in map(int, value.split(",")) if 0 <= h < 24)
            elif name == "skipDays":
                values["skip_days"] = tuple(d for d in map(int, value.split(",")) if 0 <= d < 7)
        except ValueError:
            continue
    return FeedHints(**values)


def span(seconds: float) -> str:
    """A duration for people: 45 s, 15 min, 2 h, 2.1 d."""
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}".removesuffix(".0") + " h"
    return f"{seconds / 86400:.1f}".removesuffix(".0") + " d"


def _skip_label(hints: FeedHints) -> str:
    return "/".join(name for name, on in (("skipHours", hints.skip_hours), ("skipDays", hints.skip_days)) if on)


def _whole(value: str | None) -> int | None:
    match = _WHOLE.fullmatch(value) if value is not None else None
    return int(match.group(1)) if match else None


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
