"""Running the real ``manage.py`` (and the other entry points) in a process of its own with the real
settings module and a clean environment, and checking that a bad setting ends it the way a user
must see it: one sentence, exit status 2, before the database (tests/test_config_errors.py,
tests/test_sentry.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import ROOT

CLOSED = "postgres://postgres@127.0.0.1:1/none"  # nothing listens: a database access exits 1, not 2
ID_MAX = 2**63 - 1
# What the test process's environment sets for the test settings; the real settings start clean.
_OURS = ("DJANGO_", "DATABASE_URL", "INGEST_", "DB_", "LOG_", "TIME_ZONE", "CONN_", "PIPELINE_")


def _env(overrides: dict[str, str]) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**clean, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_DEBUG": "1", "DATABASE_URL": CLOSED,
            **overrides}


def _run(argv: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=ROOT, env=_env(env), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def manage(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return _run([sys.executable, "manage.py", *args], env, timeout)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(result.args)}\nexit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def assert_configuration_error(result: subprocess.CompletedProcess, expected: str, *, program: str = "manage.py") -> str:
    assert result.returncode == 2, explain(result)
    assert "Traceback" not in result.stderr, explain(result)
    sentence = one_line(result.stderr)
    assert sentence.startswith(f"{program}: configuration error: "), explain(result)
    assert expected in sentence, explain(result)
    assert "pw-s3cr3t" not in sentence  # a password in DATABASE_URL stays out of the sentence
    assert result.stdout == "", explain(result)  # not even --json's object: nothing ran
    return sentence
