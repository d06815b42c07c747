from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.errors import NoFeedChosen, SourceError
from ingest.services.credentials import auth_check
from ingest.services.sources import source_register


def _header(value: str, option: str) -> tuple[str, str]:
    name, colon, rest = value.partition(":")
    if not colon or not name.strip():
        # Not quoted back: it may be a secret typed where its reference belongs.
        raise cli.usage_error(f"{option} takes 'Name: value' (a header name, a colon, the value).")
    return name.strip(), rest.strip()


class Command(cli.PipelineCommand):
    help = (
        "Register a feed URL as a source (a TechnicalArticle). Idempotent: an already registered URL is "
        "reported and left as it is. Only http(s) URLs to public addresses are accepted "
        "(see INGEST_ALLOWED_NETWORKS). The URL is fetched first: a web page is read for the feeds it "
        "advertises (one is registered; several are listed, to choose with --pick N); a URL that cannot "
        "be fetched right now is registered as given, with a warning. Credentials name secrets "
        "(env:NAME, setting:KEY), never hold them; a source with credentials is registered as given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The feed's URL (RSS or Atom), or the address of a site that advertises it.")
        parser.add_argument("--name", default="", help="Display name (default: the feed's title after the first fetch).")
        parser.add_argument("--fetch-comments", action="store_true", help="Also poll each recent entry's comment feed.")
        parser.add_argument("--auth", choices=("none", "basic", "bearer"), default=None,
                            help="How requests to the feed's origin authenticate (basic needs --username and --secret).")
        parser.add_argument("--username", default="", help="The basic scheme's user name.")
        parser.add_argument("--secret", default="", metavar="REF",
                            help="The password or token, named: env:NAME or setting:KEY (of INGEST_FEED_SECRETS).")
        parser.add_argument("--bearer", default="", metavar="REF", help="Short for --auth bearer --secret REF.")
        parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                            help="An extra request header with a literal (non-secret) value; repeatable.")
        parser.add_argument("--secret-header", action="append", default=[], metavar="'NAME: REF'",
                            help="An extra request header whose value is a secret, named: env:NAME or "
                                 "setting:KEY; sent to the feed's origin only. Repeatable.")
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
        scheme, secret = options["auth"], options["secret"]
        if options["bearer"]:
            if scheme not in (None, "bearer") or secret:
                raise cli.usage_error("--bearer cannot be combined with --auth or --secret.")
            scheme, secret = "bearer", options["bearer"]
        headers: dict = {}
        for value in options["header"]:
            name, literal = _header(value, "--header")
            headers[name] = literal
        for value in options["secret_header"]:
            name, reference = _header(value, "--secret-header")
            headers[name] = {"secret": reference}
        if len(headers) < len(options["header"]) + len(options["secret_header"]):
            raise cli.usage_error("A header is given twice.")
        try:
            auth = auth_check(scheme=scheme or "none", username=options["username"], secret=secret,
                              extra_headers=headers)
            registration = source_register(url=options["url"], name=options["name"],
                                           fetch_comments=options["fetch_comments"],
                                           discover=not options["no_discover"], pick=pick, auth=auth)
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
                "auth": article.auth_scheme, "auth_secret": article.auth_secret,
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
