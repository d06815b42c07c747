from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.models import IngestRun
from ingest.services.retention import MAX_CHUNK, entries_prune


class Command(cli.PipelineCommand):
    help = (
        "Delete the entries past their source's retention (retention_days / retention_max_entries, or "
        "INGEST_RETENTION_DAYS / INGEST_RETENTION_MAX_ENTRIES) with everything that points at them, in chunks "
        f"of at most {MAX_CHUNK} entries, each its own retried transaction, and leave a tombstone of each so "
        "that its feed does not bring it back. Entries with comments or pingbacks are kept unless "
        "--include-discussed. Exit status: 0 when done, 1 when the database failed, 2 for bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", action="append", default=[], metavar="ID_OR_URL",
                            help="Only this source (id or feed URL); repeatable. Default: every source.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--include-discussed", action="store_true",
                            help="Also delete entries with comments or pingbacks (kept by default).")
        parser.add_argument("--chunk-size", type=int, default=MAX_CHUNK, metavar="N",
                            help=f"Entries per chunk and transaction, 1-{MAX_CHUNK} (default {MAX_CHUNK}).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the result on stdout.")
        parser.add_argument("--trigger", default=IngestRun.Trigger.MANUAL, choices=IngestRun.Trigger.values,
                            help="What started this run, recorded on its IngestRun (default: manual).")

    def handle(self, *args, **options) -> None:
        chunk = cli.int_option(options["chunk_size"], "--chunk-size", low=1, high=MAX_CHUNK)
        source_ids = cli.source_ids(options["source"])
        report = entries_prune(source_ids=source_ids, dry_run=options["dry_run"],
                               include_discussed=options["include_discussed"], chunk_size=chunk,
                               trigger=options["trigger"])
        if options["json"]:
            cli.print_json(self.stdout, report.as_dict())
        elif options["verbosity"] >= 1:
            if options["verbosity"] >= 2:  # one line per source the policy reached
                verb = "would delete" if report.dry_run else "deleted"
                for s in report.sources:
                    self.stdout.write(f"source {s.id} {s.name}: {verb} {s.entries} entries, kept {s.kept_discussed} "
                                      f"discussed (retention_days {s.days}, retention_max_entries {s.max_entries})")
            kept = sum(source.kept_discussed for source in report.sources)
            note = f"; kept {kept} discussed entries (--include-discussed deletes them)" if kept else ""
            per_source = ", ".join(f"source {s.id}: {s.entries}" for s in report.sources if s.entries)
            per_source = f" ({per_source})" if per_source else ""
            if report.dry_run:
                cli.say(self.stdout, f"Dry run (nothing deleted): {report.entries} entries would be deleted"
                                     f"{per_source}{note}.", options=options)
            else:
                cli.say(self.stdout, f"Run {report.run_id} {report.status}: deleted {report.entries} entries{per_source} "
                                     f"in {report.chunks} chunks, {report.tombstones} tombstones written, "
                                     f"{report.retries} retries, {report.elapsed_s:.2f}s{note}.", "success", options=options)
