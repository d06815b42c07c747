"""The benchmark suite keeps working: one run of ``bench.run`` at the tiny scale, on a generated corpus.

It asserts that every part completes and reports what docs/benchmarks.md is built from, and that
re-ingesting unchanged feeds writes no entry row; that reader's re-runs really fetch, the one-core
runs run on one core, and the CPU count of a process tree includes the parse processes. It never
asserts a time: the machines are shared. The run manages its own databases (SQLite files in a
temporary folder; PostgreSQL ``bench_*`` databases only when DATABASE_URL points at PostgreSQL),
so it never touches the test database.
"""

import hashlib
import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.nodb


def test_the_cpu_seconds_of_a_process_tree_include_the_parse_processes():
    from bench.harness import TreeCPU
    from ingest.parsepool import ParsePool

    with TreeCPU() as cpu:
        with ParsePool(1, timeout=60) as pool:
            worker = pool.parse(os.getpid)
            pool.parse(hashlib.pbkdf2_hmac, "sha256", b"benchmark", b"salt", 400_000)  # CPU in the worker only

    assert worker != os.getpid()
    # The worker was reaped when the pool closed, so RUSAGE_CHILDREN holds its time.
    assert cpu.report["cpu_children_s"] >= 0.05, cpu.report
    assert cpu.report["cpu_s"] >= cpu.report["cpu_self_s"] + cpu.report["cpu_children_s"] - 0.001


@pytest.mark.slow
def test_bench_runs_at_tiny_scale(tmp_path):
    out, doc = tmp_path / "latest.json", tmp_path / "benchmarks.md"
    command = [sys.executable, "-m", "bench.run", "--scale", "tiny", "--no-profile", "--out", str(out), "--markdown", str(doc)]
    database_url = os.environ.get("DATABASE_URL", "")
    postgres = database_url.startswith(("postgres://", "postgresql://"))
    if postgres:
        command += ["--postgres-url", database_url]
    env = {**os.environ, "BENCH_WORK_DIR": str(tmp_path / "work")}
    proc = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]

    results = json.loads(out.read_text())
    assert results["errors"] == {}
    parts = results["parts"]
    assert set(parts) == {"parse", "ingest", "scale", "upsert", "memory"} | ({"recount"} if postgres else set())

    first = parts["ingest"]["first"]
    backends = ["sqlite"] + (["postgres"] if postgres else [])
    for backend in backends:
        run = first[f"product_{backend}"]
        assert run["entries"] == 30 and run["failed"] == 0
        assert {"wall_s", "cpu_s", "entries_per_s", "entries_per_cpu_s", "peak_rss_mb", "peak_tree_rss_mb"} <= run.keys()
        assert run["cpu_s"]["median"] > 0 and run["statements_per_source"] > 0
        for mode in ("304", "hash"):
            again = parts["ingest"]["reingest"][f"reingest_{mode}_{backend}"]
            assert again["entry_writes_max"] == 0, again["writes_by_table"]
            assert again["statements_per_source"] > 0 and again["cpu_s"]["median"] > 0
        assert parts["ingest"]["reingest"][f"reingest_304_{backend}"]["not_modified"] == 6
    assert first["product_1core_sqlite"]["cores"] == [0]
    assert first["product_feedparser_sqlite"]["entries"] == 30 and "parser_same_data" in parts["ingest"]
    if find_spec("reader") is not None:
        assert first["reader_sqlite"]["entries"] == 30 and first["reader_1core_sqlite"]["cores"] == [0]
        assert first["product_sqlite"]["speedup_vs_reader"] is not None and first["product_sqlite"]["cpu_vs_reader"] is not None
        # reader's re-runs fetch every feed again (not only the ones it has scheduled).
        reingest = parts["ingest"]["reingest"]
        assert reingest["reader_reingest_304_sqlite"]["not_modified"] == 6
        assert reingest["reader_reingest_hash_sqlite"]["not_modified"] == 0
        assert reingest["reader_reingest_hash_sqlite"]["entries_created"] == 0 and reingest["reader_reingest_hash_sqlite"]["failed"] == 0

    scale = parts["scale"]["scale"]
    assert scale["sizes"] == [4, 8]
    for size in (4, 8):
        row = scale["rows"][str(size)]
        assert row["product_first"]["entries"] == size * 3 and row["product_first"]["failed"] == 0
        assert row["product_again"]["entry_writes_max"] == 0
        assert {"ms_per_feed", "cpu_ms_per_feed", "statements_per_source", "per_feed_vs_smallest"} <= row["product_first"].keys()
    if find_spec("reader") is not None:
        assert "reader_first" in scale["rows"]["4"] and "reader_first" not in scale["rows"]["8"]

    for backend in backends:
        table = parts["upsert"]["backends"][backend]
        for contender in ("product", "naive", "executemany"):
            assert {"new", "unchanged", "changed"} <= table[contender].keys()
        assert table["product"]["new"]["created"] == 100
        assert table["product"]["changed"]["updated"] == 10
        assert table["executemany"]["changed"]["updated"] == 10
        assert {"speedup_vs_naive", "vs_floor"} <= table["product"]["changed"].keys()

    memory = parts["memory"]
    assert memory["ingest_big"]["outcome"] in ("created", "updated")
    assert memory["refuse_streamed"]["outcome"] == "failed" and memory["stopped_at_cap"]
    if postgres:
        assert parts["recount"]["no_drift"]["changed"] == 0

    targets = {row["target"]: row for row in results["targets"]}
    assert targets and all("measured" in row for row in results["targets"])
    assert "8 feeds: time per feed within 1.2x of the 4-feed run (first ingest)" in targets
    assert any("per CPU-second" in target for target in targets) == (find_spec("reader") is not None)
    text = doc.read_text()
    assert "## Targets" in text and "## 1. Real-world ingest" in text and "python -m bench.run" in text
    assert "## Scale (generated feeds, SQLite)" in text and "CPU s, tree" in text
