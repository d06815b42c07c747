"""The benchmark suite, one command: every part, in one run, written as JSON and as docs/benchmarks.md.

    python -m bench.run --postgres-url postgres://postgres@127.0.0.1:5432/bench \
        --out bench/results/latest.json --markdown docs/benchmarks.md

    python -m bench.run --scale tiny                     # a minute, SQLite only, generated corpus
    python -m bench.run --only upsert,recount --repeat 1 --postgres-url ...

Parts (``--only``, comma-separated; each is also its own module, runnable alone):

* ``parse``    (bench.parse)   where parsing time goes: feedparser's sanitizer, nh3, the process pool;
* ``ingest``   (bench.ingest)  first ingest of the corpus, SQLite and PostgreSQL, beside ``reader``: wall time
  and CPU seconds of the whole process tree; the parser variant; product and reader on one core;
* ``reingest`` (bench.ingest)  the same feeds again: 304, then the same bodies (200); statements counted;
  reader re-ingesting the same two ways;
* ``scale``    (bench.ingest)  generated corpora of ``--scale-feeds`` feeds (200, 2,000, 10,000): time, CPU
  seconds and statements per feed, first ingest and re-ingest (reader up to ``--scale-reader-max``);
* ``upsert``   (bench.upsert)  feed_upsert beside the naive ORM loop and the raw DB-API floor;
* ``recount``  (bench.recount) recompute_counts beside one hand-written UPDATE (PostgreSQL only);
* ``memory``   (bench.memory)  peak RSS of a big feed, and of refusing one over the cap.

``--corpus`` is the folder of feed files the ingest parts serve; without it, ``--scale full`` uses
``../shared/corpus/real-feeds`` when present, and otherwise (and ``--scale tiny`` always) a corpus
written by ``bench.generate``. Without ``--postgres-url`` every part runs on SQLite only and the
recount part is skipped. PostgreSQL databases are created and dropped as ``bench_*`` (``--db-prefix``
renames them, e.g. ``ci_bench_``: the children get it as ``BENCH_DB_PREFIX``).

At full scale with ``--repeat 1`` on the real corpus and PostgreSQL, the whole run takes about 20
minutes on an otherwise idle 2-core machine (scale ~7, upsert ~4, recount ~4, ingest ~3, parse ~1 min);
under load it takes longer: every part waits for the cores.

``--experiments`` (on by default) adds contenders that run the proposed changes of
bench/experiments.py beside the product (one more recount strategy), bench-only and labelled as
such; the product is not changed.

Each part runs in its own process and each measurement in a fresh child (see bench/harness.py);
the contenders of a part are interleaved across repetitions, and every result is a median with
its min-max and a ratio measured in the same run, because the machine is shared and noisy. The
load average before and after each part is recorded as a hint of that noise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from bench.common import ROOT
from bench.harness import LOGS, WORK, child_run, database_versions, postgres_reachable, postgres_url

PARTS = ("parse", "ingest", "reingest", "scale", "upsert", "recount", "memory")
# Proposed product changes measured beside the product (bench/experiments.py); "" to skip them.
EXPERIMENTS: dict[str, str] = {}  # the upsert's proposals are in the product now (ingest/upsert.py)
SCALES = {
    "full": {"repeat": {"parse": 2, "ingest": 3, "scale": 1, "upsert": 1, "recount": 1, "memory": 2},
             "generate": {"feeds": 200, "entries_per_feed": 30},
             "scale": {"feeds": "200,2000,10000", "entries_per_feed": 3, "reader_max": 2000},
             "upsert": {"sources": 1000, "entries_per_source": 100, "naive_sample": 0.03},
             "recount": {"entries": 1_000_000, "comments": 3_000_000},
             "memory": {"big_mb": 9, "over_mb": 50, "max_bytes": None}},
    "tiny": {"repeat": {"parse": 1, "ingest": 1, "scale": 1, "upsert": 1, "recount": 1, "memory": 1},
             "generate": {"feeds": 6, "entries_per_feed": 5},
             "scale": {"feeds": "4,8", "entries_per_feed": 3, "reader_max": 4},
             "upsert": {"sources": 10, "entries_per_source": 10, "naive_sample": 0.5},
             "recount": {"entries": 2000, "comments": 6000},
             "memory": {"big_mb": 0.3, "over_mb": 16, "max_bytes": 1_000_000}},
}
REAL_CORPUS = ROOT.parent / "shared" / "corpus" / "real-feeds"


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def machine(postgres: str | None) -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"nproc": os.cpu_count(), "cpu": cpu, "memory_gb": memory_gb, "os": platform.platform(),
            "python": platform.python_version(), **database_versions(postgres),
            "packages": {name: _version(name) for name in ("Django", "feedparser", "nh3", "httpx", "psycopg", "reader")}}


def _commit() -> str:
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "ingest", "pipeline"], check=False, cwd=ROOT, capture_output=True, text=True).stdout
        return head + (" + uncommitted changes in ingest/ or pipeline/" if dirty.strip() else "")
    except OSError:
        return "unknown"


def corpus_for(args) -> tuple[Path, str]:
    if args.corpus:
        return args.corpus, "given"
    if args.scale == "full" and REAL_CORPUS.is_dir():
        return REAL_CORPUS, "real-feeds"
    from bench.generate import corpus_write

    size = SCALES[args.scale]["generate"]
    out = WORK / f"corpus-{args.scale}"
    corpus_write(out, feeds=size["feeds"], entries_per_feed=size["entries_per_feed"])
    return out, f"generated: {size['feeds']} feeds x {size['entries_per_feed']} entries"


def part_commands(args, corpus: Path, postgres: str | None) -> dict[str, tuple[str, list[str]]]:
    scale = SCALES[args.scale]
    repeat = {part: args.repeat or n for part, n in scale["repeat"].items()}
    pg = ["--postgres-url", postgres] if postgres else []
    wanted = set(args.only)
    ingest_parts = ",".join(p for p in ("ingest", "reingest") if p in wanted)
    commands: dict[str, tuple[str, list[str]]] = {}
    if "parse" in wanted:
        commands["parse"] = ("bench.parse", ["--corpus", str(corpus), "--repeat", str(repeat["parse"])])
    if ingest_parts:
        extra = (["--profile"] if args.profile else []) + (["--no-reader"] if _version("reader") is None else [])
        commands["ingest"] = ("bench.ingest", ["--corpus", str(corpus), "--repeat", str(repeat["ingest"]), "--parts", ingest_parts,
                                               "--workers", str(args.workers), *pg, *extra])
    if "scale" in wanted:
        sc = scale["scale"]
        commands["scale"] = ("bench.ingest", ["--parts", "scale", "--repeat", str(repeat["scale"]), "--workers", str(args.workers),
                                              "--scale-feeds", args.scale_feeds or sc["feeds"],
                                              "--scale-entries", str(args.scale_entries or sc["entries_per_feed"]),
                                              "--scale-reader-max", str(sc["reader_max"] if args.scale_reader_max is None else args.scale_reader_max),
                                              *(["--no-reader"] if _version("reader") is None else [])])
    if "upsert" in wanted:
        u = scale["upsert"]
        commands["upsert"] = ("bench.upsert", ["--sources", str(u["sources"]), "--entries-per-source", str(u["entries_per_source"]),
                                               "--naive-sample", str(u["naive_sample"]), "--repeat", str(repeat["upsert"]), *pg,
                                               *(["--profile"] if args.profile else []),
                                               *(["--experiments", EXPERIMENTS["upsert"]] if args.experiments and EXPERIMENTS.get("upsert") else [])])
    if "recount" in wanted and postgres:
        r = scale["recount"]
        # bench.recount, with one experimental strategy measured beside the product's (bench/experiments.py).
        module, head = ("bench.experiments", ["recount"]) if args.experiments else ("bench.recount", [])
        commands["recount"] = (module, [*head, "--database-url", postgres_url(postgres, "bench_run_recount"),
                                                 "--entries", str(r["entries"]), "--comments", str(r["comments"]),
                                                 "--repeat", str(repeat["recount"]),
                                                 # The product's strategy, and the per-chunk hand-written UPDATE when
                                                 # experiments are on: the older alternatives (range_aggregate among
                                                 # them) take an hour or more at 1M entries; ``bench.recount
                                                 # --strategies`` measures them on their own.
                                                 "--strategies", "set_based" + (",range_sql_experiment" if args.experiments else "")])
    if "memory" in wanted:
        m = scale["memory"]
        commands["memory"] = ("bench.memory", ["--big-mb", str(m["big_mb"]), "--over-mb", str(m["over_mb"]),
                                               "--repeat", str(repeat["memory"]),
                                               *(["--max-bytes", str(m["max_bytes"])] if m["max_bytes"] else [])])
    return commands


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="folder of feed files (default: the real corpus, else a generated one)")
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--repeat", type=int, help="repetitions of every part (default: per part, see SCALES)")
    parser.add_argument("--postgres-url", help="PostgreSQL server to measure too (databases bench_* are created and dropped)")
    parser.add_argument("--workers", type=int, default=4, help="fetch threads, for the product and for reader")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--markdown", type=Path, help="write the report here (e.g. docs/benchmarks.md)")
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts among {', '.join(PARTS)}")
    parser.add_argument("--experiments", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure the proposed product changes of bench/experiments.py (default: on)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="profile the product's ingest and upsert with py-spy (default: on at full scale)")
    parser.add_argument("--scale-feeds", help="sizes (feeds, comma-separated) of the scale part (default: 200,2000,10000)")
    parser.add_argument("--scale-entries", type=int, help="entries per generated feed in the scale part (default: 3)")
    parser.add_argument("--scale-reader-max", type=int, help="largest scale size reader runs at (default: 2000)")
    parser.add_argument("--db-prefix", help="name prefix of the PostgreSQL databases created and dropped (default: bench_)")
    args = parser.parse_args(argv)
    args.only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = set(args.only) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose among {', '.join(PARTS)}")
    if args.profile is None:
        args.profile = args.scale == "full"
    if args.db_prefix:
        if not args.db_prefix.replace("_", "").isalnum():
            parser.error("--db-prefix takes letters, digits and underscores only")
        os.environ["BENCH_DB_PREFIX"] = args.db_prefix  # read by bench.harness in every child
        import bench.harness

        bench.harness.DB_PREFIX = args.db_prefix
    postgres = args.postgres_url
    if postgres and not postgres_reachable(postgres):
        parser.error(f"PostgreSQL does not answer at {postgres}")

    started = time.time()
    for old in LOGS.glob("*.log"):
        old.unlink()
    corpus, corpus_kind = corpus_for(args)
    results: dict = {
        "command": "python -m bench.run " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "scale": args.scale, "corpus": os.path.relpath(corpus, ROOT), "corpus_kind": corpus_kind,
        "commit": _commit(),
        "machine": machine(postgres), "postgres": bool(postgres), "parts": {}, "load": {}, "errors": {},
    }
    for name, (module, part_args) in part_commands(args, corpus, postgres).items():
        load = os.getloadavg()[0]
        print(f"[bench] {name}: python -m {module} {' '.join(part_args)}", file=sys.stderr, flush=True)
        part_started = time.time()
        try:
            results["parts"][name] = child_run(module, part_args, log=f"run-{name}", timeout=3600)
        except Exception as exc:  # one broken part must not hide the others' results
            results["errors"][name] = str(exc)[-2000:]
            print(f"[bench] {name} FAILED: {str(exc)[-500:]}", file=sys.stderr, flush=True)
        if name == "recount":  # bench.recount leaves its million-row database behind
            from bench.harness import postgres_drop

            postgres_drop(postgres_url(postgres, "bench_run_recount"))
        results["load"][name] = {"before": round(load, 2), "after": round(os.getloadavg()[0], 2),
                                 "elapsed_s": round(time.time() - part_started, 1)}
    results["elapsed_s"] = round(time.time() - started, 1)

    from bench.report import markdown, targets

    results["targets"] = targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(results))
    for row in results["targets"]:
        print(f"[bench] {'MET   ' if row['met'] else 'MISSED' if row['met'] is False else 'n/a   '} {row['target']}: {row['measured']}",
              file=sys.stderr)
    print(f"[bench] done in {results['elapsed_s']:.0f} s; {args.out}" + (f", {args.markdown}" if args.markdown else ""), file=sys.stderr)
    if results["errors"]:
        raise SystemExit(f"[bench] part(s) failed: {', '.join(results['errors'])}; see {LOGS}/")
    return results


if __name__ == "__main__":
    main()
