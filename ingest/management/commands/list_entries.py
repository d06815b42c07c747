from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.selectors import entries_list

# A listing for a person to read; a larger export belongs to the database's own tools.
LIMIT_MAX = 10_000


class Command(cli.PipelineCommand):
    help = (
        "List stored entries, newest first, with their comment and pingback counters "
        "(number_of_comments / number_of_pingbacks) beside the comment count the feed reports."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--source", action="append", default=[], metavar="ID_OR_URL", help="Only this source; repeatable.")
        parser.add_argument("--with-activity", action="store_true", help="Only entries with comments or pingbacks.")
        parser.add_argument("--hide-duplicates", action="store_true",
                            help="Leave out the copies of articles another source carried first (duplicate_of set).")
        parser.add_argument("--limit", type=int, default=20, metavar="N",
                            help=f"At most N entries, 1-{LIMIT_MAX} (default 20).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object, {\"entries\": [...]}, on stdout.")

    def handle(self, *args, **options) -> None:
        limit = cli.int_option(options["limit"], "--limit", low=1, high=LIMIT_MAX)
        rows = entries_list(source_ids=cli.source_ids(options["source"]), with_activity=options["with_activity"], limit=limit,
                            hide_duplicates=options["hide_duplicates"])
        if options["json"]:
            cli.print_json(self.stdout, {"entries": rows})
            return
        if options["verbosity"] < 1:
            return
        if not rows:
            self.stdout.write("No entries.")
            return
        self.stdout.write(cli.table(
            ["id", "source", "published", "headline", "comments", "feed says", "pingbacks"],
            [[r["id"], cli.shorten(r["source"], 24), r["pub_date"], cli.shorten(r["headline"], 50), r["number_of_comments"],
              "" if r["reported_comments"] is None else r["reported_comments"], r["number_of_pingbacks"]] for r in rows],
            align_right={0, 4, 5, 6},
        ))
