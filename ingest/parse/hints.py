"""A feed's own word on how often to fetch it: RSS ``<ttl>``, ``<sy:updatePeriod>`` /
``<sy:updateFrequency>`` (the RSS 1.0 syndication module) and RSS ``<skipHours>`` / ``<skipDays>``.

feedparser exposes ``ttl`` and ``sy_*`` as text; of ``<skipHours>`` and ``<skipDays>`` it keeps only
the last ``<hour>`` / ``<day>``, so those two are read from the bytes: only the channel's head
(before the first ``<item``, at most ``_HEAD_MAX`` bytes), with bounded patterns, never parsed as
XML a second time. Anything malformed is no hint. Pure: ``ingest.schedule`` weighs the result.
"""

from __future__ import annotations

import re

from feedparser import FeedParserDict

from ingest.types import FeedHints

_HEAD_MAX = 64 * 1024  # where channel elements are looked for; an item ends the channel's head earlier
_TTL_MAX_MINUTES = 10**7  # about 19 years: beyond it a value is noise, and the bounds cap it anyway
_FREQUENCY_MAX = 10**6
PERIODS = ("hourly", "daily", "weekly", "monthly", "yearly")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_ITEM = re.compile(rb"<item[\s>/]", re.IGNORECASE)
_SKIP_HOURS = re.compile(rb"<skipHours\b[^>]{0,200}>(.{0,2000}?)</skipHours\s*>", re.IGNORECASE | re.DOTALL)
_SKIP_DAYS = re.compile(rb"<skipDays\b[^>]{0,200}>(.{0,2000}?)</skipDays\s*>", re.IGNORECASE | re.DOTALL)
_HOUR = re.compile(rb"<hour\s*>\s*([0-9]{1,2})\s*</hour\s*>", re.IGNORECASE)
_DAY = re.compile(rb"<day\s*>\s*([A-Za-z]{3,9})\s*</day\s*>", re.IGNORECASE)
_WHOLE = re.compile(r"\s*([0-9]{1,10})\s*")


def feed_hints(feed: FeedParserDict, content: bytes) -> FeedHints:
    """The hints of one feed document (``feed``: feedparser's channel; ``content``: its bytes)."""
    ttl = _whole(dict.get(feed, "ttl"))
    period = str(dict.get(feed, "sy_updateperiod") or "").strip().lower()
    frequency = _whole(dict.get(feed, "sy_updatefrequency"))
    head = content[:_HEAD_MAX]
    item = _ITEM.search(head)
    if item:
        head = head[: item.start()]
    return FeedHints(
        ttl=ttl if ttl is not None and 0 < ttl <= _TTL_MAX_MINUTES else None,
        update_period=period if period in PERIODS else "",
        update_frequency=frequency if frequency is not None and 0 < frequency <= _FREQUENCY_MAX else 1,
        skip_hours=_skip_hours(head),
        skip_days=_skip_days(head),
    )


def _whole(value) -> int | None:
    match = _WHOLE.fullmatch(str(value)) if value is not None else None
    return int(match.group(1)) if match else None


def _skip_hours(head: bytes) -> tuple[int, ...]:
    block = _SKIP_HOURS.search(head)
    if not block:
        return ()
    # RSS 2.0 says 0-23; some publishers write 24 for midnight.
    hours = {int(h) % 24 for h in _HOUR.findall(block.group(1)) if int(h) <= 24}
    return tuple(sorted(hours)) if len(hours) < 24 else ()  # every hour skipped: a mistake, not a schedule


def _skip_days(head: bytes) -> tuple[int, ...]:
    block = _SKIP_DAYS.search(head)
    if not block:
        return ()
    days = {_DAYS.index(d.decode("ascii").lower()) for d in _DAY.findall(block.group(1))
            if d.decode("ascii").lower() in _DAYS}
    return tuple(sorted(days)) if len(days) < 7 else ()
