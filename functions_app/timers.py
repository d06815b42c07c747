"""Timer-triggered functions: one per scheduled command, each a thin call into ``runner``.

Schedules are NCRONTAB expressions with six fields (second minute hour day month weekday), read
from app settings by the ``%NAME%`` syntax, so changing one needs no redeploy. ``use_monitor``
keeps the schedule's last and next occurrence in storage, so a run missed while the app was
down or scaled to zero starts as soon as the host is back (past due); ``run_on_startup`` stays
off, or every restart and scale-out would start an extra run.
"""

from __future__ import annotations

import azure.functions as func

from functions_app.runner import command_run

bp = func.Blueprint()


@bp.function_name(name="ingest_feeds")
@bp.timer_trigger(arg_name="timer", schedule="%INGEST_FEEDS_SCHEDULE%", run_on_startup=False, use_monitor=True)
def ingest_feeds(timer: func.TimerRequest) -> None:
    command_run("ingest_feeds", timer)


@bp.function_name(name="recompute_counts")
@bp.timer_trigger(arg_name="timer", schedule="%RECOMPUTE_COUNTS_SCHEDULE%", run_on_startup=False, use_monitor=True)
def recompute_counts(timer: func.TimerRequest) -> None:
    command_run("recompute_counts", timer)


@bp.function_name(name="prune_runs")
@bp.timer_trigger(arg_name="timer", schedule="%PRUNE_RUNS_SCHEDULE%", run_on_startup=False, use_monitor=True)
def prune_runs(timer: func.TimerRequest) -> None:
    command_run("prune_runs", timer)


@bp.function_name(name="prune_entries")
@bp.timer_trigger(arg_name="timer", schedule="%PRUNE_ENTRIES_SCHEDULE%", run_on_startup=False, use_monitor=True)
def prune_entries(timer: func.TimerRequest) -> None:
    command_run("prune_entries", timer)
