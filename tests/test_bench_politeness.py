"""bench/politeness.py keeps working: the simulated day at a small scale, both policies over the
same publishers. Deterministic (seeded), so its figures can be compared, not timed."""

import pytest

from bench.politeness import markdown, run

pytestmark = pytest.mark.nodb


def test_the_schedule_asks_less_of_publishers_than_the_fixed_interval_and_never_in_lockstep():
    result = run(n=200, hosts=20, seed=1)
    fixed, schedule = result["fixed"], result["schedule"]
    assert fixed["entries"] == schedule["entries"] > 0  # the same publishers for both
    assert fixed["requests"] == 200 * 48  # every 30 minutes, whatever the feed
    assert result["ratio_requests"] >= 3
    assert schedule["share_useful"] > fixed["share_useful"]
    # Added together, the fixed policy hits each host with all its sources in the same minute forever.
    assert fixed["requests_per_host_minute_max"] == 10 and schedule["requests_per_host_minute_max"] < 10
    assert "| share of 304s |" in markdown(result)
