from __future__ import annotations

from datetime import datetime, time as dtime

from django.core.management.base import CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ingest import cli
from ingest.models import IngestRun
from ingest.services.recount import MAX_CHUNK, counts_recompute


def _since(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ValueError
        moment = datetime.combine(day, dtime.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(cli.PipelineCommand):
    help = (
        "Recompute Entry.number_of_comments and number_of_pingbacks from the Comment and Pingback rows. "
        "Walks entries in primary-key order in chunks, each in its own retried transaction, and writes "
        "only entries whose stored counter is wrong. Safe beside ingest_feeds and beside itself. "
        "Exit status: 0 when the run completed, 1 when it could not work, 2 for bad arguments or configuration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", action="append", default=[], metavar="ID_OR_URL",
                            help="Only entries of this source (id or feed URL); repeatable.")
        parser.add_argument("--entry", action="append", type=int, default=[], metavar="ID",
                            help="Only this entry id; repeatable.")
        parser.add_argument("--since", metavar="DATE",
                            help="Only entries with comments or pingbacks created since DATE (YYYY-MM-DD or ISO datetime). "
                                 "Deletions are caught by a full run.")
        parser.add_argument("--chunk-size", type=int, default=1000, metavar="N",
                            help=f"Entries per chunk and transaction, 1-{MAX_CHUNK} (default 1000).")
        parser.add_argument("--dry-run", action="store_true", help="Report the drift, write nothing.")
        parser.add_argument("--dedup", action="store_true",
                            help="First repair the duplicate marks (Entry.duplicate_of) of the same entries and their "
                                 "groups; with INGEST_CROSS_FEED_DEDUP off, clear them. Not with --dry-run.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the results on stdout.")
        parser.add_argument("--trigger", default=IngestRun.Trigger.MANUAL, choices=IngestRun.Trigger.values,
                            help="What started this run, recorded on its IngestRun (default: manual).")

    def handle(self, *args, **options) -> None:
        chunk = cli.int_option(options["chunk_size"], "--chunk-size", low=1, high=MAX_CHUNK)
        since = None
        if options["dedup"] and options["dry_run"]:
            raise cli.usage_error("--dedup writes; it cannot be combined with --dry-run.")
        if options["since"]:
            try:
                since = _since(options["since"])
            except ValueError:
                raise cli.usage_error(f"--since must be a date (YYYY-MM-DD) or ISO datetime, not {options['since']!r}.") from None
        entry_ids = cli.id_options(options["entry"], "--entry", what="entry")
        source_ids = cli.source_ids(options["source"])
        as_json, verbosity = options["json"], options["verbosity"]
        bar = cli.progress_bar(self.stderr, label="recount", options=options)
        chunks = 0

        def progress(done, total):
            nonlocal chunks
            chunks += 1
            bar.update(done)
            if verbosity >= 2 and not as_json:  # one line per chunk; on a terminal above the bar
                bar.line(self.stdout, f"chunk {chunks}: {done}/{total} entries scanned")

        with bar:
            report = counts_recompute(
                source_ids=source_ids, entry_ids=entry_ids, since=since, chunk_size=chunk,
                dry_run=options["dry_run"], trigger=options["trigger"], on_start=bar.start,
                on_progress=progress, dedup=options["dedup"],
            )
        if as_json:
            cli.print_json(self.stdout, report.as_dict())
        elif verbosity >= 1:
            verb = "would change" if report.dry_run else "changed"
            prefix = "Dry run (nothing written): " if report.dry_run else f"Run {report.run_id} {report.status}: "
            cli.say(self.stdout, f"{prefix}{report.scanned} entries scanned, {report.changed} {verb}, {report.chunks} chunks, "
                                 f"{report.retries} retries in {report.elapsed_s:.2f}s"
                                 + ("" if report.duplicates_changed is None
                                    else f", {report.duplicates_changed} duplicate marks changed"),
                    "warning" if report.changed else "success", options=options)
