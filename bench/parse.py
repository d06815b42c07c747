"""Parse levers: where the time of parsing a corpus goes, without HTTP or a database.

    python -m bench.parse --corpus ../shared/corpus/real-feeds --repeat 3

Each variant parses every feed file of ``--corpus`` (bodies read into memory first) in a fresh
child process:

* ``feedparser_sanitizing``: ``feedparser.parse`` with its sanitizer and relative-URI resolver on
  (feedparser's defaults, and what ``reader`` runs);
* ``feedparser_bare``: the same with both off: feedparser's own cost;
* ``product``: ``ingest.parse.parse_feed`` (the fast path, else feedparser bare; + nh3 sanitizing + entry values and
  content hashes), in one process;
* ``product_pool``: the same in a ``ProcessPoolExecutor`` of one process per core (spawn start,
  as the product does), pool start-up and pickling the results back included;
* ``product_feedparser``: ``parse_feed`` with ``parser="feedparser"`` (``INGEST_PARSER=feedparser``):
  what ``product`` costs without the fast path;
* ``document_feedparser`` / ``document_fast``: only the reading of the document
  (``ingest.parse.document.feedparser_parse``), by feedparser alone or with the fast path
  (``ingest.parse.fast``) first: the part the fast path replaces, with the feeds it refuses read
  by feedparser as in the product;
* ``fastfeedparser``: the ``fastfeedparser`` package's ``parse`` (lxml, not feedparser-compatible
  in its results), as an outside yardstick; skipped when it is not installed (requirements-dev.txt).

So ``feedparser_sanitizing - feedparser_bare`` is what feedparser's sanitizer costs, ``product -
feedparser_bare`` what nh3 and the product's own work cost, ``product / product_pool`` what a
process pool is worth on this machine, and ``document_feedparser / document_fast`` the fast path's
speed-up (CPU seconds, ``cpu_s``, beside the wall time). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

from bench.harness import child_run, emit, ratio, spread

MODULE = "bench.parse"
VARIANTS = ("feedparser_sanitizing", "feedparser_bare", "product", "product_pool", "product_feedparser",
            "document_feedparser", "document_fast", "fastfeedparser")
HEADERS = {"content-type": "application/xml"}


def _bodies(corpus: Path) -> list[tuple[str, bytes]]:
    from bench.server import feed_files

    return [(path.name, path.read_bytes()) for path in feed_files(corpus)]


def _product_one(item: tuple[str, bytes], parser: str = "auto") -> int:
    from ingest.errors import ParseError
    from ingest.parse import parse_feed

    name, body = item
    try:
        return len(parse_feed(body, headers=HEADERS, url=f"http://127.0.0.1/{name}", parser=parser).entries)
    except ParseError:
        return 0


def _document_one(item: tuple[str, bytes], parser: str) -> int:
    from ingest.errors import ParseError
    from ingest.parse.document import feedparser_parse

    name, body = item
    try:
        return len(feedparser_parse(body, HEADERS, f"http://127.0.0.1/{name}", parser=parser)[0]["entries"])
    except ParseError:
        return 0


def _fastfeedparser_one(item: tuple[str, bytes]) -> int:
    import fastfeedparser

    try:
        return len(fastfeedparser.parse(item[1]).entries)
    except Exception:  # it raises ValueError and others on what it cannot read
        return 0


def child(args) -> dict:
    bodies = _bodies(args.corpus)
    entries = 0
    if args.variant == "fastfeedparser":
        try:
            import fastfeedparser  # noqa: F401
        except ImportError:
            return {"wall_s": None, "cpu_s": None, "entries": None, "feeds": len(bodies), "skipped": "not installed"}
    start = time.perf_counter()
    cpu = time.process_time()
    if args.variant.startswith("feedparser"):
        import feedparser

        on = args.variant == "feedparser_sanitizing"
        for name, body in bodies:
            parsed = feedparser.parse(io.BytesIO(body), response_headers={**HEADERS, "content-location": f"http://127.0.0.1/{name}"},
                                      sanitize_html=on, resolve_relative_uris=on)
            entries += len(parsed["entries"])
    elif args.variant == "product":
        entries = sum(_product_one(item) for item in bodies)
    elif args.variant == "product_feedparser":
        entries = sum(_product_one(item, "feedparser") for item in bodies)
    elif args.variant.startswith("document_"):
        parser = "auto" if args.variant == "document_fast" else "feedparser"
        entries = sum(_document_one(item, parser) for item in bodies)
    elif args.variant == "fastfeedparser":
        entries = sum(_fastfeedparser_one(item) for item in bodies)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        workers = os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            # Largest first, so that no big feed is left alone at the end.
            ordered = sorted(bodies, key=lambda item: -len(item[1]))
            entries = sum(pool.map(_product_one, ordered, chunksize=1))
    return {"wall_s": round(time.perf_counter() - start, 4), "cpu_s": round(time.process_time() - cpu, 4),
            "entries": entries, "feeds": len(bodies)}


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
        if reps[-1].get("skipped"):
            results[variant] = {"skipped": reps[-1]["skipped"]}
            continue
        results[variant] = {"wall_s": spread([r["wall_s"] for r in reps]), "cpu_s": spread([r["cpu_s"] for r in reps]),
                            "entries": reps[-1]["entries"], "feeds": reps[-1]["feeds"]}
    med = {variant: results[variant]["wall_s"]["median"] for variant in VARIANTS if "wall_s" in results[variant]}
    cpu = {variant: results[variant]["cpu_s"]["median"] for variant in VARIANTS if "cpu_s" in results[variant]}
    results["sanitizer_share_of_feedparser"] = round(1 - med["feedparser_bare"] / med["feedparser_sanitizing"], 2)
    results["product_vs_feedparser_sanitizing"] = ratio(med["feedparser_sanitizing"], med["product"])
    results["pool_speedup"] = ratio(med["product"], med["product_pool"])
    results["pool_vs_feedparser_sanitizing"] = ratio(med["feedparser_sanitizing"], med["product_pool"])
    results["fast_path_document_speedup_cpu"] = ratio(cpu["document_feedparser"], cpu["document_fast"])
    results["fast_path_product_speedup_cpu"] = ratio(cpu["product_feedparser"], cpu["product"])
    if "fastfeedparser" in cpu:
        results["fastfeedparser_vs_document_fast_cpu"] = ratio(cpu["document_fast"], cpu["fastfeedparser"])
    return emit(results)


if __name__ == "__main__":
    main()
