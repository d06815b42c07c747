from __future__ import annotations

import math
import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import CommandParser

from ingest import cli
from ingest.models import IngestRun
from ingest.services.prune import MAX_CHUNK, runs_prune

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)", re.IGNORECASE)
OLDER_THAN_MAX = 100 * 365 * 86400  # a century: more overflows the date arithmetic


def duration_seconds(value) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a number of seconds; a usage error otherwise."""
    match = DURATION.fullmatch(str(value).strip())
    seconds = float(match[1]) * UNITS[(match[2] or "s").lower()] if match else math.nan
    if not 0 < seconds <= OLDER_THAN_MAX:  # also false for nan
        raise cli.usage_error(f"--older-than takes a duration such as 30d, 12h, 90m or a number of seconds "
                              f"(more than 0, at most 100 years), not {str(value)!r}.")
    return seconds


class Command(cli.PipelineCommand):
    help = (
        "Delete the finished IngestRun rows older than --older-than (default: INGEST_RUNS_KEEP_DAYS days), "
        f"in chunks of at most {MAX_CHUNK} runs, each its own retried transaction. Never deletes a running run, "
        "nor the last completed run of each command (pipeline_status judges freshness from it). Exit status: "
        "0 when done, 1 when the database failed, 2 for bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", metavar="DURATION", default=None,
                            help="Runs that finished longer ago than this: 30d, 12h, 90m, 45s or seconds "
                                 "(default: INGEST_RUNS_KEEP_DAYS days).")
        parser.add_argument("--chunk-size", type=int, default=MAX_CHUNK, metavar="N",
                            help=f"Runs per chunk and transaction, 1-{MAX_CHUNK} (default {MAX_CHUNK}).")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the result on stdout.")
        parser.add_argument("--trigger", default=IngestRun.Trigger.MANUAL, choices=IngestRun.Trigger.values,
                            help="What started this prune (cron, celery, azure; default manual); reported only.")

    def handle(self, *args, **options) -> None:
        if options["older_than"] is None:
            seconds = settings.INGEST_RUNS_KEEP_DAYS * 86400
        else:
            seconds = duration_seconds(options["older_than"])
        chunk = cli.int_option(options["chunk_size"], "--chunk-size", low=1, high=MAX_CHUNK)
        result = runs_prune(older_than=timedelta(seconds=seconds), dry_run=options["dry_run"], chunk_size=chunk)
        if options["json"]:
            cli.print_json(self.stdout, {"run_id": None, "status": "succeeded", "trigger": options["trigger"],
                                         **result.as_dict()})
        elif options["verbosity"] >= 1:
            kept = (f"; kept the last completed run of each command (runs {', '.join(map(str, result.kept))})"
                    if result.kept else "")
            if result.dry_run:
                self.stdout.write(f"Dry run (nothing deleted): {result.deleted} runs finished before "
                                  f"{result.cutoff.isoformat(timespec='seconds')} would be deleted{kept}.")
            else:
                self.stdout.write(f"Deleted {result.deleted} runs finished before {result.cutoff.isoformat(timespec='seconds')} "
                                  f"in {result.chunks} chunks, {result.retries} retries, {result.elapsed_s:.2f}s{kept}.")
