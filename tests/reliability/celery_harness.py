"""Real Celery for the reliability suite: worker and beat processes, a broker of its own.

The suite never touches the Redis database the other Celery tests use (tests/settings.py: 9):
``Broker`` is an app on ``redis://127.0.0.1:6379/11`` (or on a ``redis-server`` a test starts on a
port of its own, ``RedisServer``), with the key prefix of this pytest process, and it deletes only
keys with that prefix. Workers and beat are ``celery -A pipeline ...`` processes behind the network
tripwire (``guarded_celery``), pointed at the test database.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Celery

from tests.helpers import ROOT, database_url, wait_until

SHARED_REDIS = os.environ.get("RELIABILITY_REDIS_URL", "redis://127.0.0.1:6379/11")


class Broker:
    """A Celery app configured like the product's (Django settings, CELERY_ namespace) on ``url``."""

    def __init__(self, url: str) -> None:
        self.url = url
        # Celery reads CELERY_BROKER_URL / CELERY_RESULT_BACKEND from the environment before any
        # configuration, and tests/settings.py set them to the other Celery tests' database: point
        # them at ``url`` while this broker is in use (close() puts them back).
        self._saved_env = {name: os.environ.get(name) for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")}
        os.environ["CELERY_BROKER_URL"] = os.environ["CELERY_RESULT_BACKEND"] = url
        self.app = Celery("reliability", set_as_current=False)
        self.app.config_from_object("django.conf:settings", namespace="CELERY")
        assert self.app.conf.broker_url == url and self.app.conf.result_backend == url, self.app.conf.broker_url
        self.prefix = self.app.conf.broker_transport_options.get("global_keyprefix", "")
        assert self.prefix.startswith("test-"), "the suite needs the per-process key prefix of tests/settings.py"

    def env(self) -> dict[str, str]:
        """What a worker or beat process needs to use this broker (tests/settings.py reads it)."""
        return {"TEST_CELERY_BROKER_URL": self.url}

    def reachable(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def cleanup(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        try:
            keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.ConnectionError:
            pass
        finally:
            client.close()

    def send(self, name: str, **kwargs):
        return self.app.send_task(name, kwargs=kwargs)

    def ping(self, name: str, timeout: float = 0.5) -> bool:
        try:
            return bool(self.app.control.ping(destination=[name], timeout=timeout))
        except Exception:  # noqa: BLE001 - the broker may be the thing that is down
            return False

    def active_pid(self, worker: str, task_name: str) -> int | None:
        replies = self.app.control.inspect(destination=[worker], timeout=0.5).active() or {}
        for info in replies.get(worker, []):
            if info["name"] == task_name and info.get("worker_pid"):
                return info["worker_pid"]
        return None

    def close(self) -> None:
        self.app.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def require_redis(broker: Broker) -> None:
    if not broker.reachable():
        if os.environ.get("REQUIRE_SERVICES") == "1":
            raise AssertionError(f"Redis is not reachable at {broker.url} and REQUIRE_SERVICES=1")
        pytest.skip(f"Redis is not reachable at {broker.url} (REQUIRE_SERVICES=1 makes this a failure)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` of the test's own on a free loopback port; stop() and start() it at will.

    Persistence is the append-only file, fsynced on every write, in ``directory``: what a broker
    in production runs with, so that a restart keeps the queued and unacknowledged messages.
    """

    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 10) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        options = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.directory),
             "--protected-mode", "yes", *options],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            wait_until(lambda: _pings(client), timeout=10, interval=0.05, message=f"redis-server on {self.port}")
        finally:
            client.close()
        return self

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the append-only file is flushed, then the port closes."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


class CeleryProcess:
    """``celery -A pipeline worker|beat`` behind the tripwire, in its own process group, logging to a file."""

    def __init__(self, kind: str, *, broker: Broker, log_dir: Path, env: dict[str, str] | None = None,
                 pool: str = "prefork", concurrency: int = 1) -> None:
        self.kind = kind
        self.broker = broker
        self.name = f"rel-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_dir / f"{kind}-{self.name.split('@')[0]}.log"
        self.tripwire_log = log_dir / f"{kind}-{self.name.split('@')[0]}.tripwire.jsonl"
        self.env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
                    "RELIABILITY_TRIPWIRE_LOG": str(self.tripwire_log), **broker.env(), **(env or {})}
        if kind == "worker":
            self.args = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", f"--hostname={self.name}",
                         "--loglevel=INFO", "--without-mingle", "--without-gossip"]
        else:
            self.args = ["beat", "--loglevel=INFO", "--schedule", str(log_dir / f"beat-schedule-{uuid.uuid4().hex[:6]}")]
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> CeleryProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.reliability.guarded_celery", *self.args], cwd=ROOT,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        if self.kind == "worker":
            def up():
                if self.proc.poll() is not None:
                    raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
                return self.broker.ping(self.name)

            try:
                wait_until(up, timeout=timeout, interval=0.2, message=f"worker {self.name} to answer")
            except BaseException:
                self.kill()
                raise
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, tail: int = 8000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def tripped(self) -> list[dict]:
        from tests.reliability import tripwire

        return tripwire.read_log(self.tripwire_log)

    def kill(self) -> None:
        if self.running:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30.0) -> None:
        if not self.running:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)  # warm shutdown: running tasks finish
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def run_finished(run_id: int, timeout: float):
    from ingest.models import IngestRun

    def done():
        run = IngestRun.objects.get(pk=run_id)
        return run if run.status != IngestRun.Status.RUNNING else None

    return wait_until(done, timeout=timeout, interval=0.25, message=f"run {run_id} to finish")


def result_of(async_result, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while not async_result.ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"task {async_result.id} gave no result within {timeout}s")
        time.sleep(0.1)
    return async_result.get(timeout=1)
