from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.errors import SourceError
from ingest.services.credentials import auth_check
from ingest.services.sources import source_add


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
        "(see INGEST_ALLOWED_NETWORKS). Credentials name secrets (env:NAME, setting:KEY), never hold them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="The feed's URL (RSS or Atom).")
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
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args, **options) -> None:
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
            article, created = source_add(url=options["url"], name=options["name"], fetch_comments=options["fetch_comments"],
                                          auth=auth)
        except SourceError as exc:
            raise cli.usage_error(str(exc)) from exc
        if options["json"]:
            cli.print_json(self.stdout, {"id": article.pk, "url": article.feed_url, "name": article.name, "created": created,
                                         "auth": article.auth_scheme, "auth_secret": article.auth_secret})
        elif options["verbosity"] >= 1:
            verb = "Added" if created else "Already registered:"
            cli.say(self.stdout, f"{verb} source {article.pk} {article.feed_url}", "success", options=options)
