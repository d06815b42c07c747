"""The Azure Functions timer app, without the Functions host.

The functions are taken from the ``FunctionApp`` the host would index (``function_app.app``) and
called with a real ``azure.functions.timer.TimerRequest``; they run the real commands against the
real database and a real HTTP server on 127.0.0.1. What the host itself does (reading host.json,
resolving ``%SETTING%`` schedules, firing the timer, storage for ``use_monitor``) is not run here:
docs/azure.md says so.
"""

import functools
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import azure.functions as azure_functions
import pytest
from azure.functions.timer import TimerRequest
from django.conf import settings
from django.core.management import get_commands
from django.db import DatabaseError

import function_app
from functions_app import runner, timers
from ingest.models import Entry, IngestRun, TechnicalArticle

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "feeds"
SCHEDULES = {"ingest_feeds": "INGEST_FEEDS_SCHEDULE", "recompute_counts": "RECOMPUTE_COUNTS_SCHEDULE",
             "prune_runs": "PRUNE_RUNS_SCHEDULE", "prune_entries": "PRUNE_ENTRIES_SCHEDULE"}


@functools.cache
def functions() -> dict:
    # The host indexes once per process; FunctionApp.get_functions() refuses to run twice.
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


def invoke(name: str, **timer) -> None:
    functions()[name].get_user_function()(TimerRequest(**timer))


def runs(command: str) -> list[IngestRun]:
    return list(IngestRun.objects.filter(command=command).order_by("pk"))


# --- Indexing and binding metadata (what the host reads) -----------------------------------------


@pytest.mark.nodb
def test_the_app_indexes_one_timer_function_per_scheduled_command():
    found = functions()
    assert set(found) == set(SCHEDULES)
    # The root app holds exactly the blueprint's functions, with the same bindings.
    from_blueprint = azure_functions.FunctionApp()
    from_blueprint.register_blueprint(timers.bp)
    assert {f.get_function_name(): f.get_function_json() for f in from_blueprint.get_functions()} == \
        {name: f.get_function_json() for name, f in found.items()}
    commands = get_commands()
    for name, setting in SCHEDULES.items():
        assert name in commands, f"{name} is not a management command"
        bindings = found[name].get_bindings_dict()["bindings"]
        assert len(bindings) == 1
        trigger = {key: str(value) if key == "direction" else value for key, value in bindings[0].items()}
        assert trigger == {"type": "timerTrigger", "direction": "IN", "name": "timer",
                           "schedule": f"%{setting}%", "runOnStartup": False, "useMonitor": True}
        assert json.loads(found[name].get_function_json())["bindings"][0]["useMonitor"] is True


@pytest.mark.nodb
def test_root_module_is_one_line_beside_host_json():
    lines = [line for line in (ROOT / "function_app.py").read_text().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("from functions_app import app")
    assert (ROOT / "host.json").is_file()


def _ncrontab_ok(expression: str) -> bool:
    fields = expression.split()
    limits = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]
    if len(fields) != 6:
        return False
    for field, (low, high) in zip(fields, limits):
        for part in field.split(","):
            match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            if not match:
                return False
            numbers = [int(n) for n in match.group(2, 3, 4)[:2] if n is not None]
            if any(not low <= n <= high for n in numbers) or match.group(4) == "0":
                return False
    return True


@pytest.mark.nodb
@pytest.mark.parametrize("expression, ok", [
    ("0 */15 * * * *", True), ("0 30 3 * * *", True), ("0 0 9-17 * * 1-5", True),
    ("*/15 * * * *", False), ("0 61 * * * *", False), ("0 */0 * * * *", False),
])
def test_ncrontab_check_itself(expression, ok):
    assert _ncrontab_ok(expression) is ok


@pytest.mark.nodb
def test_local_settings_example_has_every_setting_the_app_reads():
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"]  # timers with use_monitor keep their schedule state there
    assert values["DJANGO_SETTINGS_MODULE"] == runner.DEFAULT_SETTINGS
    assert values["DATABASE_URL"].startswith("mssql://")
    for setting in SCHEDULES.values():
        assert _ncrontab_ok(values[setting]), f"{setting}={values[setting]!r} is not a six-field NCRONTAB expression"
    ignored = subprocess.run(["git", "check-ignore", "-q", "local.settings.json"], cwd=ROOT)
    assert ignored.returncode == 0, "local.settings.json (secrets) must be ignored by git"


@pytest.mark.nodb
def test_host_json():
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}
    assert host["logging"]["logLevel"]["Function"] == "Information"
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout = hours * 3600 + minutes * 60 + seconds
    # At most the Consumption plan's 10 minutes. A run the host stops at the timeout leaves its
    # leases behind; they must outlive it, or a later run could take a source still being written.
    assert 0 < timeout <= 600 < settings.INGEST_LEASE_SECONDS


@pytest.mark.nodb
def test_funcignore_ships_the_app_and_leaves_out_secrets_and_dev_files(tmp_path):
    # Core Tools reads .funcignore with gitignore rules; ask git's own matcher, in an empty repo.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text((ROOT / ".funcignore").read_text())

    def ignored(path: str) -> bool:
        return subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--no-index", "-q", path]).returncode == 0

    shipped = ["function_app.py", "host.json", "requirements.txt", "functions_app/timers.py", "pipeline/settings.py",
               "ingest/services/ingest.py", "ingest/migrations/0001_initial.py", "manage.py"]
    assert [path for path in shipped if ignored(path)] == []
    left_out = ["local.settings.json", ".env", ".venv/bin/python", "tests/test_compose.py", "var/pipeline.sqlite3",
                "__pycache__/x.pyc", "docs/azure.md", ".git/config"]
    assert [path for path in left_out if not ignored(path)] == []


# --- Invocations against the real database -------------------------------------------------------


@pytest.fixture
def two_sources(transactional_db, feed_server):
    feed_server.add("/blog.rss", (DATA / "blog.rss").read_bytes())
    feed_server.add("/news.atom", (DATA / "news.atom").read_bytes(), content_type="application/atom+xml")
    return [TechnicalArticle.objects.create(name=p, feed_url=feed_server.url(p)) for p in ("/blog.rss", "/news.atom")]


def test_ingest_timer_runs_the_command_and_records_an_azure_run(two_sources, caplog):
    caplog.set_level(logging.INFO, logger="functions_app")
    invoke("ingest_feeds")
    assert Entry.objects.count() == 8
    [run] = runs("ingest_feeds")
    assert (run.trigger, run.status, run.entries_created, run.sources_fetched) == ("azure", "succeeded", 8, 2)
    assert run.finished_at is not None
    [record] = [r for r in caplog.records if r.name == "functions_app"]
    assert record.levelno == logging.INFO and record.run_id == run.pk and record.past_due is False
    # The next tick finds nothing due: a second run, recorded, that writes nothing.
    invoke("ingest_feeds")
    assert [(r.trigger, r.status, r.sources_fetched, r.entries_created) for r in runs("ingest_feeds")] == [
        ("azure", "succeeded", 2, 8), ("azure", "succeeded", 0, 0)]


def test_past_due_timer_is_logged_and_still_runs(transactional_db, caplog):
    caplog.set_level(logging.INFO, logger="functions_app")
    status = {"Last": "2026-11-20T03:30:00+00:00", "Next": "2026-11-21T03:30:00+00:00", "LastUpdated": "2026-11-20T03:30:00+00:00"}
    invoke("recompute_counts", past_due=True, schedule_status=status)
    [warning] = [r for r in caplog.records if r.name == "functions_app" and r.levelno == logging.WARNING]
    assert "past due" in warning.getMessage() and warning.schedule_last == status["Last"]
    [run] = runs("recompute_counts")
    assert (run.trigger, run.status) == ("azure", "succeeded")


def test_a_failed_run_is_recorded_then_fails_the_invocation(transactional_db, feed_server):
    feed_server.add("/broken", b"oops", status=500)
    TechnicalArticle.objects.create(name="broken", feed_url=feed_server.url("/broken"))
    with pytest.raises(runner.RunFailed, match=r"ingest_feeds run \d+ failed: .*500"):
        invoke("ingest_feeds")
    [run] = runs("ingest_feeds")
    assert (run.trigger, run.status, run.sources_failed) == ("azure", "failed", 1)
    assert "500" in run.error and run.finished_at is not None


def test_a_partial_run_is_a_warning_not_a_failed_invocation(transactional_db, feed_server, caplog):
    feed_server.add("/blog.rss", (DATA / "blog.rss").read_bytes())
    feed_server.add("/broken", b"oops", status=500)
    for path in ("/blog.rss", "/broken"):
        TechnicalArticle.objects.create(name=path, feed_url=feed_server.url(path))
    invoke("ingest_feeds")
    [run] = runs("ingest_feeds")
    assert (run.status, run.sources_failed, run.entries_created) == ("partial", 1, 5)
    assert any(r.name == "functions_app" and r.levelno == logging.WARNING for r in caplog.records)


def test_a_run_that_dies_is_recorded_failed_and_the_error_reaches_azure(transactional_db, monkeypatch):
    article = TechnicalArticle.objects.create(name="a", feed_url="https://example.com/feed")
    Entry.objects.create(technical_article=article, headline="h", body_text="b", pub_date="2026-01-01",
                         guid="g", published_at="2026-01-01T00:00:00Z", content_hash="x")

    def broken(*args, **kwargs):
        raise DatabaseError("simulated: the database went away mid-run")

    monkeypatch.setattr("ingest.counters.chunk_reconcile", broken)
    with pytest.raises(DatabaseError, match="went away"):
        invoke("recompute_counts")
    [run] = runs("recompute_counts")
    assert (run.trigger, run.status) == ("azure", "failed") and "went away" in run.error


def test_connections_are_closed_before_and_after_each_run(transactional_db, monkeypatch):
    import django.db

    events = []
    original = django.db.close_old_connections
    monkeypatch.setattr(django.db, "close_old_connections", lambda **kw: (events.append("close"), original(**kw)))
    monkeypatch.setattr("django.core.management.call_command",
                        lambda *a, stdout, **kw: (events.append("command"), stdout.write('{"run_id": 1, "status": "succeeded"}')))
    invoke("recompute_counts")
    assert events == ["close", "command", "close"]


# --- A cold worker process, as the host starts it ------------------------------------------------

COLD_START = """
import json, os, sys
assert "DJANGO_SETTINGS_MODULE" not in os.environ
import django
calls = []
real_setup = django.setup
django.setup = lambda *a, **kw: (calls.append(1), real_setup(*a, **kw))
import function_app                      # what the host imports to index the functions
from django.apps import apps
fn = {f.get_function_name(): f for f in function_app.app.get_functions()}
indexed, ready_after_import = sorted(fn), apps.ready
from azure.functions.timer import TimerRequest
from functions_app import runner, timers
runner.django_setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
fn["recompute_counts"].get_user_function()(TimerRequest())
fn["recompute_counts"].get_user_function()(TimerRequest())
from ingest.models import IngestRun
print(json.dumps({"indexed": indexed, "ready_after_import": ready_after_import, "setup_calls": len(calls),
                  "settings": os.environ["DJANGO_SETTINGS_MODULE"],
                  "runs": list(IngestRun.objects.values_list("command", "trigger", "status"))}))
"""

UNREACHABLE = """
from azure.functions.timer import TimerRequest
import function_app
from functions_app.runner import RunFailed
fn = {f.get_function_name(): f for f in function_app.app.get_functions()}["ingest_feeds"]
try:
    fn.get_user_function()(TimerRequest())
except RunFailed as exc:
    print("RunFailed:", exc)
"""


def _cold(script: str, env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**clean, "DJANGO_DEBUG": "1", **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.nodb
def test_cold_worker_sets_django_up_once_with_the_default_settings(tmp_path):
    result = _cold(COLD_START, {"DATABASE_URL": f"sqlite:///{tmp_path}/functions.sqlite3"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["indexed"] == ["ingest_feeds", "prune_entries", "prune_runs", "recompute_counts"]
    assert report["ready_after_import"] is False  # indexing never needs the database or settings
    assert report["setup_calls"] == 1 and report["settings"] == "pipeline.settings"
    assert report["runs"] == [["recompute_counts", "azure", "succeeded"]] * 2


@pytest.mark.nodb
def test_unreachable_database_fails_the_invocation_with_a_sentence():
    result = _cold(UNREACHABLE, {"DATABASE_URL": "postgres://nobody@127.0.0.1:9/none?connect_timeout=2"})
    assert result.returncode == 0, result.stderr
    assert "RunFailed: ingest_feeds could not run:" in result.stdout and "unreachable" in result.stdout
