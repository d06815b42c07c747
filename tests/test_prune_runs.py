"""``manage.py prune_runs``: finished runs older than a cutoff go, in bounded chunks; running runs
and the last completed run of each command stay. Also its Celery task, beat entry and Azure timer."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from azure.functions.timer import TimerRequest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from functions_app.runner import command_run
from ingest import selectors, tasks
from ingest.models import IngestRun
from tests.helpers import call


def run(command: str = "ingest_feeds", *, days: float, status: str = "succeeded") -> IngestRun:
    started = timezone.now() - timedelta(days=days)
    return IngestRun.objects.create(command=command, status=status, started_at=started,
                                    finished_at=None if status == "running" else started + timedelta(seconds=3))


def prune(*args, verbosity: int = 1) -> str:
    out = StringIO()
    call_command("prune_runs", *args, verbosity=verbosity, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_old_finished_runs_go_running_runs_and_each_commands_last_completed_run_stay(db):
    old_ingest = [run(days=40 + i) for i in range(3)]
    last_recount = run("recompute_counts", days=50)  # old, but the last completed recount
    old_recount = run("recompute_counts", days=60)
    old_failed = run(days=35, status="failed")
    running = run(days=45, status="running")
    recent = run(days=1)
    recent_failed = run(days=2, status="failed")

    dry = call("prune_runs", "--older-than", "30d", "--dry-run")
    assert dry["dry_run"] is True and dry["deleted"] == 5 and IngestRun.objects.count() == 9

    report = call("prune_runs", "--older-than", "30d")
    assert report["status"] == "succeeded" and report["deleted"] == 5 and report["chunks"] == 1
    assert set(IngestRun.objects.values_list("pk", flat=True)) == {last_recount.pk, running.pk, recent.pk, recent_failed.pk}
    assert sorted(report["kept"]) == sorted([recent.pk, last_recount.pk])
    assert not {r.pk for r in (*old_ingest, old_recount, old_failed)} & set(IngestRun.objects.values_list("pk", flat=True))
    assert selectors.run_last_completed(job="recompute_counts").pk == last_recount.pk  # freshness still has it
    assert call("prune_runs", "--older-than", "30d")["deleted"] == 0  # again: nothing left to do


def test_the_last_completed_run_stays_even_when_every_run_is_old(db):
    runs = [run(days=100 + i) for i in range(5)]
    out = prune("--older-than", "12h")
    assert out.startswith("Deleted 4 runs finished before ") and f"(runs {runs[0].pk})" in out
    assert list(IngestRun.objects.values_list("pk", flat=True)) == [runs[0].pk]
    code, status_out = 0, StringIO()
    try:
        call_command("pipeline_status", "--no-celery", "--max-age", str(200 * 86400), stdout=status_out, stderr=StringIO())
    except CommandError as exc:
        code = exc.returncode
    assert code == 0 and f"Last completed ingest: run {runs[0].pk}" in status_out.getvalue()


@pytest.mark.parametrize("value, seconds", [("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45),
                                            ("3600", 3600), ("2w", 14 * 86400)])
def test_durations(db, value, seconds):
    kept, gone = run(days=0), None
    IngestRun.objects.filter(pk=kept.pk).update(finished_at=timezone.now() - timedelta(seconds=seconds * 0.9))
    gone = IngestRun.objects.create(command="ingest_feeds", status="succeeded", started_at=timezone.now() - timedelta(days=400),
                                    finished_at=timezone.now() - timedelta(seconds=seconds * 1.1))
    newest = run(days=0)  # the last completed run, kept whatever happens
    assert call("prune_runs", "--older-than", value)["deleted"] == 1
    assert set(IngestRun.objects.values_list("pk", flat=True)) == {kept.pk, newest.pk}
    assert not IngestRun.objects.filter(pk=gone.pk).exists()


@pytest.mark.parametrize("value", ["3x", "", "-5d", "0", "d", "1e9d", "nan"])
def test_a_bad_duration_is_one_sentence_and_exit_2(db, value):
    run(days=100)
    run(days=90)
    with pytest.raises(CommandError) as caught:
        prune(f"--older-than={value}")
    assert caught.value.returncode == 2 and "--older-than takes a duration such as 30d" in str(caught.value)
    assert IngestRun.objects.count() == 2


def test_the_default_age_is_INGEST_RUNS_KEEP_DAYS(db, settings):
    settings.INGEST_RUNS_KEEP_DAYS = 10
    newest, younger = run(days=1), run(days=9)
    run(days=11)
    assert call("prune_runs")["deleted"] == 1
    assert set(IngestRun.objects.values_list("pk", flat=True)) == {newest.pk, younger.pk}
    assert prune(verbosity=0) == ""


def test_statements_grow_with_chunks_not_rows(db):
    def batch(count: int) -> None:
        started = timezone.now() - timedelta(days=90)
        IngestRun.objects.bulk_create(
            [IngestRun(command="ingest_feeds", status="succeeded", started_at=started, finished_at=started) for _ in range(count)],
            batch_size=500)

    def queries(*args) -> tuple[dict, list[str]]:
        with CaptureQueriesContext(connection) as captured:
            report = call("prune_runs", "--older-than", "30d", *args)
        return report, [q["sql"] for q in captured.captured_queries]

    run(days=0)  # the last completed run: kept
    batch(2500)
    report, sql = queries()
    assert (report["deleted"], report["chunks"]) == (2500, 3)
    deletes = [q for q in sql if q.lstrip().upper().startswith("DELETE")]
    assert len(deletes) == 3
    assert max(q.count(",") for q in deletes) < 1000  # at most 1,000 ids per statement
    assert len(sql) <= 8 + 5 * report["chunks"]
    batch(2500)
    small, small_sql = queries("--chunk-size", "500")
    assert (small["deleted"], small["chunks"]) == (2500, 5) and len(small_sql) <= 8 + 5 * small["chunks"]
    assert IngestRun.objects.count() == 1


def test_the_celery_task_the_beat_entry_and_the_azure_timer(transactional_db):  # the runner closes connections
    assert settings.CELERY_BEAT_SCHEDULE["prune-runs"]["task"] == tasks.prune_runs.name == "ingest.tasks.prune_runs"
    assert settings.CELERY_BEAT_SCHEDULE["prune-runs"]["schedule"] == float(settings.PRUNE_SCHEDULE_SECONDS)
    newest = run(days=0)
    run(days=settings.INGEST_RUNS_KEEP_DAYS + 1)
    assert tasks.prune_runs()["deleted"] == 1
    run(days=settings.INGEST_RUNS_KEEP_DAYS + 2)
    report = command_run("prune_runs", TimerRequest(past_due=False))
    assert report["status"] == "succeeded" and report["deleted"] == 1 and report["trigger"] == "azure"
    assert list(IngestRun.objects.values_list("pk", flat=True)) == [newest.pk]


def test_verbosity_0_1_2_and_nothing_on_stderr(db):
    for verbosity in (0, 1, 2):
        run(days=0)
        run(days=90)
        out, err = StringIO(), StringIO()
        call_command("prune_runs", "--older-than", "30d", verbosity=verbosity, stdout=out, stderr=err)
        assert err.getvalue() == "" and IngestRun.objects.count() == verbosity + 1
        if verbosity == 0:
            assert out.getvalue() == ""
        else:
            assert out.getvalue().startswith("Deleted 1 runs finished before ") and len(out.getvalue().splitlines()) == 1
