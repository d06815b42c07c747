from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.errors import SourceError
from ingest.services.sources import source_add


class Command(cli.PipelineCommand):
    help = (
        "Register a feed URL as a source (a TechnicalArticle). Idempotent: an already registered URL is "
        "reported and left as it is. Only http(s) URLs to public addresses are accepted "
        "(see INGEST_ALLOWED_NETWORKS)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The feed's URL (RSS or Atom).")
        parser.add_argument("--name", default="", help="Display name (default: the feed's title after the first fetch).")
        parser.add_argument("--fetch-comments", action="store_true", help="Also poll each recent entry's comment feed.")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args, **options) -> None:
        try:
            article, created = source_add(url=options["url"], name=options["name"], fetch_comments=options["fetch_comments"])
        except SourceError as exc:
            raise cli.usage_error(str(exc)) from exc
        if options["json"]:
            cli.print_json(self.stdout, {"id": article.pk, "url": article.feed_url, "name": article.name, "created": created})
        elif options["verbosity"] >= 1:
            verb = "Added" if created else "Already registered:"
            cli.say(self.stdout, f"{verb} source {article.pk} {article.feed_url}", "success", options=options)
