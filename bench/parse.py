"""Parse levers: where the time of parsing a corpus goes, without HTTP or a database.

    python -m bench.parse --corpus ../shared/corpus/real-feeds --repeat 3

Each variant parses every feed file of ``--corpus`` (bodies read into memory first) in a fresh
child process:

* ``feedparser_sanitizing``: ``feedparser.parse`` with its sanitizer and relative-URI resolver on
  (feedparser's defaults, and what ``reader`` runs);
* ``feedparser_bare``: the same with both off: feedparser's own cost;
* ``product``: ``ingest.parse.parse_feed`` (feedparser bare + nh3 sanitizing + entry values and
  content hashes), in one process;
* ``product_pool``: the same in a ``ProcessPoolExecutor`` of one process per core (spawn start,
  as the product does), pool start-up and pickling the results back included.

So ``feedparser_sanitizing - feedparser_bare`` is what feedparser's sanitizer costs, ``product -
feedparser_bare`` what nh3 and the product's own work cost, and ``product / product_pool`` what a
process pool is worth on this machine. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

from bench.harness import child_run, emit, ratio, spread

MODULE = "bench.parse"
VARIANTS = ("feedparser_sanitizing", "feedparser_bare", "product", "product_pool")
HEADERS = {"content-type": "application/xml"}


def _bodies(corpus: Path) -> list[tuple[str, bytes]]:
    from bench.server import feed_files

    return [(path.name, path.read_bytes()) for path in feed_files(corpus)]


def _product_one(item: tuple[str, bytes]) -> int:
    from ingest.errors import ParseError
    from ingest.parse import parse_feed

    name, body = item
    try:
        return len(parse_feed(body, headers=HEADERS, url=f"http://127.0.0.1/{name}").entries)
    except ParseError:
        return 0


def child(args) -> dict:
    bodies = _bodies(args.corpus)
    entries = 0
    start = time.perf_counter()
    if args.variant.startswith("feedparser"):
        import feedparser

        on = args.variant == "feedparser_sanitizing"
        for name, body in bodies:
            parsed = feedparser.parse(io.BytesIO(body), response_headers={**HEADERS, "content-location": f"http://127.0.0.1/{name}"},
                                      sanitize_html=on, resolve_relative_uris=on)
            entries += len(parsed["entries"])
    elif args.variant == "product":
        entries = sum(_product_one(item) for item in bodies)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # Largest first, so that no big feed is left alone at the end.
            ordered = sorted(bodies, key=lambda item: -len(item[1]))
            entries = sum(pool.map(_product_one, ordered, chunksize=1))
    return {"wall_s": round(time.perf_counter() - start, 4), "entries": entries, "feeds": len(bodies)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("../shared/corpus/real-feeds"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--variant", choices=VARIANTS)
    args = parser.parse_args(argv)
    if args.child:
        return emit(child(args))
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for variant in VARIANTS:  # interleaved
            runs.setdefault(variant, []).append(
                child_run(MODULE, ["--child", "--variant", variant, "--corpus", str(args.corpus)], log="parse"))
    results: dict = {"corpus": str(args.corpus), "repeat": args.repeat, "cpus": os.cpu_count()}
    for variant, reps in runs.items():
        results[variant] = {"wall_s": spread([r["wall_s"] for r in reps]), "entries": reps[-1]["entries"], "feeds": reps[-1]["feeds"]}
    med = {variant: results[variant]["wall_s"]["median"] for variant in VARIANTS}
    results["sanitizer_share_of_feedparser"] = round(1 - med["feedparser_bare"] / med["feedparser_sanitizing"], 2)
    results["product_vs_feedparser_sanitizing"] = ratio(med["feedparser_sanitizing"], med["product"])
    results["pool_speedup"] = ratio(med["product"], med["product_pool"])
    results["pool_vs_feedparser_sanitizing"] = ratio(med["feedparser_sanitizing"], med["product_pool"])
    return emit(results)


if __name__ == "__main__":
    main()
