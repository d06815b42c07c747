"""Sampling profiles of a benchmark child, with py-spy (every thread and every child process).

    result, profile = profile_child("bench.ingest", [...child args...], env={...}, anchor="source_store")

py-spy samples the child from outside (no instrumentation, so timings stay honest), including its
threads and its parse processes. ``profile_child`` returns the child's JSON result and a summary:
seconds of CPU per role (the writing main thread, the fetch threads, the parse processes) and the
functions under ``anchor`` (the part whose time the benchmark reports as missed) by inclusive time.
Returns ``(result, None)`` when py-spy is not installed or may not trace (no ptrace permission).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import ROOT

RATE = 100  # samples per second per thread


def _py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _frame(raw: str) -> str:
    """'feed_upsert (ingest/upsert.py:212)' -> 'feed_upsert (ingest/upsert.py)'."""
    name = re.sub(r":\d+\)$", ")", raw)
    return name.replace(str(ROOT) + "/", "").replace("/.venv/lib/python3.11/site-packages/", "")


def profile_child(module: str, args: list[str], *, env: dict[str, str] | None = None, anchor: str, top: int = 15):
    spy = _py_spy()
    environment = {**os.environ, "INGEST_ALLOWED_NETWORKS": "127.0.0.0/8", "LOG_LEVEL": "WARNING", **(env or {})}
    command = [sys.executable, "-m", module, *args]
    if spy is None:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "profile.txt"
        proc = subprocess.run(check=False, args=[spy, "record", "--subprocesses", "--threads", "-r", str(RATE), "--format", "raw", "-o", str(out),
                               "--", *command], cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = [line for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not out.exists() or not lines:
            return (json.loads(lines[-1]) if lines else None), None
        stacks: Counter[tuple[str, ...]] = Counter()
        for line in out.read_text("utf-8", "replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if count.isdigit():
                stacks[tuple(stack.split(";"))] += int(count)
    return json.loads(lines[-1]), summarize(stacks, anchor=anchor, top=top)


# Wrappers every statement goes through: they say nothing about where the time goes.
_PLUMBING = re.compile(r"bench/harness\.py|_execute_with_wrappers|CursorWrapper\._execute |DatabaseErrorWrapper|manager_method|"
                       r"<locals>\.inner|_batched_insert|QuerySet\._insert |run_atomic|contextlib|Atomic\.__")


def _role(frames: tuple[str, ...]) -> str:
    joined = ";".join(frames[:4])
    if "rss-sampler" in joined:
        return "benchmark RSS sampler"
    if "spawn_main" in joined or "multiprocessing-fork" in joined or "_process_worker" in ";".join(frames):
        return "parse processes"
    if "MainThread" in joined:
        return "main thread (writes)"
    if "fetch_" in joined:
        return "fetch threads (fetch, parse when no pool)"
    return "other threads"


def summarize(stacks: Counter, *, anchor: str, top: int = 15) -> dict:
    roles: Counter[str] = Counter()
    under: Counter[str] = Counter()
    children: Counter[str] = Counter()
    anchor_total = 0
    for frames, count in stacks.items():
        roles[_role(frames)] += count
        names = [_frame(f) for f in frames]
        hits = [i for i, name in enumerate(names) if name.startswith(anchor + " ")]
        if not hits:
            continue
        anchor_total += count
        below = names[hits[0] + 1:]
        for name in dict.fromkeys(below):
            if not _PLUMBING.search(name):
                under[name] += count
        direct = [name for name in below if not _PLUMBING.search(name)]
        children[direct[0] if direct else "(itself)"] += count
    seconds = lambda n: round(n / RATE, 2)
    return {
        "rate_hz": RATE,
        "cpu_s_by_role": {role: seconds(n) for role, n in roles.most_common()},
        "anchor": anchor,
        "anchor_s": seconds(anchor_total),
        "anchor_children": [[name, seconds(n)] for name, n in children.most_common(top)],
        "anchor_inclusive": [[name, seconds(n)] for name, n in under.most_common(top)],
    }
