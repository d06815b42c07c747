"""Dates: the published and updated moments of an entry, only when plausible.

Owns which dates are believed: between 1970 and a day after ``now`` (``latest_plausible``), in
feedparser's parsed form, and only when the text the publisher wrote names a moment that can
exist (``first_date`` skips, and reports, a Feb 30, an hour 25 or an offset beyond ±14:00, which
feedparser would silently normalize the way mktime does).

Pure: no clock unless the caller leaves out ``now``; no network, no ORM.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from feedparser import FeedParserDict

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
PUBLISHED_KEYS = ("published_parsed", "updated_parsed", "created_parsed")
_FUTURE_SLACK = timedelta(days=1)


def latest_plausible(now: datetime | None) -> datetime:
    """The latest moment a feed's date may name: a day past ``now`` (clock skew, time zones)."""
    return (now or datetime.now(timezone.utc)) + _FUTURE_SLACK


def first_date(
    entry: FeedParserDict, keys: tuple[str, ...], latest: datetime, impossible: list[str] | None = None
) -> datetime | None:
    """The first of ``keys`` holding a date between 1970 and ``latest``, as an aware UTC datetime.

    A date whose own text cannot exist is skipped and appended to ``impossible``: feedparser
    normalizes out-of-range fields the way mktime does (Feb 30 becomes Mar 2, year 10000 becomes
    2010, an offset of +99:99 moves the time by four days), so the parsed value alone would be
    stored as if the publisher had written it.
    """
    for key in keys:
        value = dict.get(entry, key)
        if not value:
            continue
        raw = dict.get(entry, key.removesuffix("_parsed")) or ""
        if raw and not _possible_date(raw, latest):
            if impossible is not None:
                impossible.append(raw)
            continue
        try:
            # feedparser normalizes to UTC; a leap second (60) is not a valid datetime second.
            moment = datetime(*value[:5], min(value[5], 59), tzinfo=timezone.utc)
        except (TypeError, ValueError, OverflowError):
            continue
        if _EPOCH <= moment <= latest:
            return moment
    return None


_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
# The two date shapes feeds use (RFC 822 and ISO 8601 / W3C-DTF), read field by field; a date in
# any other shape is left to feedparser's judgement.
_ISO_DATE = re.compile(
    r"^\s*(\d{4,})-(\d{1,2})-(\d{1,2})(?:[Tt ](\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,]\d+)?)?"
    r"\s*(?:[Zz]|([+-])(\d{2}):?(\d{2}))?\s*$"
)
_RFC822_DATE = re.compile(
    r"^\s*(?:[A-Za-z]{2,9},?\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\.?\s+(\d{2,})"
    r"(?:\s+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?\s*(?:([+-])(\d{2}):?(\d{2})|[A-Za-z]{1,5})?\s*$"
)
_MAX_OFFSET_MINUTES = 14 * 60  # UTC+14:00 (Kiribati) and UTC-12:00 bound every real zone


def _possible_date(raw: str, latest: datetime) -> bool:
    """False when ``raw`` names a moment that cannot exist: a day not in its month, an hour or
    minute out of range, a year outside 1970..``latest``, an offset beyond ±14:00."""
    if match := _ISO_DATE.match(raw):
        year, month, day, hour, minute, second, sign, off_h, off_m = match.groups()
    elif (match := _RFC822_DATE.match(raw)) and match.group(2).lower() in _MONTHS:
        day, month_name, year, hour, minute, second, sign, off_h, off_m = match.groups()
        month = _MONTHS[month_name.lower()]
        if len(year) == 2:  # RFC 822's two-digit years, as feedparser reads them
            year = str(int(year) + (1900 if int(year) > 90 else 2000))
    else:
        return True
    try:
        # A leap second (60) is a real second; datetime() checks everything else.
        datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), min(int(second or 0), 59))
    except (ValueError, OverflowError):
        return False
    if not 1970 <= int(year) <= latest.year:
        return False
    return not (sign and (int(off_m) >= 60 or int(off_h) * 60 + int(off_m) > _MAX_OFFSET_MINUTES))
