from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.errors import NoFeedChosen, SourceError
from ingest.services.sources import source_register


class Command(cli.PipelineCommand):
    help = (
        "Register a feed URL as a source (a TechnicalArticle). Idempotent: an already registered URL is "
        "reported and left as it is. Only http(s) URLs to public addresses are accepted "
        "(see INGEST_ALLOWED_NETWORKS). The URL is fetched first: a web page is read for the feeds it "
        "advertises (one is registered; several are listed, to choose with --pick N); a URL that cannot "
        "be fetched right now is registered as given, with a warning."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The feed's URL (RSS or Atom), or the address of a site that advertises it.")
        parser.add_argument("--name", default="", help="Display name (default: the feed's title after the first fetch).")
        parser.add_argument("--fetch-comments", action="store_true", help="Also poll each recent entry's comment feed.")
        parser.add_argument("--pick", default=None,
                            help="When the URL is a page advertising several feeds: register the Nth one listed (1-based).")
        parser.add_argument("--no-discover", action="store_true",
                            help="Register the URL as given, without fetching it to find the feed.")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args, **options) -> None:
        pick = options["pick"]
        if pick is not None:
            if options["no_discover"]:
                raise cli.usage_error("--pick chooses among the feeds a page advertises, so it cannot be "
                                      "combined with --no-discover.")
            pick = cli.int_option(pick, "--pick", low=1, high=1000)
        try:
            registration = source_register(url=options["url"], name=options["name"],
                                           fetch_comments=options["fetch_comments"],
                                           discover=not options["no_discover"], pick=pick)
        except NoFeedChosen as exc:
            raise self._no_feed_chosen(exc, options) from exc
        except SourceError as exc:
            raise cli.usage_error(str(exc)) from exc
        article, created, found = registration.source, registration.created, registration.discovery
        if options["json"]:
            cli.print_json(self.stdout, {
                "id": article.pk, "url": article.feed_url, "name": article.name, "created": created,
                "page_url": found.page_url or None if found else None,
                "candidates": _candidates(found.candidates) if found else [],
                "warning": found.warning or None if found else None,
            })
            return
        if found is not None and found.warning and options["verbosity"] >= 1:
            cli.say(self.stderr, f"Could not check {found.given}, registered it as given: {found.warning}",
                    "warning", options=options)
        if options["verbosity"] >= 1:
            if found is not None and found.page_url:
                cli.say(self.stdout, f"Found feed {found.feed_url} on page {found.page_url}", options=options)
            verb = "Added" if created else "Already registered:"
            cli.say(self.stdout, f"{verb} source {article.pk} {article.feed_url}", "success", options=options)

    def _no_feed_chosen(self, exc: NoFeedChosen, options: dict):
        count = len(exc.candidates)
        sentence = str(exc)
        if count:
            sentence += f" Run again with --pick N (1 to {count})." if count > 1 else " Run again with --pick 1."
        if options["json"]:
            cli.print_json(self.stdout, {"created": False, "error": sentence, "page_url": exc.page_url,
                                         "candidates": _candidates(exc.candidates)})
        elif count:
            rows = [[n, link.title or "-", link.type or "-", link.url] for n, link in enumerate(exc.candidates, 1)]
            self.stdout.write(cli.table(["#", "title", "type", "url"], rows, align_right={0}))
        return cli.usage_error(sentence)


def _candidates(links) -> list[dict]:
    return [{"number": n, "title": link.title, "type": link.type, "url": link.url} for n, link in enumerate(links, 1)]
