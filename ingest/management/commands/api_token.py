from __future__ import annotations

from django.core.management.base import CommandParser

from ingest import cli
from ingest.services.tokens import token_issue


class Command(cli.PipelineCommand):
    help = (
        "Print USER's REST API token, creating it when the user has none (send it as "
        "'Authorization: Token <key>'). --rotate replaces the key (the old one stops working at once); "
        "--revoke deletes it. The key is the only thing printed on stdout, so TOKEN=$(manage.py api_token "
        "USER) works. Exit status: 0 done, 1 the database failed, 2 bad arguments or no such user."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The username (see manage.py createsuperuser, or the admin's Users).")
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--rotate", action="store_true", help="Replace the key with a new one.")
        what.add_argument("--revoke", action="store_true", help="Delete the token: the user has none afterwards.")
        parser.add_argument("--json", action="store_true",
                            help='Print one JSON object: {"user", "token", "action"} (created, rotated, '
                                 "unchanged or revoked).")

    def handle(self, *args, **options) -> None:
        issued = token_issue(username=options["user"], rotate=options["rotate"], revoke=options["revoke"])
        if options["json"]:
            cli.print_json(self.stdout, issued.as_dict())
            return
        if issued.key:
            self.stdout.write(issued.key)
        if options["verbosity"] >= 1:
            user = issued.username
            notes = {"created": f"Created a token for {user}.",
                     "rotated": f"Rotated {user}'s token: the old key no longer works.",
                     "unchanged": f"{user}'s existing token (--rotate for a new one).",
                     "revoked": f"Revoked {user}'s token."}
            cli.say(self.stderr, notes[issued.action],
                    "success" if issued.action != "unchanged" else None, options=options)
