"""Ingest benchmarks: first ingest of a corpus beside the ``reader`` library, re-ingest, and scale.

    python -m bench.ingest --corpus ../shared/corpus/real-feeds --repeat 3 \
        --postgres-url postgres://postgres@127.0.0.1:5432/bench --parts ingest,reingest
    python -m bench.ingest --parts scale --scale-feeds 200,2000,10000 --scale-reader-max 2000

Serves every file of ``--corpus`` over 127.0.0.1 (``bench.server``, in this process), then for each
repetition, each in a fresh child process with a fresh database:

* ``first``: ``feeds_ingest(force=True, workers=N)`` on an empty database (sources registered
  beforehand with ``source_add``), on SQLite and on PostgreSQL: wall time, CPU seconds (user+sys of
  the child's whole process tree: the parse pool's workers included, see ``harness.TreeCPU``),
  entries per second, every statement sent, peak RSS (the child's own, and its whole tree);
* ``reader``: the ``reader`` library (``make_reader``, ``add_feed``, ``update_feeds_iter(workers=N,
  scheduled=False)``) on the same feeds from the same server, into a fresh SQLite file; it
  sanitizes HTML with feedparser's sanitizer (its default);
* ``product_threads``: the product with ``INGEST_PARSE_PROCESSES=0`` (parse in the fetch threads),
  to show what the process pool is worth;
* ``product_feedparser``: the product with ``INGEST_PARSER=feedparser`` (the parse path without
  the fast lxml one); its stored-data fingerprint is compared with the default run's;
* ``product_1core`` / ``reader_1core``: the product and reader pinned to CPU 0 (``taskset -c 0``,
  inherited by the parse processes): the single-core ratio;
* ``reingest_304`` / ``reingest_hash``: the same feeds again into the database of a first ingest, as
  a scheduled run once every source has come due (``--due``; a forced run parses every 200 again),
  with the server answering 304 to conditional requests, then ignoring them (200 with the same
  body). Every statement is counted, and writes per table, with an execute wrapper; entry writes
  must be 0. reader re-ingests its own first database the same two ways (``scheduled=False``: reader
  would otherwise skip feeds it updated a moment ago).

``scale`` (not on the corpus): ``bench.generate`` corpora of ``--scale-feeds`` feeds of
``--scale-entries`` entries each, first ingest and re-ingest with the same bodies, on SQLite; the
product at every size, reader up to ``--scale-reader-max`` feeds: time, CPU seconds and
statements per feed, and each size's time per feed beside the smallest size's.

Prints one JSON object; ``bench.run`` folds it into docs/benchmarks.md. Must not: change the
product's settings other than through a child's environment, or measure in the parent process.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

from bench.harness import (
    WORK,
    TreeCPU,
    TreeRSS,
    WriteCounter,
    child_run,
    clone,
    current_rss_mb,
    drop_database,
    emit,
    fresh_database,
    ratio,
    rss_report,
    spread,
)

MODULE = "bench.ingest"
READER_FILES = ("", "-wal", "-shm", ".search", ".search-wal", ".search-shm")  # reader's database and its search index
ONE_CORE = {0}
# Product contenders on the corpus: name -> (child environment, cores). The default parse path is "product".
VARIANTS = {
    "product": ({}, None),
    "product_threads": ({"INGEST_PARSE_PROCESSES": "0"}, None),
    "product_feedparser": ({"INGEST_PARSER": "feedparser"}, None),
    "product_1core": ({}, ONE_CORE),
}


# --- children -----------------------------------------------------------------------------------


def child_prepare(args) -> dict:
    """Migrate a fresh database and register the sources: the template every repetition copies."""
    from bench.common import django_setup, migrate

    django_setup(args.db)
    from ingest.services.sources import source_add

    migrate()
    urls = Path(args.urls_file).read_text().split()
    for url in urls:
        source_add(url=url)
    return {"sources": len(urls)}


def child_product(args) -> dict:
    from bench.common import django_setup

    django_setup(args.db)
    from django.conf import settings
    from django.db import connection

    from ingest.models import Entry
    from ingest.services.ingest import feeds_ingest

    connection.ensure_connection()
    if args.due:
        # A re-ingest is a scheduled run of sources that have come due: forced runs parse every 200
        # again by design (--all), so only a scheduled one shows the stored body digests at work.
        from django.utils import timezone

        from ingest.models import TechnicalArticle

        TechnicalArticle.objects.update(next_fetch_at=timezone.now())
    counter = WriteCounter()
    gc.collect()
    before = current_rss_mb()
    with connection.execute_wrapper(counter), TreeRSS() as tree, TreeCPU() as cpu:
        start = time.perf_counter()
        report = feeds_ingest(force=not args.due, workers=args.workers)
        wall = time.perf_counter() - start
    totals = report.totals
    failed = [f"{r.url.rsplit('/', 1)[-1]}: {r.error}" for r in report.results if r.outcome == "failed"]
    reasons: dict[str, int] = {}
    for r in report.results:
        reason = getattr(r.value, "reason", "") if r.outcome == "not_modified" else ""
        if reason:  # why, when the product says: a 304, or the same body as last time
            reasons[str(reason)] = reasons.get(str(reason), 0) + 1
    return {
        "wall_s": round(wall, 4),
        **cpu.report,
        "entries_created": totals["created"],
        "entries_updated": totals["updated"],
        "entries_unchanged": totals["unchanged"],
        "not_modified": totals["not_modified"],
        "not_modified_reasons": reasons,
        "sources": totals["sources"],
        "failed": totals["failed"],
        "failed_examples": failed[:5],
        "entries_in_db": Entry.objects.count(),
        "fingerprint": None if args.no_fingerprint else fingerprint(),
        "parser_setting": getattr(settings, "INGEST_PARSER", None),
        "cores": sorted(os.sched_getaffinity(0)),
        "rss_before_mb": before,
        **rss_report(tree),
        **counter.report(),
    }


def stored_rows() -> list[list[tuple]]:
    """What an ingest stored that does not depend on the clock or on ids: entries (by content hash),
    their authors, outbound links and pingbacks, each as a sorted list of tuples."""
    from ingest.models import Entry, EntryLink, Pingback

    queries = [
        Entry.objects.values_list("technical_article__feed_url", "guid", "content_hash", "link_key", "number_of_comments",
                                  "number_of_pingbacks"),
        Entry.authors.through.objects.values_list("entry__technical_article__feed_url", "entry__guid", "author__name", "author__email"),
        EntryLink.objects.values_list("entry__technical_article__feed_url", "entry__guid", "link_key"),
        Pingback.objects.values_list("source_url", "target__technical_article__feed_url", "target__guid", "source_entry__guid"),
    ]
    return [sorted(query.iterator(chunk_size=5000), key=repr) for query in queries]


def fingerprint() -> str:
    """Equal fingerprints: the same data was stored (sorted in Python: collations differ by backend)."""
    import hashlib

    return hashlib.sha256(repr(stored_rows()).encode()).hexdigest()[:16]


def child_reader(args) -> dict:
    """reader on the feeds (added when new): every feed updated, scheduled or not."""
    from reader import make_reader

    reader = make_reader(args.db)
    for url in Path(args.urls_file).read_text().split():
        reader.add_feed(url, exist_ok=True)
    gc.collect()
    before = current_rss_mb()
    errors: list[str] = []
    new = modified = unchanged = not_modified = 0
    with TreeRSS() as tree, TreeCPU() as cpu:
        start = time.perf_counter()
        for result in reader.update_feeds_iter(workers=args.workers, scheduled=False):
            if result.error is not None:
                errors.append(f"{result.url.rsplit('/', 1)[-1]}: {type(result.error.__cause__ or result.error).__name__}")
            elif result.value is None:
                not_modified += 1
            else:
                new += result.value.new
                modified += result.value.modified
                unchanged += getattr(result.value, "unmodified", 0)
        wall = time.perf_counter() - start
    counts = reader.get_entry_counts()
    reader.close()
    return {
        "wall_s": round(wall, 4),
        **cpu.report,
        "entries_in_db": counts.total,
        "entries_created": new,
        "entries_updated": modified,
        "entries_unchanged": unchanged,
        "not_modified": not_modified,
        "failed": len(errors),
        "failed_examples": errors[:5],
        "cores": sorted(os.sched_getaffinity(0)),
        "rss_before_mb": before,
        **rss_report(tree),
    }


CHILDREN = {"prepare": child_prepare, "product": child_product, "reader": child_reader}


# --- parent -------------------------------------------------------------------------------------


def summarize(runs: list[dict], entries_key: str = "entries_in_db") -> dict:
    walls = [r["wall_s"] for r in runs]
    out = {"wall_s": spread(walls)}
    if "cpu_s" in runs[0]:
        out["cpu_s"] = spread([r["cpu_s"] for r in runs], 3)
        out["cpu_children_s"] = spread([r["cpu_children_s"] for r in runs], 3)
        out["cpu_unreaped_s"] = max(r["cpu_unreaped_s"] for r in runs)
        out["process_cpu_s"] = spread([r.get("process_cpu_s", 0) for r in runs], 3)
    entries = runs[0].get(entries_key, 0)
    out["entries"] = entries
    out["entries_per_s"] = round(entries / out["wall_s"]["median"], 1) if out["wall_s"]["median"] else None
    out["entries_per_cpu_s"] = round(entries / out["cpu_s"]["median"], 1) if out.get("cpu_s", {}).get("median") else None
    for key in ("peak_rss_mb", "peak_tree_rss_mb", "peak_rss_child_mb", "rss_before_mb"):
        if key in runs[0]:
            out[key] = spread([r[key] for r in runs], 1)
    for key in ("failed", "failed_examples", "sources", "entries_created", "entry_writes", "bookkeeping_writes", "writes_by_table",
                "not_modified", "not_modified_reasons", "entries_unchanged", "entries_updated", "statements", "statements_by_kind",
                "parser_setting", "cores"):
        if key in runs[-1]:
            out[key] = runs[-1][key]
    if "statements" in runs[-1] and runs[-1].get("sources"):
        out["statements_per_source"] = round(runs[-1]["statements"] / runs[-1]["sources"], 2)
    if "entry_writes" in runs[0]:
        out["entry_writes_max"] = max(r["entry_writes"] for r in runs)
    if runs[0].get("fingerprint"):
        out["fingerprints"] = sorted({r["fingerprint"] for r in runs})
    return out


def _reader_reset(path: Path) -> None:
    for suffix in READER_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _median(summary: dict | None, key: str = "wall_s"):
    return (summary or {}).get(key, {}).get("median")


def corpus_measure(args, server, results: dict) -> None:
    """The first-ingest and re-ingest contenders on the served corpus, interleaved across repetitions."""
    parts = set(args.parts.split(","))
    backends = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    urls = server.urls()
    urls_file = WORK / "ingest-urls.txt"
    urls_file.write_text("\n".join(urls) + "\n")
    results["feeds"] = len(urls)
    results["corpus_mb"] = round(sum(len(b) for b, _, _ in server._bodies.values()) / 1e6, 1)
    common = ["--urls-file", str(urls_file), "--workers", str(args.workers)]

    templates = {}
    for backend in backends:
        template = fresh_database(backend, "bench_ingest_template", args.postgres_url)
        child_run(MODULE, ["--child", "prepare", "--db", template, *common], log="ingest")
        templates[backend] = template

    skip = {"product_threads": args.no_threads_variant, "product_feedparser": args.no_parser_variant, "product_1core": args.no_one_core}
    variants = [(backend, "product") for backend in backends] + [("sqlite", name) for name in VARIANTS if name != "product" and not skip[name]]
    runs: dict[str, list[dict]] = {}
    reingest: dict[str, list[dict]] = {}
    reader_db = WORK / "bench-reader.sqlite"
    readers = [] if args.no_reader or "ingest" not in parts else [("reader_sqlite", None)] + ([] if args.no_one_core else [("reader_1core_sqlite", ONE_CORE)])
    for _ in range(args.repeat):
        # Interleaved (A B C, A B C, ...) so that a noisy minute hurts every contender alike.
        for backend, name in variants:
            env, cores = VARIANTS[name]
            server.mode = "conditional"
            db = clone(templates[backend], backend, f"bench_ingest_{backend}")
            key = f"{name}_{backend}"
            runs.setdefault(key, []).append(
                child_run(MODULE, ["--child", "product", "--db", db, *common], env=env, cores=cores, log="ingest"))
            if "reingest" in parts and name == "product":
                for mode, label in (("conditional", "reingest_304"), ("ignore", "reingest_hash")):
                    server.mode = mode
                    reingest.setdefault(f"{label}_{backend}", []).append(
                        child_run(MODULE, ["--child", "product", "--db", db, "--due", *common], log="ingest"))
                server.mode = "conditional"
            drop_database(db)
        for key, cores in readers:
            server.mode = "conditional"
            _reader_reset(reader_db)
            runs.setdefault(key, []).append(
                child_run(MODULE, ["--child", "reader", "--db", str(reader_db), *common], cores=cores, log="ingest"))
            if "reingest" in parts and cores is None:
                for mode, label in (("conditional", "reader_reingest_304"), ("ignore", "reader_reingest_hash")):
                    server.mode = mode
                    reingest.setdefault(f"{label}_sqlite", []).append(
                        child_run(MODULE, ["--child", "reader", "--db", str(reader_db), *common], log="ingest"))
                server.mode = "conditional"
    _reader_reset(reader_db)
    if args.profile:
        from bench.profile import profile_child

        db = clone(templates["sqlite"], "sqlite", "bench_ingest_profile")
        _, results["profile"] = profile_child(MODULE, ["--child", "product", "--db", db, *common], anchor="source_store.<locals>.write")
        drop_database(db)
    for template in templates.values():
        drop_database(template)

    first = {key: summarize(value) for key, value in runs.items()}
    if "ingest" in parts:
        reader, reader_1core = first.get("reader_sqlite"), first.get("reader_1core_sqlite")
        for key, value in first.items():
            if key.startswith("reader"):
                continue
            versus = reader_1core if key.startswith("product_1core") else reader
            if versus:
                value["speedup_vs_reader"] = ratio(_median(versus), _median(value))
                value["cpu_vs_reader"] = ratio(_median(versus, "cpu_s"), _median(value, "cpu_s"))
                # Per entry stored, in case the two do not keep the same entries (reader drops bozo feeds).
                value["entries_per_s_vs_reader"] = ratio(value["entries_per_s"], versus["entries_per_s"])
                value["entries_per_cpu_s_vs_reader"] = ratio(value["entries_per_cpu_s"], versus["entries_per_cpu_s"])
        default_parser = [key for key in first if key.startswith("product") and not key.startswith("product_feedparser")]
        stored = {f for key in default_parser for f in first[key].get("fingerprints", [])}
        # Every run of the default parse path, on every database, stored the same data.
        results["same_data"] = len(stored) == 1
        if "product_feedparser_sqlite" in first:
            results["parser_same_data"] = set(first["product_feedparser_sqlite"].get("fingerprints", [])) == stored
            results["parser_setting"] = first["product_feedparser_sqlite"].get("parser_setting")
        product = first.get("product_sqlite", {})
        if "product_threads_sqlite" in first:
            product["speedup_vs_threads"] = ratio(_median(first["product_threads_sqlite"]), _median(product))
        if "product_postgres" in first:
            first["product_postgres"]["vs_sqlite"] = ratio(_median(first["product_postgres"]), _median(product))
        results["first"] = first
    if "reingest" in parts:
        again = {key: summarize(value, "entries_unchanged") for key, value in reingest.items()}
        for key, value in again.items():
            backend = key.rsplit("_", 1)[-1]
            own_first = first.get("reader_sqlite" if key.startswith("reader") else f"product_{backend}")
            value["vs_first"] = ratio(_median(own_first), _median(value))
            value["cpu_vs_first"] = ratio(_median(own_first, "cpu_s"), _median(value, "cpu_s"))
            if not key.startswith("reader"):
                versus = again.get("reader_" + key.rsplit("_", 1)[0] + "_sqlite")  # reader keeps SQLite only
                if versus:
                    value["speedup_vs_reader"] = ratio(_median(versus), _median(value))
                    value["cpu_vs_reader"] = ratio(_median(versus, "cpu_s"), _median(value, "cpu_s"))
        results["reingest"] = again


def scale_measure(args, results: dict) -> None:
    """Generated corpora of growing size: the product (and reader, while small) first and again."""
    from bench.generate import corpus_write
    from bench.server import CorpusServer

    sizes = [int(n) for n in args.scale_feeds.split(",") if n.strip()]
    rows: dict[str, dict] = {}
    reader_db = WORK / "bench-reader-scale.sqlite"
    for feeds in sizes:
        folder = WORK / f"corpus-scale-{feeds}x{args.scale_entries}"
        if len(list(folder.glob("feed-*.xml"))) != feeds:  # deterministic: a folder already written is reused
            corpus_write(folder, feeds=feeds, entries_per_feed=args.scale_entries)
        row: dict = {"feeds": feeds, "entries_per_feed": args.scale_entries}
        with CorpusServer(folder) as server:
            urls_file = WORK / f"scale-urls-{feeds}.txt"
            urls_file.write_text("\n".join(server.urls()) + "\n")
            row["corpus_mb"] = round(sum(len(b) for b, _, _ in server._bodies.values()) / 1e6, 1)
            common = ["--urls-file", str(urls_file), "--workers", str(args.workers), "--no-fingerprint"]
            template = fresh_database("sqlite", "bench_scale_template", None)
            started = time.perf_counter()
            child_run(MODULE, ["--child", "prepare", "--db", template, *common], log="scale")
            row["prepare_s"] = round(time.perf_counter() - started, 1)
            runs: dict[str, list[dict]] = {}
            for _ in range(args.repeat):
                db = clone(template, "sqlite", "bench_scale_sqlite")
                server.mode = "conditional"
                runs.setdefault("product_first", []).append(child_run(MODULE, ["--child", "product", "--db", db, *common], log="scale"))
                server.mode = "ignore"  # the same bodies again, answered 200
                runs.setdefault("product_again", []).append(child_run(MODULE, ["--child", "product", "--db", db, "--due", *common], log="scale"))
                drop_database(db)
                if not args.no_reader and feeds <= args.scale_reader_max:
                    _reader_reset(reader_db)
                    server.mode = "conditional"
                    runs.setdefault("reader_first", []).append(
                        child_run(MODULE, ["--child", "reader", "--db", str(reader_db), *common], log="scale"))
                    server.mode = "ignore"
                    runs.setdefault("reader_again", []).append(
                        child_run(MODULE, ["--child", "reader", "--db", str(reader_db), *common], log="scale"))
            _reader_reset(reader_db)
            drop_database(template)
        for key, value in runs.items():
            summary = summarize(value, "entries_in_db" if key.endswith("first") else "entries_unchanged")
            summary["ms_per_feed"] = round(1000 * summary["wall_s"]["median"] / feeds, 3)
            summary["cpu_ms_per_feed"] = round(1000 * summary["cpu_s"]["median"] / feeds, 3)
            row[key] = summary
        for phase in ("first", "again"):
            if f"reader_{phase}" in row:
                row[f"product_{phase}"]["speedup_vs_reader"] = ratio(_median(row[f"reader_{phase}"]), _median(row[f"product_{phase}"]))
                row[f"product_{phase}"]["cpu_vs_reader"] = ratio(_median(row[f"reader_{phase}"], "cpu_s"),
                                                                 _median(row[f"product_{phase}"], "cpu_s"))
        rows[str(feeds)] = row
    smallest = rows[str(min(sizes))]
    for row in rows.values():
        for phase in ("first", "again"):
            base, mine = smallest[f"product_{phase}"]["ms_per_feed"], row[f"product_{phase}"]["ms_per_feed"]
            row[f"product_{phase}"]["per_feed_vs_smallest"] = round(mine / base, 2) if base else None
    results["scale"] = {"sizes": sizes, "entries_per_feed": args.scale_entries, "reader_max": args.scale_reader_max,
                        "smallest": min(sizes), "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=False, type=Path, default=Path("../shared/corpus/real-feeds"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="fetch threads, for the product and for reader")
    parser.add_argument("--postgres-url", default=None, help="also measure PostgreSQL (databases bench_ingest_*)")
    parser.add_argument("--parts", default="ingest,reingest", help="among ingest, reingest (on --corpus) and scale (generated)")
    parser.add_argument("--no-reader", action="store_true")
    parser.add_argument("--no-threads-variant", action="store_true", help="skip the INGEST_PARSE_PROCESSES=0 variant")
    parser.add_argument("--no-parser-variant", action="store_true", help="skip the INGEST_PARSER=feedparser variant")
    parser.add_argument("--no-one-core", action="store_true", help="skip the product and reader pinned to one core")
    parser.add_argument("--scale-feeds", default="200,2000,10000", help="comma-separated corpus sizes (feeds) of the scale part")
    parser.add_argument("--scale-entries", type=int, default=3, help="entries per generated feed in the scale part")
    parser.add_argument("--scale-reader-max", type=int, default=2000, help="largest size reader runs at in the scale part")
    parser.add_argument("--profile", action="store_true", help="also profile one product run (SQLite) with py-spy")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--db")
    parser.add_argument("--urls-file")
    parser.add_argument("--no-fingerprint", action="store_true", help="(child) skip the stored-data fingerprint")
    parser.add_argument("--due", action="store_true", help="(child) a scheduled run of every source, made due, not a forced one")
    args = parser.parse_args(argv)
    if args.child:
        return emit(CHILDREN[args.child](args))

    from bench.server import CorpusServer

    parts = set(args.parts.split(","))
    results: dict = {"workers": args.workers, "repeat": args.repeat,
                     "backends": ["sqlite"] + (["postgres"] if args.postgres_url else [])}
    WORK.mkdir(parents=True, exist_ok=True)
    if parts & {"ingest", "reingest"}:
        results["corpus"] = str(args.corpus)
        with CorpusServer(args.corpus) as server:
            corpus_measure(args, server, results)
    if "scale" in parts:
        scale_measure(args, results)
    return emit(results)


if __name__ == "__main__":
    main()
