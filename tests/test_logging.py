"""One logging configuration for every process (settings.LOGGING): a real Celery worker, beat,
gunicorn and the Azure Functions runner log in the commands' format, and with ``LOG_FORMAT=json``
every line they write, Celery's and gunicorn's own included, is one JSON object.

The processes are real (``celery -A pipeline worker``, ``celery -A pipeline beat``, ``gunicorn``,
``manage.py``), on this test run's database and Redis keys; what is checked is what a log collector
reading their stdout and stderr would get. tests/test_log_format.py checks the commands' fields.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ingest import tasks
from ingest.models import IngestRun, TechnicalArticle
from tests.helpers import ROOT, database_url, json_log_records, wait_until
from tests.workers import WorkerProcess

FEEDS = Path(__file__).parent / "data" / "feeds"
def process_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
            "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO", **extra}


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, as `docker stop` or systemd would; SIGKILL if it does not end in time."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


# --- The worker ------------------------------------------------------------------------------------


@pytest.fixture
def two_sources(transactional_db, feed_server):
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    feed_server.add("/broken.rss", b"oops", status=500, content_type="text/plain")
    return (TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/blog.rss")),
            TechnicalArticle.objects.create(name="Broken", feed_url=feed_server.url("/broken.rss")))


def test_a_worker_writes_only_json_lines_and_a_tasks_records_carry_its_task_id(two_sources, broker, tmp_path):
    blog, broken = two_sources
    worker = WorkerProcess(log_dir=tmp_path, env={"LOG_FORMAT": "json"}).start()
    try:
        dispatch = tasks.ingest_feeds.delay()
        run_id = dispatch.get(timeout=60)["run_id"]
        wait_until(lambda: IngestRun.objects.get(pk=run_id).status != IngestRun.Status.RUNNING, timeout=60,
                   interval=0.2, message="the run to finish")
        # The run is closed inside the last task: wait for the three tasks' "succeeded" lines.
        wait_until(lambda: worker.log_path.read_text().count("] succeeded in ") >= 3, timeout=30, interval=0.2,
                   message="the tasks' last lines")
    finally:
        worker.stop()  # SIGTERM: the warm shutdown's notices are lines of the log too
    text = worker.log_path.read_text()
    print(text)  # shown when the test fails
    records = json_log_records(text)
    loggers = {record["logger"] for record in records}
    events = [record["event"] for record in records]

    # Celery's own lines, from start to shutdown, in the format.
    assert "pipeline.celery" in loggers and "celery.app.trace" in loggers, loggers
    assert "celery worker starting" in events and f"{worker.name} ready." in events
    assert "worker: Warm shutdown (MainProcess)" in events
    # The project's records inside a task carry the task, and the run and source it works on.
    [done] = [r for r in records if r["event"] == "source done"]
    [failed] = [r for r in records if r["event"] == "source failed"]
    assert (done["source_id"], done["run_id"], done["task_name"]) == (blog.pk, run_id, "ingest.tasks.ingest_source")
    assert (failed["source_id"], failed["run_id"], failed["level"]) == (broken.pk, run_id, "warning")
    assert done["task_id"] != failed["task_id"]
    succeeded = [r for r in records if r["logger"] == "celery.app.trace" and r["event"].startswith(
        f"Task ingest.tasks.ingest_source[{done['task_id']}] succeeded")]
    assert succeeded and succeeded[0]["task_id"] == done["task_id"]
    dispatched = [r for r in records if r.get("task_name") == "ingest.tasks.ingest_feeds"]
    assert dispatched and {r["task_id"] for r in dispatched} == {dispatch.id}
    # Outside a task, no task fields; and the HTTP client's per-request lines stay off.
    ready = next(r for r in records if r["event"] == f"{worker.name} ready.")
    assert "task_id" not in ready
    assert not {name for name in loggers if name.startswith(("httpx", "httpcore"))}


def test_a_worker_with_text_logs_writes_the_commands_text_format(transactional_db, broker, tmp_path):
    """The same worker with the default format: the check above can tell the difference."""
    worker = WorkerProcess(log_dir=tmp_path, env={"LOG_FORMAT": "text"}).start()
    try:
        result = tasks.recompute_counts.delay()
        result.get(timeout=60)
    finally:
        worker.stop()
    text = worker.log_path.read_text()
    recount = [line for line in text.splitlines() if " INFO    ingest.services: recount finished " in line]
    assert recount and f"task_id={result.id}" in recount[0], text[-4000:]
    assert any(f" INFO    celery.apps.worker: {worker.name} ready." in line for line in text.splitlines()), text
    with pytest.raises(pytest.fail.Exception):
        json_log_records(text)


# --- Beat --------------------------------------------------------------------------------------------


def test_beat_writes_only_json_lines(broker, tmp_path):
    env = process_env(LOG_FORMAT="json", INGEST_SCHEDULE_SECONDS="1",
                      CELERY_BEAT_SCHEDULE_FILENAME=str(tmp_path / "beat" / "schedule"))
    log = tmp_path / "beat.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "pipeline", "beat", "--loglevel=INFO"], cwd=ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_until(lambda: "Sending due task ingest-feeds" in log.read_text() or proc.poll() is not None,
                   timeout=60, interval=0.2, message="beat to send a task")
    finally:
        stop(proc)
    records = json_log_records(log.read_text())
    events = [record["event"] for record in records]
    assert "beat: Starting..." in events, events
    assert any(event.startswith("Scheduler: Sending due task ingest-feeds") for event in events), events
    assert {record["logger"].split(".")[0] for record in records} <= {"celery", "pipeline", "py", "django"}, events


# --- Commands ----------------------------------------------------------------------------------------


def _ingest_stderr(**env: str) -> str:
    proc = subprocess.run([sys.executable, "manage.py", "ingest_feeds", "--all"], cwd=ROOT, env=process_env(**env),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_the_http_clients_request_lines_are_off_unless_asked_for(two_sources):
    quiet = _ingest_stderr()
    assert "source done" in quiet and "HTTP Request:" not in quiet and "httpx" not in quiet, quiet
    loud = _ingest_stderr(LOG_HTTP_LEVEL="INFO", LOG_FORMAT="json")
    requests = [r for r in json_log_records(loud) if r["logger"] == "httpx"]
    assert requests and requests[0]["event"].startswith("HTTP Request: GET "), loud


# --- The web -----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gunicorn_with_the_projects_config_writes_only_json_lines(transactional_db, tmp_path):
    port = _free_port()
    log = tmp_path / "web.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "pipeline.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--config", "python:pipeline.gunicorn_conf"],
            cwd=ROOT, env=process_env(LOG_FORMAT="json", XDG_RUNTIME_DIR=str(tmp_path)), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        def get(path: str) -> int | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                assert proc.poll() is None, log.read_text()
                return None

        wait_until(lambda: get("/healthz") is not None, timeout=60, interval=0.2, message="gunicorn to answer")
        assert get("/no-such-page") == 404
        time.sleep(0.5)  # the access line of the last request
    finally:
        stop(proc)
    records = json_log_records(log.read_text())
    by_logger: dict[str, list[str]] = {}
    for record in records:
        by_logger.setdefault(record["logger"], []).append(record["event"])
    assert any(event.startswith("Listening at: ") for event in by_logger["gunicorn.error"]), by_logger
    assert any('"GET /no-such-page HTTP/1.1" 404' in event for event in by_logger["gunicorn.access"]), by_logger
    assert "Not Found: /no-such-page" in by_logger["django.request"], by_logger


# --- The Azure Functions host -------------------------------------------------------------------------

# What the Functions Python worker does before it loads the app: a handler of its own on the root
# logger that sends each formatted record to the host. Then one timer invocation, as the host would.
_FUNCTIONS_HOST = """
import json, logging, sys

class Host(logging.Handler):
    lines = []

    def emit(self, record):
        self.lines.append({"logger": record.name, "message": self.format(record)})

logging.getLogger().addHandler(Host())
logging.getLogger().setLevel(logging.INFO)

import function_app
from azure.functions.timer import TimerRequest

functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
Host.lines.clear()  # what azure.functions logs while indexing, before the app sets Django up
functions["recompute_counts"].get_user_function()(TimerRequest())
logging.getLogger("functions_app").info("after the invocation")
print(json.dumps(Host.lines))
"""


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_functions_runner_logs_through_the_hosts_handler_in_the_projects_format(transactional_db, log_format):
    proc = subprocess.run([sys.executable, "-c", _FUNCTIONS_HOST], cwd=ROOT, env=process_env(LOG_FORMAT=log_format),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # each record reaches the host once: through its handler, not the console too
    lines = json.loads(proc.stdout)
    by_logger: dict[str, list[str]] = {}
    for line in lines:
        by_logger.setdefault(line["logger"], []).append(line["message"])
    assert {"functions_app", "ingest.services"} <= set(by_logger), lines
    if log_format == "json":
        records = json_log_records("\n".join(line["message"] for line in lines))
        [finished] = [r for r in records if r["event"] == "recount finished"]
        assert finished["status"] == "succeeded" and finished["logger"] == "ingest.services"
        [ran] = [r for r in records if r["logger"] == "functions_app" and r["event"].startswith("recompute_counts run")]
        assert ran["run_id"] == finished["run_id"] and ran["status"] == "succeeded"
    else:
        assert any(" INFO    ingest.services: recount finished run_id=" in m for m in by_logger["ingest.services"])
        assert any(m.endswith(" INFO    functions_app: after the invocation") for m in by_logger["functions_app"])
