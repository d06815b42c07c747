"""``manage.py pipeline_status`` and ``/healthz``: with a live worker, with none, stale, failing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

from celery import Celery
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError
from django.utils import timezone

from ingest import monitoring, selectors
from ingest.models import Entry, IngestRun, TechnicalArticle
from tests.helpers import ROOT, database_url, wait_until
from tests.workers import in_process_worker

DATA = Path(__file__).parent / "data" / "feeds"
BLOG = (DATA / "blog.rss").read_bytes()
NEWS = (DATA / "news.atom").read_bytes()


def status(*args) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("pipeline_status", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def completed_run(*, ago: timedelta = timedelta(minutes=2), **fields) -> IngestRun:
    finished = timezone.now() - ago
    return IngestRun.objects.create(command="ingest_feeds", trigger="celery", status="succeeded",
                                    started_at=finished - timedelta(seconds=3), finished_at=finished, **fields)


# --- Workers ------------------------------------------------------------------------------------


def test_live_worker_and_its_active_task_are_shown(transactional_db, broker, feed_server):
    feed_server.add("/blog.rss", BLOG)
    feed_server.add("/news.atom", NEWS, content_type="application/atom+xml", delay=1.5)
    TechnicalArticle.objects.create(name="blog", feed_url=feed_server.url("/blog.rss"))
    call_command("ingest_feeds", "--trigger", "cron", stdout=StringIO(), stderr=StringIO())
    news = TechnicalArticle.objects.create(name="news", feed_url=feed_server.url("/news.atom"))
    from ingest.tasks import ingest_feeds

    with in_process_worker() as worker:
        dispatched = ingest_feeds.delay().get(timeout=20)
        wait_until(lambda: feed_server.hits("/news.atom") == 1, message="the slow feed to be requested")
        code, out, _ = status("--json", "--celery")
        report = json.loads(out)
        code_text, text, _ = status("--celery")
        wait_until(lambda: IngestRun.objects.get(pk=dispatched["run_id"]).finished_at, message="the run to finish")

    assert code == 0 and report["healthy"] and report["problems"] == []
    assert report["celery"]["answered"] == 1
    active = report["celery"]["workers"][worker.hostname]
    # (the dispatching ingest_feeds may still be finishing: look at the source tasks)
    assert [t["kwargs"]["source_id"] for t in active if t["name"] == "ingest.tasks.ingest_source"] == [news.pk]
    assert report["celery"]["queue"]["error"] == "" and report["celery"]["queue"]["total_waiting"] == 0
    assert [r["trigger"] for r in report["runs"]["ingest_feeds"]] == ["celery", "cron"]
    assert report["runs"]["ingest_feeds"][0]["status"] == "running"
    assert report["entries_last_24h"] == 5

    assert code_text == 0
    assert "Pipeline healthy" in text
    assert "Celery workers: 1 answered" in text and worker.hostname in text
    assert f"ingest.tasks.ingest_source(source_id={news.pk}, run_id={dispatched['run_id']})" in text
    assert "Queue: 0 waiting (celery 0)" in text
    assert "Entries ingested in the last 24 hours: 5" in text


def test_no_worker_answering_is_unhealthy_with_a_clear_line(db, broker):
    completed_run()
    code, out, error = status("--celery", "--timeout", "0.5")
    assert code == 3
    assert "no worker answered within 0.5s" in out
    assert "Traceback" not in out + error
    assert error == "The pipeline is unhealthy: no Celery worker answered within 0.5s."

    code, out, _ = status("--celery", "--timeout", "0.5", "--json")
    report = json.loads(out)
    assert code == 3 and not report["healthy"]
    assert report["problems"] == ["no Celery worker answered within 0.5s"]
    assert report["celery"]["answered"] == 0 and report["celery"]["workers"] == {}

    code, out, _ = status("--no-celery")
    assert code == 0 and "Celery: not checked" in out


def test_exit_status_from_the_command_line(transactional_db, broker):
    completed_run()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    result = subprocess.run([sys.executable, "manage.py", "pipeline_status", "--celery", "--timeout", "0.5"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 3, result.stderr
    assert "no worker answered" in result.stdout
    assert "unhealthy" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_broker_is_reported_not_raised(monkeypatch):
    monkeypatch.delenv("CELERY_BROKER_URL")  # it would take precedence over the app's broker
    app = Celery("nowhere", broker="redis://:secret@127.0.0.1:9/0")
    assert app.conf.broker_url.endswith(":9/0")
    workers = monitoring.workers_inspect(app, timeout=0.5)
    queue = monitoring.queue_lengths(app, timeout=0.5)
    assert workers.answered == 0 and workers.error.startswith("broker unreachable")
    assert queue.error.startswith("broker unreachable") and queue.unacked is None
    assert "secret" not in workers.broker + workers.error + queue.error


# --- Runs, sources, entries ---------------------------------------------------------------------


def test_stale_or_missing_ingest_is_unhealthy(db):
    code, out, error = status("--no-celery")
    assert code == 3 and "no ingest_feeds run has ever completed" in out + error

    completed_run(ago=timedelta(hours=2))
    IngestRun.objects.create(command="ingest_feeds", status="failed", finished_at=timezone.now(), error="boom")
    code, out, _ = status("--no-celery", "--max-age", "3600")
    assert code == 3
    assert "no ingest_feeds run completed in the last 1h00m (the last one finished 2h00m ago)" in out

    code, out, _ = status("--no-celery", "--max-age", str(3 * 3600))
    assert code == 0 and "Pipeline healthy" in out


def test_failing_sources_are_listed_with_their_reasons(db, feed_server):
    feed_server.add("/blog.rss", BLOG)
    feed_server.add("/broken.rss", b"oops", status=503)
    for path in ("/blog.rss", "/broken.rss"):
        TechnicalArticle.objects.create(name=path.strip("/"), feed_url=feed_server.url(path))
    call_command("ingest_feeds", stdout=StringIO(), stderr=StringIO())
    broken = TechnicalArticle.objects.get(name="broken.rss")

    code, out, _ = status("--no-celery", "--json")
    report = json.loads(out)
    assert code == 0  # a failing feed is reported, the pipeline itself is healthy
    assert report["sources"]["failing"] == 1
    (failing,) = report["sources"]["failing_sources"]
    assert (failing["id"], failing["consecutive_failures"], failing["last_status"]) == (broken.pk, 1, 503)
    assert "503" in failing["error"]
    assert report["entries_last_24h"] == Entry.objects.count() == 5
    assert report["runs"]["ingest_feeds"][0]["status"] == "partial"
    assert report["runs"]["recompute_counts"] == []

    code, text, _ = status("--no-celery")
    assert "Sources: 2 active of 2, 0 due now, 0 being ingested, 1 failing or backed off" in text
    (row,) = [line for line in text.splitlines() if line.split()[:2] == [str(broken.pk), "broken.rss"]]
    assert "broken.rss" in row and "503" in row and re.search(r"in [45]m\d\ds", row)
    assert "recompute_counts" in text and "never run" in text


def test_unreachable_database_is_unhealthy_not_a_traceback(db, monkeypatch):
    def down(**_):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(selectors, "runs_recent", down)
    code, out, error = status("--no-celery")
    assert code == 3 and "database unreachable: could not connect to server" in out
    assert "Traceback" not in out + error


def test_bad_arguments_are_usage_errors(db):
    assert status("--runs", "0")[0] == 2
    assert status("--max-age", "0")[0] == 2
    assert status("--timeout", "0")[0] == 2


# --- /healthz and the admin ---------------------------------------------------------------------


def test_healthz_reports_database_and_last_run_age_without_secrets(db, client):
    run = completed_run(ago=timedelta(minutes=5))
    response = client.get("/healthz")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["ingest"]["run_id"] == run.pk and 290 < body["ingest"]["age_s"] < 320
    assert body["ingest"]["max_age_s"] == settings.PIPELINE_HEALTH_MAX_AGE and body["ingest"]["stale"] is False
    assert body["recount"] == {"run_id": None, "finished_at": None, "age_s": None}
    text = response.content.decode()
    db_settings = settings.DATABASES["default"]
    for secret in (settings.SECRET_KEY, settings.CELERY_BROKER_URL, str(db_settings["NAME"]), db_settings.get("PASSWORD")):
        if secret:
            assert secret not in text


def test_healthz_says_stale_but_stays_200(db, client):
    completed_run(ago=timedelta(seconds=settings.PIPELINE_HEALTH_MAX_AGE + 60))
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "stale" and response.json()["ingest"]["stale"] is True


def test_healthz_is_503_when_the_database_is_unreachable(db, client, monkeypatch):
    def down():
        raise OperationalError("connection to server at 10.0.0.5 failed: password authentication failed")

    monkeypatch.setattr(selectors, "database_ping", down)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"
    assert "10.0.0.5" not in response.content.decode()


def test_healthz_refuses_writes_and_the_admin_is_mounted(db, client):
    assert client.post("/healthz").status_code == 405
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
