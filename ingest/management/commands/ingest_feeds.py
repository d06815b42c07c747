from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.models import IngestRun
from ingest.services.ingest import feeds_ingest


class Command(cli.PipelineCommand):
    help = (
        "Fetch the registered RSS/Atom feeds and upsert their entries. By default only active sources "
        "that are due are fetched; --all ignores the schedule. Conditional GET skips unchanged feeds; "
        "unchanged entries cause no write; a 200 with the body stored last time is not parsed again "
        "(not modified, same body; --all parses it). A failing feed is reported and backed off and never stops "
        "the others. Exit status: 0 when the run completed (even if some feeds failed), 1 when the run "
        "could not work (e.g. database unreachable), 2 for bad arguments or configuration."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source", action="append", default=[], metavar="ID_OR_URL",
            help="Only this source (its id or feed URL); repeatable. Selected sources are fetched even if not due.",
        )
        parser.add_argument("--all", action="store_true",
                            help="Fetch every active source now, ignoring the schedule, and parse every 200 even "
                                 "when its body is the one stored last time.")
        parser.add_argument("--dry-run", action="store_true", help="Fetch and parse, report what would change, write nothing.")
        parser.add_argument("--workers", type=int, default=None, metavar="N",
                            help="Concurrent fetches (default: INGEST_WORKERS, 4).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the run's results on stdout.")
        parser.add_argument("--trigger", default=IngestRun.Trigger.MANUAL, choices=IngestRun.Trigger.values,
                            help="What started this run, recorded on its IngestRun (default: manual).")

    def handle(self, *args, **options) -> None:
        workers = options["workers"]
        if workers is not None:
            workers = cli.int_option(workers, "--workers", low=1, high=64)
        if options["trigger"] not in IngestRun.Trigger.values:
            raise cli.usage_error(f"--trigger must be one of {', '.join(IngestRun.Trigger.values)}.")
        verbosity = options["verbosity"]
        as_json = options["json"]
        ids = cli.source_ids(options["source"])
        bar = cli.progress_bar(self.stderr, label="ingest", options=options)

        def progress(result, done, total):
            bar.update(done, result.name or result.url)
            if verbosity >= 2 and not as_json:
                bar.line(self.stdout, f"{result.outcome:<12} {result.url} {result.error}")

        with bar:
            report = feeds_ingest(
                source_ids=ids, force=options["all"], dry_run=options["dry_run"], workers=workers,
                trigger=options["trigger"], on_progress=progress, on_start=bar.start,
            )
        if as_json:
            cli.print_json(self.stdout, report.as_dict())
        elif verbosity >= 1:
            self._summary(report, options)

    def _summary(self, report, options) -> None:
        outcome_meaning = {"failed": "error", "created": "success", "updated": "success", "deferred": "warning"}
        rows = []
        for r in report.results:
            rows.append([r.id, cli.shorten(r.name or r.url, 40), r.created, r.updated, r.unchanged,
                         "yes" if r.outcome == "not_modified" else "", cli.Styled(r.outcome, outcome_meaning.get(r.outcome)),
                         cli.shorten(r.error or r.deferred_reason or ("same body" if r.same_body else ""), 70)])
        if rows:
            self.stdout.write(cli.table(["id", "source", "new", "updated", "unchanged", "not modified", "outcome", "reason"],
                                        rows, align_right={0, 2, 3, 4}, colour=cli.wants_colour(self.stdout, options)))
        t = report.totals
        prefix = "Dry run (nothing written): " if report.dry_run else f"Run {report.run_id} {report.status}: "
        line = (f"{prefix}{t['sources']} sources, {t['created']} new, {t['updated']} updated, {t['unchanged']} unchanged, "
                f"{t['not_modified']} not modified" + (f" ({t['same_body']} same body)" if t.get("same_body") else "")
                + f", {t['failed']} failed"
                + (f" ({t['bot_walls']} blocked by bot protection)" if t.get("bot_walls") else "")
                + f" in {report.elapsed_s:.2f}s")
        c = report.comments
        if c["feeds"]:
            line += (f"; comment feeds: {c['feeds']} polled, {c['created']} new comments, {c['updated']} updated, "
                     f"{c['not_modified']} not modified"
                     + (f" ({c['same_body']} same body)" if c.get("same_body") else "") + f", {c['failed']} failed")
        if t["pingbacks"]:
            line += f"; {t['pingbacks']} pingbacks recorded"
        if t["deferred"]:
            line += f"; {t['deferred']} deferred (their host's budget was spent: a later run fetches them)"
        if report.skipped_leased:
            line += f"; {report.skipped_leased} skipped (being ingested by another run)"
        if not report.results:
            line = f"{prefix}no source is due. Use --all to fetch every active source now."
        cli.say(self.stdout, line, "warning" if t["failed"] else "success", options=options)
