"""Plumbing the benchmark parts share beside ``bench.common``: child processes (optionally pinned
to some cores), fresh databases, peak memory and CPU seconds of a process tree, counting database
statements and writes, ratios. Measures nothing itself.

Every measurement that needs isolation runs in a fresh child (``child_run``): its own interpreter,
its own peak RSS, its own database connection. A child prints one JSON object as its last line of
stdout; its stderr goes to a log file under ``var/bench/logs/`` (kept for post-mortems).
"""

from __future__ import annotations

import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import ROOT

# SQLite files, reader databases, generated feeds and the children's logs: on disk, like the
# product's var/. BENCH_WORK_DIR moves them (the test suite uses a temporary folder).
WORK = Path(os.environ.get("BENCH_WORK_DIR") or ROOT / "var" / "bench")
LOGS = WORK / "logs"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/bench"
# Every PostgreSQL database the benchmarks create (and so may drop) is named with this prefix; the
# parts ask for ``bench_<what>`` and ``db_name`` swaps the prefix (``bench.run --db-prefix``).
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX") or "bench_"


def db_name(name: str) -> str:
    """``bench_<what>`` under the configured prefix; refuses any other name (the only databases we drop)."""
    if name.startswith(DB_PREFIX):
        return name
    if not name.startswith("bench_"):
        raise ValueError(f"benchmark databases are named bench_*, not {name!r}")
    return DB_PREFIX + name[len("bench_"):]


# --- child processes ----------------------------------------------------------------------------


def child_run(module: str, args: list[str], *, env: dict[str, str] | None = None, log: str = "child", timeout: float = 3600,
              cores: set[int] | None = None) -> dict:
    """Run ``python -m module args`` in a fresh interpreter; return the JSON object it printed last.

    ``cores``: the CPUs the child may run on (``taskset -c``), inherited by every process it starts.
    The returned object gains ``process_cpu_s``: user+sys of the child and its waited descendants,
    start-up included (``RUSAGE_CHILDREN`` around the wait).
    """
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"{log}.log"
    environment = {**os.environ, "INGEST_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING", **(env or {})}
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores else None
    before = _cpu(resource.RUSAGE_CHILDREN)
    with log_path.open("ab") as stderr:
        stderr.write((f"\n=== {time.strftime('%H:%M:%S')} {module} {' '.join(args)}" + (f" (cores {sorted(cores)})" if cores else "") + "\n").encode())
        stderr.flush()
        proc = subprocess.run([sys.executable, "-m", module, *args], check=False, cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                              stderr=stderr, timeout=timeout, preexec_fn=pin)
    process_cpu = _cpu(resource.RUSAGE_CHILDREN) - before
    lines = [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = log_path.read_text("utf-8", "replace")[-3000:]
        raise RuntimeError(f"{module} {' '.join(args)} exited {proc.returncode}; end of {log_path}:\n{tail}")
    result = json.loads(lines[-1])
    if isinstance(result, dict):
        result.setdefault("process_cpu_s", round(process_cpu, 3))
    return result


def emit(result: dict) -> dict:
    """What a child or a part ends with: one JSON line on stdout."""
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return result


# --- databases ----------------------------------------------------------------------------------


def sqlite_url(name: str) -> str:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"  # absolute path: sqlite:////abs


def sqlite_drop(url: str) -> None:
    path = urlsplit(url).path[1:]
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def sqlite_copy(src_url: str, name: str) -> str:
    """A copy of a SQLite template (through the backup API: consistent even in WAL mode)."""
    dst_url = sqlite_url(name)
    src, dst = sqlite3.connect(src_url[len("sqlite:///"):]), sqlite3.connect(dst_url[len("sqlite:///"):])
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    return dst_url


def postgres_url(base: str, name: str) -> str:
    """``base`` with its database renamed ``name`` (``bench_<what>``, under ``DB_PREFIX``: see ``db_name``)."""
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + db_name(name), parts.query, ""))


def postgres_admin(url: str) -> str:
    parts = urlsplit(url)
    password = f" password={parts.password}" if parts.password else ""
    return f"host={parts.hostname} port={parts.port or 5432} user={parts.username or 'postgres'}{password} dbname=postgres"


def postgres_drop(url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    assert name.startswith(DB_PREFIX), name
    with psycopg.connect(postgres_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_clone(template_url: str, url: str) -> str:
    """A fresh database copied from a migrated template (much faster than migrating again)."""
    import psycopg

    name, template = urlsplit(url).path.lstrip("/"), urlsplit(template_url).path.lstrip("/")
    assert name.startswith(DB_PREFIX) and template.startswith(DB_PREFIX), (name, template)
    with psycopg.connect(postgres_admin(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return url


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(postgres_admin(url), connect_timeout=3):
            return True
    except Exception:
        return False


def clone(template: str, backend: str, name: str) -> str:
    """A copy of the ``template`` database (``backend``: "sqlite" or "postgres") named ``name``."""
    if backend == "sqlite":
        return sqlite_copy(template, name)
    return postgres_clone(template, postgres_url(template, name))


def fresh_database(kind: str, name: str, postgres: str | None) -> str:
    """The URL of a new, empty database (not migrated) of ``kind`` (sqlite or postgres)."""
    from bench.common import postgres_create

    if kind == "sqlite":
        return sqlite_url(name)
    return postgres_create(postgres_url(postgres or DEFAULT_POSTGRES, name))


def drop_database(url: str) -> None:
    if url.startswith("sqlite"):
        sqlite_drop(url)
    else:
        postgres_drop(url)


def database_versions(postgres: str | None) -> dict:
    import sqlite3

    versions = {"sqlite": sqlite3.sqlite_version}
    if postgres and postgres_reachable(postgres):
        import psycopg

        with psycopg.connect(postgres_admin(postgres)) as conn:
            versions["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
    return versions


# --- memory -------------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    kids = [int(k) for k in handle.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


class TreeRSS:
    """Samples the summed RSS of this process and its descendants (e.g. a parse process pool).

    ``getrusage`` gives each process's own peak; the tree's peak is what a host must provision.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            total = _rss_kb(me) + sum(_rss_kb(pid) for pid in _descendants(me))
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreeRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def rss_report(tree: TreeRSS | None = None) -> dict:
    """Peak RSS in MB: this process (getrusage), its largest reaped child, and the sampled tree."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    report = {"peak_rss_mb": round(own, 1), "peak_rss_child_mb": round(children, 1)}
    if tree is not None:
        report["peak_tree_rss_mb"] = round(max(tree.peak_kb / 1024, own), 1)
    return report


def current_rss_mb() -> float:
    return round(_rss_kb(os.getpid()) / 1024, 1)


# --- CPU time -----------------------------------------------------------------------------------


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


_TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_s(pid: int) -> float:
    """user+sys of a live process from /proc (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return 0.0


class TreeCPU:
    """CPU seconds (user+sys) spent by this process and its descendants inside the ``with`` block.

    This process's own time (every thread) plus ``RUSAGE_CHILDREN``, which covers the children it
    waited for (the parse pool's workers are joined when the pool closes) and their own waited
    children; a descendant still alive at the end (not yet waited) is read from /proc and counted
    too, as ``unreaped_s``, so that no process of the tree escapes the count.
    """

    def __enter__(self) -> TreeCPU:
        me = os.getpid()
        self._live_before = {pid: _proc_cpu_s(pid) for pid in _descendants(me)}
        self._self, self._children = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
        return self

    def __exit__(self, *exc) -> None:
        own, children = _cpu(resource.RUSAGE_SELF) - self._self, _cpu(resource.RUSAGE_CHILDREN) - self._children
        live = _descendants(os.getpid())
        unreaped = sum(_proc_cpu_s(pid) - self._live_before.get(pid, 0.0) for pid in live)
        self.report = {"cpu_s": round(own + children + unreaped, 3), "cpu_self_s": round(own, 3),
                       "cpu_children_s": round(children, 3), "cpu_unreaped_s": round(unreaped, 3)}


# --- counting database writes -------------------------------------------------------------------

_WRITE = re.compile(r'^\s*(?:WITH\b.*?\)\s*)?(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM)\s+[`"\[]?(\w+)', re.IGNORECASE | re.DOTALL)
# Rows that belong to entries; the run ledger (ingest_ingestrun) and the source's own row
# (ingest_technicalarticle: lease, ETag, next_fetch_at) are the expected writes of every run.
ENTRY_TABLES = frozenset({"ingest_entry", "ingest_author", "ingest_entry_authors", "ingest_comment", "ingest_pingback",
                          "ingest_entrylink", "ingest_commentfeed"})


class WriteCounter:
    """``connection.execute_wrapper`` that counts INSERT/UPDATE/DELETE statements per table, and
    every statement Django sends (reads and writes; BEGIN/COMMIT are the driver's, not seen here).

    Statements, not rows: drivers disagree on ``rowcount`` for multi-row and RETURNING statements;
    an ``executemany`` is one statement.
    """

    def __init__(self) -> None:
        self.statements: Counter[str] = Counter()
        self.total = 0
        self.by_kind: Counter[str] = Counter()

    def __call__(self, execute, sql, params, many, context):
        self.total += 1
        self.by_kind[(sql.lstrip().split(None, 1) or ["?"])[0].upper()] += 1
        match = _WRITE.match(sql)
        if match:
            self.statements[match.group(2).lower()] += 1
        return execute(sql, params, many, context)

    def report(self) -> dict:
        entry = {t: n for t, n in self.statements.items() if t in ENTRY_TABLES}
        return {
            "entry_writes": sum(entry.values()),
            "bookkeeping_writes": sum(n for t, n in self.statements.items() if t not in ENTRY_TABLES),
            "writes_by_table": dict(sorted(self.statements.items())),
            "statements": self.total,
            "statements_by_kind": dict(sorted(self.by_kind.items())),
        }


# --- statistics ---------------------------------------------------------------------------------


def spread(values: list[float], digits: int = 4) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values), "values": [round(v, digits) for v in values]}


def ratio(slow: float | None, fast: float | None) -> float | None:
    if not slow or not fast:
        return None
    return round(slow / fast, 2)
