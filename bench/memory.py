"""Memory benchmark: peak RSS of ingesting one big feed, and of refusing one over the size cap.

    python -m bench.memory --big-mb 9 --over-mb 50 --repeat 3

Generates the feeds (``bench.generate.big_feed``), serves them on 127.0.0.1 and, each in a fresh
child process with a fresh SQLite database, runs ``feeds_ingest`` on exactly one source:

* ``baseline``: a feed of one entry (what the process costs before any big body);
* ``ingest_big``: a ``--big-mb`` feed (below ``INGEST_MAX_BYTES``, 10 MiB): stored;
* ``refuse_declared``: a ``--over-mb`` feed sent with its Content-Length: refused from the header;
* ``refuse_streamed``: the same feed sent chunked, without a length: the fetcher must stop
  reading at the cap. The server counts the body bytes it managed to write before the client
  hung up (the cap plus what the kernel's socket buffers took).

Reports the child's peak RSS (getrusage) and the peak of its whole process tree (a parse pool
included), each minus the baseline as well. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

from bench.harness import WORK, TreeRSS, child_run, current_rss_mb, drop_database, emit, fresh_database, rss_report, spread, sqlite_copy

MODULE = "bench.memory"


def child_prepare(args) -> dict:
    from bench.common import django_setup, migrate

    django_setup(args.db)
    migrate()
    return {"migrated": args.db}


def child_ingest(args) -> dict:
    """Ingest one source into a migrated database (migrating here would set the peak RSS itself)."""
    from bench.common import django_setup

    django_setup(args.db)
    from ingest.models import Entry
    from ingest.services.ingest import feeds_ingest
    from ingest.services.sources import source_add

    source_add(url=args.url)
    gc.collect()
    before = current_rss_mb()
    with TreeRSS(interval=0.02) as tree:
        start = time.perf_counter()
        report = feeds_ingest(force=True, workers=1)
        wall = time.perf_counter() - start
    result = report.results[0]
    return {"wall_s": round(wall, 4), "outcome": result.outcome, "error": result.error, "entries": Entry.objects.count(),
            "rss_before_mb": before, **rss_report(tree)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mb", type=float, default=9)
    parser.add_argument("--over-mb", type=float, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-bytes", type=int, default=None, help="INGEST_MAX_BYTES for the children (default: the product's)")
    parser.add_argument("--child", choices=("prepare", "ingest"))
    parser.add_argument("--db")
    parser.add_argument("--url")
    args = parser.parse_args(argv)
    if args.child:
        return emit(child_prepare(args) if args.child == "prepare" else child_ingest(args))

    from bench.generate import big_feed
    from bench.server import CorpusServer

    folder = WORK / "memory"
    feeds = {
        "baseline": big_feed(folder / "one.xml", 1),
        "big": big_feed(folder / f"big-{args.big_mb:g}mb.xml", int(args.big_mb * 1_000_000)),
        "over": big_feed(folder / f"over-{args.over_mb:g}mb.xml", int(args.over_mb * 1_000_000)),
    }
    env = {"INGEST_MAX_BYTES": str(args.max_bytes)} if args.max_bytes else {}
    results: dict = {"feeds": {name: {"mb": round(f["bytes"] / 1e6, 2), "entries": f["entries"]} for name, f in feeds.items()},
                     "repeat": args.repeat}
    cases = {"baseline": "/one.xml", "ingest_big": "/big.xml", "refuse_declared": "/over.xml", "refuse_streamed": "/over-stream.xml"}
    runs: dict[str, list[dict]] = {}
    sent: dict[str, list[int]] = {}
    with CorpusServer() as server:
        server.add("/one.xml", Path(feeds["baseline"]["path"]).read_bytes())
        server.add("/big.xml", Path(feeds["big"]["path"]).read_bytes())
        server.add("/over.xml", Path(feeds["over"]["path"]).read_bytes())
        server.add_stream("/over-stream.xml", Path(feeds["over"]["path"]))
        template = fresh_database("sqlite", "bench_memory_template", None)
        child_run(MODULE, ["--child", "prepare", "--db", template], log="memory")
        for _ in range(args.repeat):
            for case, route in cases.items():
                db = sqlite_copy(template, "bench_memory")
                before = server.sent(route)
                runs.setdefault(case, []).append(
                    child_run(MODULE, ["--child", "ingest", "--db", db, "--url", server.base_url + route], env=env, log="memory"))
                sent.setdefault(case, []).append(server.sent(route) - before)
                drop_database(db)
        drop_database(template)
    for feed in feeds.values():  # regenerated (identically) by the next run: do not keep 60 MB around
        Path(feed["path"]).unlink(missing_ok=True)
    cap = int(env.get("INGEST_MAX_BYTES") or os.environ.get("INGEST_MAX_BYTES") or 10 * 1024 * 1024)  # the product's default
    results["cap_mb"] = round(cap / 1e6, 2)
    base = {key: spread([r[key] for r in runs["baseline"]], 1)["median"] for key in ("peak_rss_mb", "peak_tree_rss_mb")}
    for case, reps in runs.items():
        out = {key: spread([r[key] for r in reps], 1) for key in ("peak_rss_mb", "peak_tree_rss_mb", "rss_before_mb")}
        out["wall_s"] = spread([r["wall_s"] for r in reps])
        out["peak_rss_over_baseline_mb"] = round(out["peak_rss_mb"]["median"] - base["peak_rss_mb"], 1)
        out["peak_tree_over_baseline_mb"] = round(out["peak_tree_rss_mb"]["median"] - base["peak_tree_rss_mb"], 1)
        out.update(outcome=reps[-1]["outcome"], error=reps[-1]["error"], entries=reps[-1]["entries"])
        out["server_sent_mb"] = round(max(sent[case]) / 1e6, 2)
        results[case] = out
    streamed = results["refuse_streamed"]
    results["stopped_at_cap"] = streamed["outcome"] == "failed" and streamed["server_sent_mb"] < results["feeds"]["over"]["mb"] * 0.8
    return emit(results)


if __name__ == "__main__":
    main()
