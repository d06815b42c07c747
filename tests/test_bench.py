"""The benchmark suite keeps working: one run of ``bench.run`` at the tiny scale, on a generated corpus.

It asserts that every part completes and reports what docs/benchmarks.md is built from, and that
re-ingesting unchanged feeds writes no entry row. It never asserts a time: the machines are shared.
The run manages its own databases (SQLite files in a temporary folder; PostgreSQL ``bench_*``
databases only when DATABASE_URL points at PostgreSQL), so it never touches the test database.
"""

import json
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.nodb]


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
    assert set(parts) == {"parse", "ingest", "upsert", "memory"} | ({"recount"} if postgres else set())

    first = parts["ingest"]["first"]
    backends = ["sqlite"] + (["postgres"] if postgres else [])
    for backend in backends:
        run = first[f"product_{backend}"]
        assert run["entries"] == 30 and run["failed"] == 0
        assert {"wall_s", "entries_per_s", "peak_rss_mb", "peak_tree_rss_mb"} <= run.keys()
        for mode in ("304", "hash"):
            again = parts["ingest"]["reingest"][f"reingest_{mode}_{backend}"]
            assert again["entry_writes_max"] == 0, again["writes_by_table"]
        assert parts["ingest"]["reingest"][f"reingest_304_{backend}"]["not_modified"] == 6
    if find_spec("reader") is not None:
        assert first["reader_sqlite"]["entries"] == 30
        assert first["product_sqlite"]["speedup_vs_reader"] is not None

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

    assert {row["target"] for row in results["targets"]} and all("measured" in row for row in results["targets"])
    text = doc.read_text()
    assert "## Targets" in text and "## 1. Real-world ingest" in text and "python -m bench.run" in text
