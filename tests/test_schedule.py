"""``ingest.schedule``: the next fetch after a success, and why (server hints, cadence, bounds,
skipHours / skipDays, jitter), over values built by hand; and the hints the parser reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ingest.decide import Policy, fetch_state
from ingest.errors import HTTPStatusError, SourceError
from ingest.parse.feed import parse_feed
from ingest.schedule import (
    Bounds, cadence_seconds, feed_freshness, hints_from_text, hints_text, http_freshness, next_fetch, skip_shift,
)
from ingest.types import FeedHints, FetchResult

pytestmark = pytest.mark.nodb

NOW = datetime(2026, 6, 3, 12, 0, tzinfo=UTC)  # a Wednesday
BOUNDS = Bounds(min_interval=300, max_interval=86400, jitter=0.0)
HOUR, DAY = 3600, 86400


def decide(**kwargs):
    options = {"now": NOW, "bounds": BOUNDS, "default_interval": 1800, "rand": lambda: 0.0, **kwargs}
    return next_fetch(**options)


def history(gap: timedelta, n: int = 20, *, silent: timedelta = timedelta(0)) -> list[datetime]:
    """``n`` entries ``gap`` apart, the newest ``silent`` (plus one gap) before NOW."""
    return [NOW - silent - gap * (i + 1) for i in range(n)]


# --- cadence --------------------------------------------------------------------------------


def test_the_cadence_is_the_mean_gap_between_recent_entries():
    assert cadence_seconds(history(timedelta(days=1)), NOW) == DAY
    assert cadence_seconds(history(timedelta(minutes=4)), NOW) == 240
    assert cadence_seconds(history(timedelta(days=30), n=6), NOW) == 30 * DAY


def test_a_feed_that_falls_silent_slows_down_and_old_history_beyond_20_entries_does_not_count():
    busy_then_silent = history(timedelta(hours=1), silent=timedelta(days=10))
    assert cadence_seconds(busy_then_silent, NOW) == pytest.approx((10 * DAY + 20 * HOUR) / 20, abs=1)
    recent_daily_after_years_of_hourly = history(timedelta(days=1)) + history(timedelta(hours=1), n=500,
                                                                               silent=timedelta(days=21))
    assert cadence_seconds(recent_daily_after_years_of_hourly, NOW) == DAY


def test_no_cadence_without_two_dated_entries_and_future_dates_do_not_count():
    assert cadence_seconds([], NOW) is None
    assert cadence_seconds([NOW - timedelta(days=1), None, None], NOW) is None
    assert cadence_seconds([NOW + timedelta(days=3), NOW - timedelta(hours=2)], NOW) is None


def test_a_monthly_feed_is_polled_daily_and_a_busy_one_every_few_minutes():
    monthly = decide(cadence=cadence_seconds(history(timedelta(days=30), n=10), NOW))
    assert monthly.seconds == DAY and monthly.reason == "cadence 30 d, capped at INGEST_MAX_INTERVAL 1 d"
    daily = decide(cadence=cadence_seconds(history(timedelta(hours=20)), NOW))
    assert daily.seconds == 20 * HOUR and daily.reason == "cadence 20 h"
    roomier = decide(cadence=cadence_seconds(history(timedelta(hours=50)), NOW), bounds=Bounds(300, 7 * DAY))
    assert roomier.seconds == 50 * HOUR and roomier.reason == "cadence 2.1 d"
    busy = decide(cadence=cadence_seconds(history(timedelta(minutes=6)), NOW))
    assert busy.seconds == 360 and busy.reason == "cadence 6 min"
    frantic = decide(cadence=cadence_seconds(history(timedelta(seconds=20)), NOW))
    assert frantic.seconds == 300 and frantic.reason == "cadence 20 s, raised to INGEST_MIN_INTERVAL 5 min"


def test_an_explicit_fetch_interval_wins_over_the_cadence_and_the_bounds():
    assert decide(fetch_interval=600, cadence=DAY).seconds == 600
    assert decide(fetch_interval=120, cadence=DAY).reason == "fetch_interval 2 min"
    assert decide(fetch_interval=7 * DAY, cadence=300).seconds == 7 * DAY


def test_without_cadence_or_hints_the_default_interval_counts_within_the_bounds():
    assert (decide().seconds, decide().reason) == (1800, "default interval 30 min")
    assert decide(default_interval=60).seconds == 300


# --- the server's word ------------------------------------------------------------------------


def test_cache_control_max_age_sets_the_earliest_next_fetch_less_its_age():
    assert decide(headers={"Cache-Control": "public, max-age=7200"}) == decide(
        headers={"cache-control": "max-age=7200"})
    hinted = decide(headers={"cache-control": "public, max-age=7200"}, cadence=600)
    assert (hinted.seconds, hinted.reason) == (7200, "Cache-Control max-age 2 h")
    aged = decide(headers={"cache-control": "max-age=7200", "age": "3600"}, cadence=600)
    assert (aged.seconds, aged.reason) == (3600, "Cache-Control max-age 2 h less Age 60 min")


def test_a_max_age_of_a_year_is_capped_and_max_age_0_does_not_make_a_feed_hot():
    year = decide(headers={"cache-control": "max-age=31536000"})
    assert (year.seconds, year.reason) == (DAY, "Cache-Control max-age 365 d, capped at INGEST_MAX_INTERVAL 1 d")
    assert decide(headers={"cache-control": "max-age=0"}).seconds == 1800  # the default, not every run
    assert decide(headers={"cache-control": "max-age=0"}, cadence=10).seconds == 300


def test_a_hint_shorter_than_the_cadence_does_not_make_the_feed_hotter():
    slow = decide(headers={"cache-control": "max-age=600"}, cadence=6 * HOUR)
    assert (slow.seconds, slow.reason) == (6 * HOUR, "cadence 6 h")


def test_expires_counts_against_date_and_no_cache_or_no_store_say_nothing():
    date = "Wed, 03 Jun 2026 09:00:00 GMT"  # the server's clock is 3 h behind ours: Expires - Date counts
    assert http_freshness({"date": date, "expires": "Wed, 03 Jun 2026 13:00:00 GMT"}, NOW) == (
        4 * HOUR, "Expires 4 h after Date")
    assert http_freshness({"expires": "Wed, 03 Jun 2026 13:00:00 GMT"}, NOW)[0] == HOUR  # no Date: our clock
    assert http_freshness({"expires": "0"}, NOW) == (None, "")  # an invalid Expires: already stale
    assert http_freshness({"cache-control": "max-age=60", "expires": "Wed, 03 Jun 2027 13:00:00 GMT"}, NOW)[0] == 60
    for directive in ("no-cache", "no-store", "private, no-cache, max-age=9000"):
        assert http_freshness({"cache-control": directive, "expires": "Wed, 03 Jun 2027 13:00:00 GMT"}, NOW) == (None, "")
    assert http_freshness({"cache-control": "max-age=banana"}, NOW) == (None, "")


def test_ttl_and_the_syndication_module_count_the_longer_of_them():
    assert feed_freshness(FeedHints(ttl=180)) == (180 * 60, "ttl 180 min")
    assert feed_freshness(FeedHints(update_period="daily", update_frequency=2)) == (12 * HOUR, "sy:updatePeriod daily x2")
    assert feed_freshness(FeedHints(ttl=60, update_period="hourly"))[0] == HOUR
    assert decide(hints=FeedHints(ttl=180), cadence=600).reason == "ttl 180 min"
    both = decide(hints=FeedHints(ttl=180), headers={"cache-control": "max-age=36000"}, cadence=600)
    assert (both.seconds, both.reason) == (10 * HOUR, "Cache-Control max-age 10 h")


def test_the_per_source_switch_ignores_every_hint():
    ignored = decide(headers={"cache-control": "max-age=36000"}, hints=FeedHints(ttl=180, skip_hours=(12, 13)),
                     cadence=600, honour_hints=False)
    assert (ignored.seconds, ignored.reason) == (600, "cadence 10 min; server hints ignored (honour_server_hints off)")


def test_skip_hours_and_days_move_the_next_fetch_past_them_in_utc_never_past_the_upper_bound():
    night = decide(hints=FeedHints(skip_hours=(12, 13, 14)), cadence=1800)  # 12:30 falls in the skipped hours
    assert NOW + timedelta(seconds=night.seconds) == datetime(2026, 6, 3, 15, 0, tzinfo=UTC)
    assert night.reason == "cadence 30 min; skipHours until Wed 15:00 UTC"
    weekend = decide(hints=FeedHints(skip_days=(2, 3)), cadence=1800)  # Wednesday, Thursday
    assert (weekend.seconds, weekend.reason) == (DAY, "cadence 30 min; skipDays until Thu 12:00 UTC")
    assert decide(hints=FeedHints(skip_hours=(0, 1)), cadence=1800).seconds == 1800  # 12:30 is allowed
    limit = NOW + timedelta(hours=2)
    assert skip_shift(NOW, FeedHints(skip_hours=tuple(range(12, 20))), limit=limit) == limit


# --- jitter ---------------------------------------------------------------------------------


def test_jitter_only_ever_delays_by_at_most_its_fraction_and_says_so():
    spread = Bounds(300, 86400, jitter=0.1)
    low = decide(bounds=spread, cadence=HOUR, rand=lambda: 0.0)
    high = decide(bounds=spread, cadence=HOUR, rand=lambda: 0.999)
    assert low.seconds == HOUR and high.seconds == pytest.approx(HOUR * 1.0999)
    assert high.reason == "cadence 60 min; +10% jitter"
    capped = decide(bounds=spread, headers={"cache-control": "max-age=31536000"}, rand=lambda: 0.5)
    assert capped.seconds == pytest.approx(DAY * 1.05)


def test_sources_fetched_together_drift_apart():
    import random

    rng = random.Random(7)
    spread = Bounds(300, 86400, jitter=0.1)
    times = {round(decide(bounds=spread, cadence=HOUR, rand=rng.random).seconds, 3) for _ in range(100)}
    assert len(times) == 100 and min(times) >= HOUR and max(times) <= HOUR * 1.1


def test_the_backoff_is_jittered_and_says_why():
    policy = Policy(default_interval=1800, backoff_base=300, max_backoff=86400, jitter=0.1)
    state = fetch_state(now=NOW, interval=None, failures=2, policy=policy, error=SourceError("HTTP 500"),
                        rand=lambda: 0.5, reason=True)
    assert state["next_fetch_at"] == NOW + timedelta(seconds=1200 * 1.05)
    assert state["schedule_reason"] == "backoff 20 min after 3 failures; +5% jitter"
    throttled = fetch_state(now=NOW, interval=None, failures=0, policy=policy, rand=lambda: 0.0, reason=True,
                            error=HTTPStatusError("429", status=429, retry_after=7200))
    assert throttled["schedule_reason"] == "Retry-After 2 h" and throttled["next_fetch_at"] == NOW + timedelta(hours=2)
    comment_feed = fetch_state(now=NOW, interval=60, failures=0, policy=Policy(1800, 300, 86400, min_interval=300),
                               result=FetchResult(url="u", status=304, content=b"", headers={}))
    assert comment_feed["next_fetch_at"] == NOW + timedelta(seconds=300) and "schedule_reason" not in comment_feed


# --- the hints as parsed and stored -----------------------------------------------------------

RSS = """<?xml version="1.0"?>
<rss version="2.0" xmlns:sy="http://purl.org/rss/1.0/modules/syndication/"><channel><title>t</title>
<ttl>{ttl}</ttl><sy:updatePeriod>daily</sy:updatePeriod><sy:updateFrequency>4</sy:updateFrequency>
<skipHours><hour>0</hour><hour>1</hour> <hour>24</hour><hour>99</hour></skipHours>
<skipDays><day>Saturday</day><day>sunday</day><day>Caturday</day></skipDays>
<item><title>a</title><guid>x</guid><description>&lt;skipHours&gt;&lt;hour&gt;5&lt;/hour&gt;</description></item>
</channel></rss>"""


def test_the_parser_reads_ttl_sy_and_skip_hours_and_days_from_the_channel():
    hints = parse_feed(RSS.format(ttl="180").encode(), now=NOW).hints
    assert hints == FeedHints(ttl=180, update_period="daily", update_frequency=4, skip_hours=(0, 1), skip_days=(5, 6))
    assert parse_feed(RSS.format(ttl="soon").encode(), now=NOW).hints.ttl is None


def test_skip_hours_after_the_first_item_or_in_an_atom_feed_are_no_hint():
    late = b"<rss version='2.0'><channel><title>t</title><item><guid>a</guid></item>" \
           b"<skipHours><hour>3</hour></skipHours></channel></rss>"
    assert parse_feed(late, now=NOW).hints == FeedHints()
    atom = b"<feed xmlns='http://www.w3.org/2005/Atom'><title>t</title><entry><id>a</id><title>x</title></entry></feed>"
    assert parse_feed(atom, now=NOW).hints == FeedHints()


def test_every_hour_skipped_is_a_mistake_not_a_schedule():
    hours = "".join(f"<hour>{h}</hour>" for h in range(24))
    doc = f"<rss version='2.0'><channel><title>t</title><skipHours>{hours}</skipHours></channel></rss>".encode()
    assert parse_feed(doc, now=NOW).hints.skip_hours == ()


def test_the_stored_text_reads_back_as_the_same_hints():
    hints = FeedHints(ttl=180, update_period="weekly", update_frequency=3, skip_hours=(0, 23), skip_days=(6,))
    assert hints_text(hints) == "ttl=180 sy=weekly/3 skipHours=0,23 skipDays=6"
    assert hints_from_text(hints_text(hints)) == hints
    assert hints_from_text("") == FeedHints() == hints_from_text("ttl=x sy=fortnightly/2 skipHours=a,b junk")
