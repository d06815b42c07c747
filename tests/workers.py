"""Real Celery workers for the tests, on the real Redis (a database and key prefix of their own,
see tests/settings.py).

``in_process_worker`` runs a worker in a thread of the test process (``start_worker``): it shares
the test database through its own connections, so the tests that use it need ``transactional_db``.
``WorkerProcess`` runs ``celery -A pipeline worker`` as a separate process pointed at the test
database, for the tests that kill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker

from pipeline.celery import app
from tests.helpers import ROOT, database_url, wait_until


def redis_cleanup() -> None:
    """Delete this test run's broker keys (they all carry its prefix, see tests/settings.py)."""
    prefix = app.conf.broker_transport_options.get("global_keyprefix", "")
    assert prefix.startswith("test-"), f"refusing to clean {prefix!r}: the tests use a prefix of their own"
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def broker():
    """The Celery app with no message left over from an earlier test; the tasks are registered.

    Skips when Redis is not running, unless REQUIRE_SERVICES=1 (CI), like the database backends.
    """
    client = redis.Redis.from_url(app.conf.broker_url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            raise
        pytest.skip(f"Redis is not reachable at {app.conf.broker_url} (REQUIRE_SERVICES=1 makes this a failure)")
    finally:
        client.close()
    app.loader.import_default_modules()
    redis_cleanup()
    yield app
    redis_cleanup()


@contextmanager
def in_process_worker(*, concurrency: int = 2, pool: str = "threads"):
    """A worker in this process (threads pool: it answers `inspect` while a task runs)."""
    app.conf.worker_hijack_root_logger = False  # leave pytest's logging alone
    with start_worker(app, pool=pool, concurrency=concurrency, perform_ping_check=False,
                      shutdown_timeout=30, loglevel="WARNING", hostname=f"test-{uuid.uuid4().hex[:8]}@localhost") as worker:
        yield worker


class WorkerProcess:
    """``celery -A pipeline worker`` in its own process group, logging to a file."""

    def __init__(self, *, log_dir: Path, env: dict[str, str], pool: str = "prefork", concurrency: int = 1):
        self.name = f"proc-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_dir / f"{self.name.split('@')[0]}.log"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(), **env}
        self.pool = pool
        self.concurrency = concurrency
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 40.0) -> WorkerProcess:
        command = [sys.executable, "-m", "celery", "-A", "pipeline", "worker", f"--pool={self.pool}",
                   f"--concurrency={self.concurrency}", f"--hostname={self.name}", "--loglevel=INFO",
                   "--without-mingle", "--without-gossip"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            return app.control.ping(destination=[self.name], timeout=0.5)

        wait_until(up, timeout=timeout, interval=0.2, message=f"worker {self.name} to answer")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def pool_pid_running(self, task_name: str, timeout: float = 10.0) -> int:
        """The pid of the pool process running ``task_name`` now."""

        def find():
            replies = app.control.inspect(destination=[self.name], timeout=0.5).active() or {}
            for info in replies.get(self.name, []):
                if info["name"] == task_name and info.get("worker_pid"):
                    return info["worker_pid"]
            return None

        return wait_until(find, timeout=timeout, interval=0.1, message=f"{task_name} to run on {self.name}")

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool processes, as a machine that dies."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: finish the running task
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
