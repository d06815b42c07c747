from __future__ import annotations

import sys

from django.core.management.base import CommandParser

from ingest import cli
from ingest.models import TechnicalArticle
from ingest.services.delete import MAX_CHUNK, SourceDeletePlan, source_delete, source_delete_preview


def _rows(counts: dict[str, int]) -> str:
    from django.apps import apps

    parts = []
    for label, n in counts.items():
        model = apps.get_model(label)
        name = model._meta.verbose_name if n == 1 else model._meta.verbose_name_plural
        parts.append(f"{n:,} {name}")
    return ", ".join(parts) or "nothing"


class Command(cli.PipelineCommand):
    help = (
        "Delete a source (a TechnicalArticle) with its entries, their comments, pingbacks, links and "
        "comment-feed state. Works in chunks of entries, each its own retried transaction, so that no "
        "statement grows with the size of the source. Asks first on a terminal; --yes skips the question "
        "(required when not on a terminal). Exit status: 0 when deleted or declined, 1 when the database "
        "failed, 2 for bad arguments or an unknown source."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", metavar="ID_OR_URL", help="The source's id or feed URL.")
        parser.add_argument("--yes", action="store_true", help="Delete without asking.")
        parser.add_argument("--chunk-size", type=int, default=MAX_CHUNK, metavar="N",
                            help=f"Entries per chunk and transaction, 1-{MAX_CHUNK} (default {MAX_CHUNK}).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with what was deleted on stdout.")

    def handle(self, *args, **options) -> None:
        chunk = cli.int_option(options["chunk_size"], "--chunk-size", low=1, high=MAX_CHUNK)
        text = str(options["source"]).strip()
        if not text:
            raise cli.usage_error("delete_source takes a source id or feed URL, not an empty string.")
        if text.isdigit() and not (text.isdecimal() and 1 <= int(text) <= cli.ID_MAX):
            raise cli.usage_error(f"delete_source takes a source id from 1 to {cli.ID_MAX} or a feed URL, not {text!r}.")
        [source_id] = cli.source_ids([text])
        plan = source_delete_preview(source_id=source_id)
        if not options["yes"] and not self._confirmed(plan):
            if options["json"]:
                cli.print_json(self.stdout, {"id": plan.id, "deleted": None, "status": "declined"})
            elif options["verbosity"] >= 1:
                self.stdout.write(f"Nothing deleted: source {plan.id} is still there.")
            return
        bar = cli.progress_bar(self.stderr, label="delete", options=options)
        chunks = 0

        def progress(done, total):
            nonlocal chunks
            chunks += 1
            bar.update(done)
            if options["verbosity"] >= 2 and not options["json"]:  # one line per chunk
                bar.line(self.stdout, f"chunk {chunks}: {done}/{total} entries deleted")

        with bar:
            result = source_delete(source_id=plan.id, chunk_size=chunk, on_start=bar.start, on_progress=progress)
        if options["json"]:
            cli.print_json(self.stdout, {**result.as_dict(), "status": "deleted"})
        elif options["verbosity"] >= 1:
            unlinked = f"; unlinked {_rows(result.unlinked)}" if result.unlinked else ""
            cli.say(self.stdout, f"Deleted source {result.id} {result.feed_url}: {_rows(result.deleted)}{unlinked} "
                                 f"in {result.chunks} chunks, {result.retries} retries, {result.elapsed_s:.2f}s.",
                    "success", options=options)

    def _confirmed(self, plan: SourceDeletePlan) -> bool:
        """Ask on a terminal; anywhere else (cron, a pipe, a timer) refuse without --yes."""
        if not cli.is_terminal(sys.stdin):
            raise cli.usage_error(f"Refusing to delete source {plan.id} without --yes: there is no terminal to ask on.")
        under = {label: n for label, n in plan.rows.items() if n and label != TechnicalArticle._meta.label}
        cli.say(self.stderr, f"Delete source {plan.id} {plan.name!r} ({plan.feed_url}) with "
                          f"{_rows(under) if under else 'no entries'}? This cannot be undone. [y/N] ",
                ending="")
        self.stderr.flush()
        answer = sys.stdin.readline()
        return answer.strip().lower() in ("y", "yes")
