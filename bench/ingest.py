"""Ingest benchmarks: first ingest of a corpus beside the ``reader`` library, and re-ingest.

    python -m bench.ingest --corpus ../shared/corpus/real-feeds --repeat 3 \
        --postgres-url postgres://postgres@127.0.0.1:5432/bench --parts ingest,reingest

Serves every file of ``--corpus`` over 127.0.0.1 (``bench.server``, in this process), then for each
repetition, each in a fresh child process with a fresh database:

* ``first``: ``feeds_ingest(force=True, workers=N)`` on an empty database (sources registered
  beforehand with ``source_add``), on SQLite and on PostgreSQL: wall time, entries per second,
  peak RSS (the child's own, and its whole process tree: the parse pool included);
* ``reader``: the ``reader`` library (``make_reader``, ``add_feed``, ``update_feeds(workers=N)``)
  on the same feeds from the same server, into a fresh SQLite file; it sanitizes HTML with
  feedparser's sanitizer (its default);
* ``product_threads``: the product with ``INGEST_PARSE_PROCESSES=0`` (parse in the fetch threads),
  to show what the process pool is worth;
* ``reingest_304`` / ``reingest_hash``: the same feeds again into the database of a first ingest,
  with the server answering 304 to conditional requests, then ignoring them (200 with the same
  body: the content-hash path). Database writes are counted per table with an execute wrapper;
  entry writes must be 0.

Prints one JSON object; ``bench.run`` folds it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

from bench.harness import (
    WORK,
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
    from django.db import connection

    from ingest.models import Entry
    from ingest.services.ingest import feeds_ingest

    connection.ensure_connection()
    counter = WriteCounter()
    gc.collect()
    before = current_rss_mb()
    with connection.execute_wrapper(counter), TreeRSS() as tree:
        start = time.perf_counter()
        report = feeds_ingest(force=True, workers=args.workers)
        wall = time.perf_counter() - start
    totals = report.totals
    failed = [f"{r.url.rsplit('/', 1)[-1]}: {r.error}" for r in report.results if r.outcome == "failed"]
    return {
        "wall_s": round(wall, 4),
        "entries_created": totals["created"],
        "entries_updated": totals["updated"],
        "entries_unchanged": totals["unchanged"],
        "not_modified": totals["not_modified"],
        "sources": totals["sources"],
        "failed": totals["failed"],
        "failed_examples": failed[:5],
        "entries_in_db": Entry.objects.count(),
        "fingerprint": fingerprint(),
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
    from reader import make_reader

    reader = make_reader(args.db)
    for url in Path(args.urls_file).read_text().split():
        reader.add_feed(url)
    gc.collect()
    before = current_rss_mb()
    errors: list[str] = []
    with TreeRSS() as tree:
        start = time.perf_counter()
        for result in reader.update_feeds_iter(workers=args.workers):
            if result.error is not None:
                errors.append(f"{result.url.rsplit('/', 1)[-1]}: {type(result.error.__cause__ or result.error).__name__}")
        wall = time.perf_counter() - start
    counts = reader.get_entry_counts()
    reader.close()
    return {
        "wall_s": round(wall, 4),
        "entries_in_db": counts.total,
        "failed": len(errors),
        "failed_examples": errors[:5],
        "rss_before_mb": before,
        **rss_report(tree),
    }


CHILDREN = {"prepare": child_prepare, "product": child_product, "reader": child_reader}


# --- parent -------------------------------------------------------------------------------------


def summarize(runs: list[dict], entries_key: str = "entries_in_db") -> dict:
    walls = [r["wall_s"] for r in runs]
    out = {"wall_s": spread(walls)}
    entries = runs[0].get(entries_key, 0)
    out["entries"] = entries
    out["entries_per_s"] = round(entries / out["wall_s"]["median"], 1) if out["wall_s"]["median"] else None
    for key in ("peak_rss_mb", "peak_tree_rss_mb", "peak_rss_child_mb", "rss_before_mb"):
        if key in runs[0]:
            out[key] = spread([r[key] for r in runs], 1)
    for key in ("failed", "failed_examples", "sources", "entries_created", "entry_writes",
                "bookkeeping_writes", "writes_by_table", "not_modified", "entries_unchanged", "entries_updated"):
        if key in runs[-1]:
            out[key] = runs[-1][key]
    if "entry_writes" in runs[0]:
        out["entry_writes_max"] = max(r["entry_writes"] for r in runs)
    if "fingerprint" in runs[0]:
        out["fingerprints"] = sorted({r["fingerprint"] for r in runs})
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", required=False, type=Path, default=Path("../shared/corpus/real-feeds"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4, help="fetch threads, for the product and for reader")
    parser.add_argument("--postgres-url", default=None, help="also measure PostgreSQL (databases bench_ingest_*)")
    parser.add_argument("--parts", default="ingest,reingest")
    parser.add_argument("--no-reader", action="store_true")
    parser.add_argument("--no-threads-variant", action="store_true", help="skip the INGEST_PARSE_PROCESSES=0 variant")
    parser.add_argument("--profile", action="store_true", help="also profile one product run (SQLite) with py-spy")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--db")
    parser.add_argument("--urls-file")
    args = parser.parse_args(argv)
    if args.child:
        return emit(CHILDREN[args.child](args))

    from bench.server import CorpusServer

    parts = set(args.parts.split(","))
    backends = ["sqlite"] + (["postgres"] if args.postgres_url else [])
    results: dict = {"corpus": str(args.corpus), "workers": args.workers, "repeat": args.repeat, "backends": backends}
    WORK.mkdir(parents=True, exist_ok=True)
    with CorpusServer(args.corpus) as server:
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

        variants = [(backend, "product", {}) for backend in backends]
        if not args.no_threads_variant:
            variants.append(("sqlite", "product_threads", {"INGEST_PARSE_PROCESSES": "0"}))
        runs: dict[str, list[dict]] = {}
        reingest: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            # Interleaved (A B C, A B C, ...) so that a noisy minute hurts every contender alike.
            for backend, name, env in variants:
                server.mode = "conditional"
                db = clone(templates[backend], backend, f"bench_ingest_{backend}")
                key = f"{name}_{backend}"
                runs.setdefault(key, []).append(child_run(MODULE, ["--child", "product", "--db", db, *common], env=env, log="ingest"))
                if "reingest" in parts and name == "product":
                    for mode, label in (("conditional", "reingest_304"), ("ignore", "reingest_hash")):
                        server.mode = mode
                        reingest.setdefault(f"{label}_{backend}", []).append(
                            child_run(MODULE, ["--child", "product", "--db", db, *common], log="ingest"))
                    server.mode = "conditional"
                drop_database(db)
            if not args.no_reader and "ingest" in parts:
                path = WORK / "bench-reader.sqlite"
                for suffix in READER_FILES:
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
                runs.setdefault("reader_sqlite", []).append(
                    child_run(MODULE, ["--child", "reader", "--db", str(path), *common], log="ingest"))
        if args.profile:
            from bench.profile import profile_child

            db = clone(templates["sqlite"], "sqlite", "bench_ingest_profile")
            _, results["profile"] = profile_child(MODULE, ["--child", "product", "--db", db, *common], anchor="source_store.<locals>.write")
            drop_database(db)
        for template in templates.values():
            drop_database(template)

    if "ingest" in parts:
        first = {key: summarize(value) for key, value in runs.items()}
        reader = first.get("reader_sqlite")
        for key, value in first.items():
            if reader and key != "reader_sqlite":
                value["speedup_vs_reader"] = ratio(reader["wall_s"]["median"], value["wall_s"]["median"])
                # Per entry stored, in case the two do not keep the same entries (reader drops bozo feeds).
                value["entries_per_s_vs_reader"] = ratio(value["entries_per_s"], reader["entries_per_s"])
        stored = {key: value["fingerprints"] for key, value in first.items() if "fingerprints" in value}
        # Every product-side run of this corpus stored the same data.
        results["same_data"] = len({f for prints in stored.values() for f in prints}) == 1
        if "product_threads_sqlite" in first:
            first["product_sqlite"]["speedup_vs_threads"] = ratio(
                first["product_threads_sqlite"]["wall_s"]["median"], first["product_sqlite"]["wall_s"]["median"])
        results["first"] = first
    if "reingest" in parts:
        results["reingest"] = {key: summarize(value, "entries_unchanged") for key, value in reingest.items()}
        for key, value in results["reingest"].items():
            value["vs_first"] = ratio(results.get("first", {}).get(f"product_{key.rsplit('_', 1)[-1]}", {}).get("wall_s", {}).get("median"),
                                      value["wall_s"]["median"])
    for suffix in READER_FILES:
        Path(f"{WORK / 'bench-reader.sqlite'}{suffix}").unlink(missing_ok=True)
    return emit(results)


if __name__ == "__main__":
    main()
