"""What the HTML limits of ingest.parse (ingest/parse/html.py) cost a normal parse: the corpus parsed
with and without them.

    python -m bench.parse_guard --corpus ../shared/corpus/real-feeds --repeat 3

Each variant parses every feed file of ``--corpus`` (bodies read into memory first, as bench.parse
does) with ``ingest.parse.parse_feed`` in a fresh child process, one after the other, interleaved
across ``--repeat`` rounds:

* ``guarded``: the product as it is (bodies scanned before sanitizing, small ones only past a
  per-feed allowance);
* ``unguarded``: the same with the scan and the cuts taken out (a ``BodyGuard`` that passes every
  body through unchanged, given to ``parse_feed(guard=...)``): what parsing cost before the limits;
* ``scan_all``: every body scanned whatever its size: the scan's cost without the allowance.

Reported: CPU seconds and wall seconds of each (median, min-max); the guard's cost as the ratio of
the medians, the median of the per-round ratios and the ratio of the fastest runs; the time spent in
the guard itself within the guarded runs, as a share of the rest of the same run (``guard_share_pct``,
the steadiest figure on a shared machine); and how many feeds the limits cut (0 on a corpus of real
feeds). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.harness import child_run, emit, spread
from bench.parse import HEADERS, _bodies

MODULE = "bench.parse_guard"
VARIANTS = ("guarded", "unguarded", "scan_all")


def child(args) -> dict:
    from ingest.errors import ParseError
    from ingest.parse import parse_feed
    from ingest.parse.html import BodyGuard  # the HTML limits, handed to parse_feed(guard=...)

    guard_s = [0.0]

    class Unguarded(BodyGuard):
        __slots__ = ()

        def limit(self, html, guid):
            return html

        def limit_text(self, text, guid):
            return text

    class Timed(BodyGuard):
        __slots__ = ()

        def limit(self, html, guid):
            # Timed inside the run: a share of the same run's parse is immune to the machine's load,
            # which moves whole runs by more than the guard costs.
            started = time.perf_counter()
            try:
                return super().limit(html, guid)
            finally:
                guard_s[0] += time.perf_counter() - started

    def new_guard() -> BodyGuard:
        if args.variant == "unguarded":
            return Unguarded()
        return Timed(scan_from_tags=0) if args.variant == "scan_all" else Timed()
    bodies = _bodies(args.corpus)
    entries = cut = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for name, body in bodies:
        try:
            feed = parse_feed(body, headers=HEADERS, url=f"http://127.0.0.1/{name}", guard=new_guard())
        except ParseError:
            continue
        entries += len(feed.entries)
        cut += "cut short" in feed.warning
    wall = time.perf_counter() - wall
    return {"cpu_s": round(time.process_time() - cpu, 4), "wall_s": round(wall, 4), "guard_s": round(guard_s[0], 4),
            "guard_share_pct": round(100 * guard_s[0] / (wall - guard_s[0]), 2),
            "entries": entries, "feeds": len(bodies), "feeds_with_cuts": cut}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/real-feeds"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--variant", choices=VARIANTS)
    args = parser.parse_args(argv)
    if args.child:
        return emit(child(args))
    runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    loads = [round(os.getloadavg()[0], 2)]
    for _ in range(args.repeat):
        for variant in VARIANTS:  # interleaved, so that the machine's load falls on all alike
            runs[variant].append(child_run(MODULE, ["--child", "--variant", variant, "--corpus", str(args.corpus)],
                                           log="parse_guard"))
        loads.append(round(os.getloadavg()[0], 2))
    results: dict = {"corpus": str(args.corpus), "repeat": args.repeat, "cpus": os.cpu_count(), "load_1min": loads}
    for variant, reps in runs.items():
        results[variant] = {"cpu_s": spread([r["cpu_s"] for r in reps]), "wall_s": spread([r["wall_s"] for r in reps]),
                            "entries": reps[-1]["entries"], "feeds": reps[-1]["feeds"],
                            "feeds_with_cuts": max(r["feeds_with_cuts"] for r in reps)}
        if variant != "unguarded":
            results[variant]["guard_s"] = spread([r["guard_s"] for r in reps])
            results[variant]["guard_share_pct"] = spread([r["guard_share_pct"] for r in reps], digits=2)
    for variant in ("guarded", "scan_all"):
        for clock in ("cpu_s", "wall_s"):
            mine = [r[clock] for r in runs[variant]]
            base = [r[clock] for r in runs["unguarded"]]
            results[variant][f"cost_{clock[:-2]}_pct"] = {
                "of_medians": round(100 * (statistics.median(mine) / statistics.median(base) - 1), 2),
                "median_of_rounds": round(100 * (statistics.median(m / b for m, b in zip(mine, base)) - 1), 2),
                "of_fastest": round(100 * (min(mine) / min(base) - 1), 2),
            }
    return emit(results)


if __name__ == "__main__":
    main()
