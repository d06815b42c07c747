from __future__ import annotations

import argparse
import time
from datetime import datetime

from django import db
from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from ingest import cli, monitoring, selectors
from ingest.errors import first_line

MAX_AGE_MAX = 10 * 365 * 86400  # ten years, as for PIPELINE_HEALTH_MAX_AGE: more overflows the date arithmetic


_STATUS_MEANING = {"failed": "error", "partial": "warning", "succeeded": "success"}


def _fraction(value) -> float:
    """--tolerance: a fraction from 0 to 1 (finite), as PIPELINE_HEALTH_TOLERANCE."""
    try:
        fraction = float(str(value).strip())
    except ValueError:
        raise cli.usage_error(f"--tolerance must be a fraction from 0 to 1, not {value!r}.") from None
    if not 0 <= fraction <= 1:  # also false for nan
        raise cli.usage_error(f"--tolerance must be a fraction from 0 to 1, not {value}.")
    return fraction


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _run_dict(run) -> dict:
    return {
        "id": run.pk, "command": run.command, "trigger": run.trigger, "status": run.status,
        "started_at": run.started_at.isoformat(), "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "elapsed_s": None if run.elapsed_s is None else round(run.elapsed_s, 3), "hostname": run.hostname,
        "sources_total": run.sources_total, "sources_fetched": run.sources_fetched,
        "sources_not_modified": run.sources_not_modified, "sources_failed": run.sources_failed,
        "sources_internal_errors": run.sources_internal_errors,
        "entries_created": run.entries_created, "entries_updated": run.entries_updated,
        "entries_unchanged": run.entries_unchanged, "error": run.error, "sources_deferred": run.sources_deferred,
    }


def _source_dict(source) -> dict:
    return {
        "id": source.pk, "name": source.name, "url": source.feed_url, "active": source.active,
        "consecutive_failures": source.consecutive_failures, "last_status": source.last_status,
        "last_fetched_at": source.last_fetched_at.isoformat() if source.last_fetched_at else None,
        "next_fetch_at": source.next_fetch_at.isoformat() if source.next_fetch_at else None,
        "schedule_reason": source.schedule_reason, "error": source.last_error,
        "bot_wall": source.last_error.startswith(selectors.BOT_WALL_PREFIX),
    }


class Command(cli.PipelineCommand):
    help = (
        "Show the pipeline's health: the last runs of each job, the sources failing or backed off and why, "
        "the entries ingested in the last 24 hours, and (when Celery runs the pipeline) the live workers, "
        "their active tasks and the queue length. Exit status: 0 when healthy, 3 when unhealthy (no "
        "ingest run completed within --max-age, a source failing on an internal error, a run still running "
        "past the lease TTL, the database unreachable, or no Celery worker answering), "
        "so that cron or a monitor can alert on it; 4 when the pipeline works but more than --tolerance of the "
        "active sources are failing or blocked (docs/health.md); 2 for bad arguments or configuration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object on stdout.")
        parser.add_argument("--runs", type=int, default=5, metavar="N", help="Runs shown per job, 1-100 (default 5).")
        parser.add_argument("--max-age", type=int, default=None, metavar="SECONDS",
                            help="Unhealthy when no ingest_feeds run completed within this many seconds "
                                 "(default: PIPELINE_HEALTH_MAX_AGE).")
        parser.add_argument("--celery", action=argparse.BooleanOptionalAction, default=None,
                            help="Check the Celery workers and queue, and require a worker to answer "
                                 "(default: PIPELINE_CELERY, on when CELERY_BROKER_URL is set).")
        parser.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS",
                            help="How long to wait for workers to answer (default 1).")
        parser.add_argument("--tolerance", default=None, metavar="FRACTION",
                            help="Exit 4 when more than this fraction of the active sources is failing or blocked, "
                                 "0-1 (default: PIPELINE_HEALTH_TOLERANCE; 1: never).")

    def handle(self, *args, **options) -> None:
        runs_per_job = cli.int_option(options["runs"], "--runs", low=1, high=100)
        max_age = settings.PIPELINE_HEALTH_MAX_AGE
        if options["max_age"] is not None:
            max_age = cli.int_option(options["max_age"], "--max-age", low=1, high=MAX_AGE_MAX)
        timeout = cli.seconds_option(options["timeout"], "--timeout", high=30)
        check_celery = settings.PIPELINE_CELERY if options["celery"] is None else options["celery"]
        tolerance = settings.PIPELINE_HEALTH_TOLERANCE if options["tolerance"] is None else _fraction(options["tolerance"])

        report = self._collect(now=timezone.now(), runs_per_job=runs_per_job, max_age=max_age,
                               check_celery=check_celery, timeout=timeout, tolerance=tolerance)
        if options["json"]:
            cli.print_json(self.stdout, report)
        elif options["verbosity"] >= 1:
            self._print(report)
        if not report["healthy"]:
            raise CommandError("The pipeline is unhealthy: " + "; ".join(report["problems"]) + ".",
                               returncode=report["exit_status"])

    # --- gathering ------------------------------------------------------------------------------

    def _collect(self, *, now, runs_per_job: int, max_age: int, check_celery: bool, timeout: float,
                 tolerance: float) -> dict:
        problems: list[str] = []
        report: dict = {"checked_at": now.isoformat(), "healthy": True, "problems": problems, "database": "ok"}
        try:
            runs = selectors.runs_recent(per_job=runs_per_job)
            freshness = selectors.job_freshness(job="ingest_feeds", now=now, max_age_s=max_age)
            total_failing, failing = selectors.sources_failing()
            counts = selectors.sources_counts(now=now)
            report.update(
                runs={job: [_run_dict(run) for run in job_runs] for job, job_runs in runs.items()},
                freshness=freshness.as_dict(),
                sources={"total": counts.total, "active": counts.active, "due": counts.due, "leased": counts.leased,
                         "failing": total_failing, "failing_sources": [_source_dict(s) for s in failing]},
                entries_last_24h=selectors.entries_ingested_count(now=now),
            )
            report["sources"]["bot_walls"] = selectors.sources_bot_walls()
            report["health"] = self._health(now=now, tolerance=tolerance)
            report["websub"] = selectors.websub_states()
            internal_total, internal = selectors.sources_internal_errors()
            report["sources"].update(internal_errors=internal_total,
                                     internal_error_sources=[_source_dict(s) for s in internal])
            if internal_total:
                problems.append(f"{internal_total} source(s) failed on an internal error (a bug: see the logs), "
                                f"e.g. {internal[0].feed_url}: {internal[0].last_error[:200]}")
            lease_ttl = settings.INGEST_LEASE_SECONDS
            overdue = selectors.runs_overdue(now=now, max_running_s=lease_ttl)
            report["runs_overdue"] = [_run_dict(run) for run in overdue]
            for run in overdue:
                problems.append(f"{run.command} run {run.pk} has been running since {run.started_at.isoformat()}, "
                                f"longer than the {_duration(lease_ttl)} lease; its process may be gone (the next "
                                f"ingest run closes it)")
            if freshness.stale:
                if freshness.age_s is None:
                    problems.append("no ingest_feeds run has ever completed")
                else:
                    problems.append(f"no ingest_feeds run completed in the last {_duration(max_age)} "
                                    f"(the last one finished {_duration(freshness.age_s)} ago)")
        except db.Error as exc:  # the base: through ODBC Driver 18 a deadlock is not a DatabaseError
            report["database"] = "unreachable"
            problems.append(f"database unreachable: {first_line(exc, 200)}")

        celery: dict = {"checked": check_celery}
        if check_celery:
            from pipeline.celery import app

            workers = monitoring.workers_inspect(app, timeout=timeout)
            queue = monitoring.queue_lengths(app, timeout=timeout)
            celery.update(workers.as_dict(), queue=queue.as_dict())
            if workers.error:
                problems.append(f"Celery broker unreachable ({workers.broker})")
            elif not workers.answered:
                problems.append(f"no Celery worker answered within {timeout:g}s")
        report["celery"] = celery
        # The pipeline's own problems first (3); then the feeds' (4), only when the pipeline works.
        health = report.get("health")
        report["exit_status"] = cli.EXIT_UNHEALTHY if problems else cli.EXIT_OK
        if health and health["over_tolerance"]:
            problems.append(f"{health['broken']} of {health['active']} active sources are failing or blocked, more "
                            f"than the tolerance of {health['tolerance']:.0%}")
            if report["exit_status"] == cli.EXIT_OK:
                report["exit_status"] = cli.EXIT_SOURCES_UNHEALTHY
        report["healthy"] = not problems
        return report

    @staticmethod
    def _health(*, now, tolerance: float) -> dict:
        """The sources per health state, and whether the broken ones (failing, blocked) pass the
        tolerance: more than ``tolerance`` of the active sources (docs/health.md)."""
        counts = selectors.health_counts(now=now)
        active = sum(n for state, n in counts.items() if state != "gone")
        broken = counts["failing"] + counts["blocked"]
        return {"counts": counts, "active": active, "broken": broken, "tolerance": tolerance,
                "over_tolerance": broken > tolerance * active}

    # --- printing -------------------------------------------------------------------------------

    def _print(self, report: dict) -> None:
        out = self.stdout
        if report["healthy"]:
            cli.say(out, f"Pipeline healthy ({report['checked_at']})", "success", options=self.options)
        else:
            cli.say(out, f"Pipeline UNHEALTHY ({report['checked_at']})", "error", options=self.options)
            for problem in report["problems"]:
                cli.say(out, f"  - {problem}", "error", options=self.options)
        if report["database"] == "ok":
            self._print_runs(report)
            self._print_sources(report)
            out.write("")
            out.write(f"Entries ingested in the last 24 hours: {report['entries_last_24h']}")
        self._print_celery(report["celery"])

    def _print_runs(self, report: dict) -> None:
        now = time.time()
        rows = []
        for job, runs in report["runs"].items():
            if not runs:
                rows.append([job, "", "", "never run", "", "", "", "", "", "", ""])
            for run in runs:
                started = datetime.fromisoformat(run["started_at"]).timestamp()
                counts = ["", "", "", ""]
                if job == "ingest_feeds":
                    done = run["sources_fetched"] + run["sources_failed"] + run.get("sources_deferred", 0)
                    # A fanned-out run still running: sources reported so far / sources claimed.
                    sources = f"{done}/{run['sources_total']}" if run["status"] == "running" else done
                    counts = [sources, run["sources_failed"], run["entries_created"], run["entries_updated"]]
                rows.append([
                    job, run["id"], run["trigger"], cli.Styled(run["status"], _STATUS_MEANING.get(run["status"])),
                    f"{_duration(now - started)} ago", _duration(run["elapsed_s"]) if run["elapsed_s"] is not None else "…",
                    *counts, cli.shorten(run["error"].splitlines()[0] if run["error"] else "", 60),
                ])
        self.stdout.write("")
        self.stdout.write("Last runs")
        self.stdout.write(cli.table(["job", "run", "trigger", "status", "started", "took", "sources", "failed", "new",
                                     "updated", "error"], rows, align_right={1, 6, 7, 8, 9},
                                    colour=cli.wants_colour(self.stdout, self.options)))
        fresh = report["freshness"]
        if fresh["age_s"] is not None:
            if fresh["last_idle_at"] and fresh["last_idle_at"] == fresh["finished_at"]:
                last_run = f"; last completed run {fresh['run_id']}" if fresh["run_id"] else ""
                self.stdout.write(f"Last ingest tick: nothing was due, {_duration(fresh['age_s'])} ago "
                                  f"(unhealthy after {_duration(fresh['max_age_s'])}{last_run})")
            else:
                self.stdout.write(f"Last completed ingest: run {fresh['run_id']}, {_duration(fresh['age_s'])} ago "
                                  f"(unhealthy after {_duration(fresh['max_age_s'])})")
        if fresh["idle_ticks"]:
            self.stdout.write(f"Idle ticks (scheduled runs that found nothing due, not recorded as runs): "
                              f"{fresh['idle_ticks']}, the last {_duration(self._ago(fresh['last_idle_at']))} ago")

    @staticmethod
    def _ago(iso: str) -> float:
        return (timezone.now() - datetime.fromisoformat(iso)).total_seconds()

    def _print_sources(self, report: dict) -> None:
        sources = report["sources"]
        self.stdout.write("")
        self.stdout.write(f"Sources: {sources['active']} active of {sources['total']}, {sources['due']} due now, "
                          f"{sources['leased']} being ingested, {sources['failing']} failing or backed off"
                          + (f" ({sources['bot_walls']} blocked by bot protection)" if sources.get("bot_walls") else ""))
        if report.get("health"):
            self.stdout.write("Health: " + ", ".join(f"{n} {state}" for state, n in report["health"]["counts"].items()))
        if report.get("websub"):
            self.stdout.write("WebSub subscriptions: " + ", ".join(f"{n} {state}" for state, n in report["websub"].items()))
        if not sources["failing_sources"]:
            return
        now = timezone.now()
        rows = []
        for source in sources["failing_sources"]:
            next_at = source["next_fetch_at"]
            if not source["active"]:
                retry = "deactivated"
            elif next_at:
                wait = (datetime.fromisoformat(next_at) - now).total_seconds()
                retry = f"in {_duration(wait)}" if wait > 0 else "due"
            else:
                retry = "due"
            rows.append([source["id"], cli.shorten(source["name"] or source["url"], 30), source["consecutive_failures"],
                         source["last_status"] or "", retry, cli.shorten(source["error"].splitlines()[0] if source["error"] else "", 70)])
        self.stdout.write(cli.table(["id", "source", "failures", "http", "next try", "reason"], rows, align_right={0, 2}))
        if sources["failing"] > len(rows):
            self.stdout.write(f"… and {sources['failing'] - len(rows)} more (see the admin, filtered by failures)")

    def _print_celery(self, celery: dict) -> None:
        self.stdout.write("")
        if not celery["checked"]:
            self.stdout.write("Celery: not checked (PIPELINE_CELERY is off; --celery checks the workers and queue)")
            return
        if celery["error"]:
            cli.say(self.stdout, f"Celery workers: {celery['error']}", "error", options=self.options)
            return
        if not celery["answered"]:
            cli.say(self.stdout, f"Celery workers: no worker answered within {celery['timeout_s']:g}s "
                                 f"(broker {celery['broker']})", "error", options=self.options)
        else:
            self.stdout.write(f"Celery workers: {celery['answered']} answered (broker {celery['broker']})")
            rows = []
            for name, tasks in celery["workers"].items():
                if not tasks:
                    rows.append([name, 0, "idle"])
                for i, task in enumerate(tasks):
                    args = ", ".join(f"{k}={v}" for k, v in task["kwargs"].items() if k != "owner")
                    running = f" for {_duration(task['running_s'])}" if task["running_s"] is not None else ""
                    rows.append([name if i == 0 else "", len(tasks) if i == 0 else "",
                                 cli.shorten(f"{task['name']}({args}){running}", 90)])
            self.stdout.write(cli.table(["worker", "active", "task"], rows, align_right={1}))
        queue = celery["queue"]
        if queue["error"]:
            self.stdout.write(f"Queue: {queue['error']}")
        else:
            per_queue = ", ".join(f"{name} {count}" for name, count in queue["waiting"].items())
            self.stdout.write(f"Queue: {queue['total_waiting']} waiting ({per_queue}), {queue['unacked']} delivered "
                              "and not yet acknowledged")
