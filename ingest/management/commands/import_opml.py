from __future__ import annotations

from pathlib import Path

from django.core.management.base import CommandParser

from ingest import cli
from ingest.errors import ParseError
from ingest.services.sources import opml_import


class Command(cli.PipelineCommand):
    help = (
        "Register every feed listed in an OPML file (the format feed readers export). Idempotent: feeds "
        "already registered are left as they are. URLs that are not http(s) or point into a private "
        "network are rejected and listed with the reason."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="Path to the OPML file, or - for standard input.")
        parser.add_argument("--discover", action="store_true",
                            help="Fetch each URL first: a web page registers the first feed it advertises.")
        parser.add_argument("--json", action="store_true", help="Print the result as one JSON object.")

    def handle(self, *args, **options) -> None:
        path = options["file"]
        try:
            content = self.stdin_bytes() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise cli.usage_error(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        try:
            result = opml_import(content=content, discover=options["discover"])
        except ParseError as exc:
            raise cli.usage_error(f"{path}: {exc}") from exc
        if options["json"]:
            cli.print_json(self.stdout, {
                "added": [{"id": i, "url": u} for i, u in result.added],
                "existing": [{"id": i, "url": u} for i, u in result.existing],
                "rejected": [{"url": u, "error": e} for u, e in result.rejected],
                **({"discovered": [{"page_url": p, "url": u} for p, u in result.discovered],
                    "unchecked": [{"url": u, "warning": w} for u, w in result.unchecked]} if options["discover"] else {}),
            })
            return
        if options["verbosity"] >= 2:
            for pk, url in result.added:
                self.stdout.write(f"added     {pk:>5} {url}")
            for pk, url in result.existing:
                self.stdout.write(f"existing  {pk:>5} {url}")
        for page, url in result.discovered:
            if options["verbosity"] >= 1:
                cli.say(self.stdout, f"found feed {url} on page {page}", options=options)
        for url, warning in result.unchecked:
            cli.say(self.stderr, f"unchecked {url}: {warning}", "warning", options=options)
        for url, error in result.rejected:
            cli.say(self.stderr, f"rejected  {url}: {error}", "warning", options=options)
        if options["verbosity"] >= 1:
            cli.say(self.stdout, f"{len(result.added)} added, {len(result.existing)} already registered, "
                                 f"{len(result.rejected)} rejected.", "warning" if result.rejected else "success", options=options)

    def stdin_bytes(self) -> bytes:
        import sys

        return sys.stdin.buffer.read()
