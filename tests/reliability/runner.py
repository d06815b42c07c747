"""Commands in real processes for the reliability suite, and the record of what each scenario saw.

``manage(...)`` runs ``manage.py`` in a process of its own behind the network tripwire
(``guarded_manage``), pointed at the current test database, and returns what it printed, its exit
code, time and peak memory. ``observe(...)`` appends what a run saw to var/reliability/observed.jsonl,
which ``python -m tests.reliability.report`` renders into docs/reliability.md. Infrastructure, not
assertions: the generic helpers (database URL, snapshots, feed builders) are tests/helpers.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers import ROOT, database_url, vendor
from tests.reliability import tripwire
from tests.reliability.report import OBSERVED


# --- Observations: what a run saw, for docs/reliability.md ---------------------------------------


def observe(scenario: str, text: str, **data) -> None:
    """Record what this run observed for ``scenario`` (rendered by ``python -m tests.reliability.report``);
    ``data`` holds numbers the report tabulates (the load test's elapsed times)."""
    OBSERVED.parent.mkdir(parents=True, exist_ok=True)
    entry = {"scenario": scenario, "vendor": vendor(), "text": text, "data": data,
             "at": datetime.now(UTC).isoformat(timespec="seconds")}
    with OBSERVED.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry, ensure_ascii=False) + "\n")


# --- Commands in processes of their own ----------------------------------------------------------


@dataclass
class Completed:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float
    max_rss_mb: float  # peak resident memory of the process and the children it waited for
    tripped: list[dict] = field(default_factory=list)  # network tripwire records

    def json(self) -> dict:
        return json.loads(self.stdout)

    def explain(self) -> str:
        return (f"$ manage.py {' '.join(self.args)}\nexit {self.returncode} in {self.elapsed_s:.1f}s\n"
                f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-6000:]}")


def manage(*args: str, env: dict[str, str] | None = None, database: str | None = None, timeout: float = 300,
           stdin: bytes | None = None) -> Completed:
    """Run ``manage.py *args`` in its own process behind the network tripwire.

    ``database`` is its DATABASE_URL (default: the current test database). Its peak memory comes
    from wait4(), which includes the parse processes it spawned and joined.
    """
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        log = Path(tmp) / "tripwire.jsonl"
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database if database is not None else database_url(),
            "RELIABILITY_TRIPWIRE_LOG": str(log),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        started = time.monotonic()
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.guarded_manage", *args], cwd=ROOT, env=full_env,
                stdout=out, stderr=err, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                start_new_session=True,
            )
            if stdin is not None:
                proc.stdin.write(stdin)
                proc.stdin.close()
            status, rusage = _wait(proc, timeout)
        elapsed = time.monotonic() - started
        return Completed(
            args=list(args),
            returncode=os.waitstatus_to_exitcode(status),
            stdout=out_path.read_text(errors="replace"),
            stderr=err_path.read_text(errors="replace"),
            elapsed_s=elapsed,
            max_rss_mb=rusage.ru_maxrss / 1024,
            tripped=tripwire.read_log(log),
        )


def _wait(proc: subprocess.Popen, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, rusage
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            _, status, rusage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            raise AssertionError(f"manage.py {' '.join(proc.args[3:])} did not finish within {timeout}s")
        time.sleep(0.02)


TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s+File \"", re.MULTILINE)
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* +(DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")


def assert_one_sentence_error(result: Completed, *, returncode: int) -> str:
    """The command failed with ``returncode`` and said why in one line, without a traceback."""
    assert result.returncode == returncode, result.explain()
    assert not TRACEBACK.search(result.stderr), result.explain()
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("CommandError: ") or ": error: " in line]
    assert len(errors) == 1, result.explain()
    # Besides the error: argparse's usage line, and the run's log records (logs go to stderr).
    others = [line for line in lines if line not in errors and not line.startswith(("usage: ", " "))
              and not LOG_RECORD.match(line)]
    assert others == [], result.explain()
    return errors[0].removeprefix("CommandError: ")
