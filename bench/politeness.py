"""A simulated day of polling: the scheduling policy (``ingest.schedule.next_fetch``) against
today's fixed interval, side by side over the same synthetic publishers, in one run.

This simulates at the level of the pure policy function, not through ``ingest_feeds``: a simulated
clock (a scheduler tick every ``TICK`` seconds, as cron or beat would start runs), 1,000 sources on
20 hosts, each source a publisher posting at random (exponential gaps) with one of five cadences,
each host with its own caching headers (none, ``max-age`` of 5 min / 1 h / a year / 0, ``Expires``,
``no-cache`` without validators, RSS ``<ttl>``, ``sy:updatePeriod``, ``<skipHours>``). A fetch is
instantaneous: a 304 when the host has validators and nothing was published since the last 200,
else a 200 carrying the newest 20 entries. No HTTP, no database, no per-host budget (that is the
fetcher's, not the policy's): what is measured is what the policy asks of publishers and how late
it sees their entries. One warm-up day (not counted) so both policies start from their steady
state, then the measured day, then a tail in which entries of the measured day can still arrive.

    python -m bench.politeness [--sources 1000] [--hosts 20] [--seed 1] [--cadence-share 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import random
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.schedule import Bounds, cadence_seconds, next_fetch  # noqa: E402
from ingest.types import FeedHints  # noqa: E402

DAY, HOUR = 86400, 3600
TICK = 60  # seconds between scheduler runs (a cron line every minute)
WINDOW = 20  # entries a feed document carries
FIXED_INTERVAL = 1800  # INGEST_DEFAULT_INTERVAL: today's policy for every source
BOUNDS = Bounds(min_interval=300, max_interval=DAY, jitter=0.1)  # the new settings' defaults
EPOCH = datetime(2026, 6, 1, tzinfo=UTC)
# (share of sources, mean seconds between posts)
CADENCES = ((0.05, 600), (0.15, HOUR), (0.40, DAY), (0.25, 7 * DAY), (0.15, 30 * DAY))
# One profile per host, in order (hosts beyond the list repeat it): headers, feed hints, validators.
PROFILES = (
    *[("no caching headers", {}, FeedHints(), True)] * 6,
    *[("max-age=300", {"cache-control": "max-age=300"}, FeedHints(), True)] * 3,
    *[("max-age=3600", {"cache-control": "max-age=3600"}, FeedHints(), True)] * 3,
    ("Expires +2 h", {"expires": "+7200"}, FeedHints(), True),
    *[("ttl 60", {}, FeedHints(ttl=60), True)] * 2,
    ("sy hourly x2", {}, FeedHints(update_period="hourly", update_frequency=2), True),
    ("skipHours 0-5", {}, FeedHints(skip_hours=(0, 1, 2, 3, 4, 5)), True),
    ("max-age=31536000", {"cache-control": "max-age=31536000"}, FeedHints(), True),
    ("no-cache, no validators", {"cache-control": "no-cache"}, FeedHints(), False),
    ("max-age=0", {"cache-control": "max-age=0"}, FeedHints(), True),
)


@dataclass
class Source:
    host: int
    posts: list[float]  # publication times, seconds since EPOCH, sorted
    last_content: int = -1  # how many posts the last 200 carried up to (the ETag)
    ingested: int = 0  # posts[:ingested] are ingested (or lost out of the window)
    cadence: float | None = None  # stored by the new policy from its last 200
    arrival: dict[int, float] = field(default_factory=dict)  # post index -> ingestion time


def publishers(n: int, hosts: int, rng: random.Random, start: float, end: float) -> list[Source]:
    sources = []
    for i in range(n):
        mean = rng.choices([c for _, c in CADENCES], weights=[w for w, _ in CADENCES])[0]
        t, posts = start - 60 * DAY, []
        while True:
            t += rng.expovariate(1 / mean)
            if t > end:
                break
            posts.append(t)
        sources.append(Source(host=i % hosts, posts=posts))
    return sources


def headers_at(profile: dict, now: float) -> dict[str, str]:
    moment = EPOCH + timedelta(seconds=now)
    headers = {"date": format_datetime(moment, usegmt=True)}
    for name, value in profile.items():
        if name == "expires":
            value = format_datetime(moment + timedelta(seconds=int(value)), usegmt=True)
        headers[name] = value
    return headers


def simulate(policy: str, sources: list[Source], *, start: float, measured: tuple[float, float], end: float,
             seed: int, cadence_share: float = 1.0) -> dict:
    rng = random.Random(seed)
    queue = [(start, i) for i in range(len(sources))]  # every source due at the start, as if added together
    heapq.heapify(queue)
    per_host_hour: Counter = Counter()
    per_host_minute: Counter = Counter()
    statuses: Counter = Counter()
    useful = 0
    while queue:
        due, i = heapq.heappop(queue)
        now = math.ceil(due / TICK) * TICK  # the first scheduler tick at or after the due time
        if now >= end:
            continue
        source = sources[i]
        name, profile, hints, validators = PROFILES[source.host % len(PROFILES)]
        published = bisect.bisect_right(source.posts, now)
        status = 304 if validators and published == source.last_content else 200
        new = 0
        if status == 200:
            source.last_content = published
            window_start = max(0, published - WINDOW)
            for k in range(max(source.ingested, window_start), published):
                source.arrival[k] = now  # posts that fell out of the window before it are never seen
                new += 1
            source.ingested = published
        counted = measured[0] <= now < measured[1]
        if counted:
            statuses[status] += 1
            useful += bool(new)
            per_host_hour[source.host, int(now // HOUR)] += 1
            per_host_minute[source.host, int(now // 60)] += 1
        if policy == "fixed":
            wait = FIXED_INTERVAL
        else:
            if status == 200:
                dates = [EPOCH + timedelta(seconds=t) for t in source.posts[max(0, published - WINDOW):published]]
                source.cadence = cadence_seconds(dates, EPOCH + timedelta(seconds=now))
            wait = next_fetch(now=EPOCH + timedelta(seconds=now), bounds=BOUNDS, default_interval=FIXED_INTERVAL,
                              rand=rng.random, cadence=source.cadence, headers=headers_at(profile, now),
                              hints=hints, cadence_share=cadence_share).seconds
        heapq.heappush(queue, (now + wait, i))
    return _figures(sources, statuses, useful, per_host_hour, per_host_minute, measured, len({s.host for s in sources}))


def _figures(sources, statuses, useful, per_host_hour, per_host_minute, measured, hosts) -> dict:
    delays, lost = [], 0
    for source in sources:
        for k, t in enumerate(source.posts):
            if measured[0] <= t < measured[1]:
                if k in source.arrival:
                    delays.append(source.arrival[k] - t)
                else:
                    lost += 1
    requests = sum(statuses.values())
    hours = (measured[1] - measured[0]) / HOUR
    delays.sort()
    return {
        "requests": requests,
        "requests_per_host_hour_mean": round(requests / hosts / hours, 1),
        "requests_per_host_hour_max": max(per_host_hour.values(), default=0),
        "requests_per_host_minute_max": max(per_host_minute.values(), default=0),
        "share_304": round(statuses[304] / requests, 3) if requests else 0,
        "share_useful": round(useful / requests, 3) if requests else 0,
        "entries": len(delays) + lost,
        "entries_not_ingested": lost,
        "delay_median_min": round(statistics.median(delays) / 60, 1) if delays else None,
        "delay_p95_min": round(delays[int(0.95 * (len(delays) - 1))] / 60, 1) if delays else None,
    }


def run(*, n: int = 1000, hosts: int = 20, seed: int = 1, cadence_share: float = 1.0) -> dict:
    start, measured, end = -DAY, (0.0, float(DAY)), DAY + 1.2 * DAY
    results = {}
    for policy in ("fixed", "schedule"):
        sources = publishers(n, hosts, random.Random(seed), start, end)  # the same publishers for both
        results[policy] = simulate(policy, sources, start=start, measured=measured, end=end, seed=seed,
                                   cadence_share=cadence_share)
    results["ratio_requests"] = round(results["fixed"]["requests"] / max(1, results["schedule"]["requests"]), 2)
    return {"sources": n, "hosts": hosts, "seed": seed, "tick_s": TICK, "cadence_share": cadence_share, **results}


def markdown(result: dict) -> str:
    rows = [
        ("requests in the day", "requests"),
        ("requests per host per hour, mean", "requests_per_host_hour_mean"),
        ("requests per host per hour, busiest host-hour", "requests_per_host_hour_max"),
        ("requests per host in one minute, busiest", "requests_per_host_minute_max"),
        ("share of 304s", "share_304"),
        ("share of useful fetches (found new entries)", "share_useful"),
        ("entries published in the day", "entries"),
        ("of them never ingested (out of the feed's 20 before a fetch)", "entries_not_ingested"),
        ("publication → ingestion delay, median (min)", "delay_median_min"),
        ("publication → ingestion delay, p95 (min)", "delay_p95_min"),
    ]
    lines = ["| figure | fixed 30 min (today) | schedule (server hints, cadence, jitter) |", "|---|---|---|"]
    lines += [f"| {label} | {result['fixed'][key]} | {result['schedule'][key]} |" for label, key in rows]
    lines.append(f"\n{result['ratio_requests']}× fewer requests; {result['sources']} sources on {result['hosts']} hosts, "
                 f"seed {result['seed']}, a scheduler tick every {result['tick_s']} s.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cadence-share", type=float, default=1.0,
                        help="the interval as a share of the cadence (the product uses 1)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    result = run(n=args.sources, hosts=args.hosts, seed=args.seed, cadence_share=args.cadence_share)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
