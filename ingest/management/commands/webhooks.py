from __future__ import annotations

from datetime import datetime

from django.core.management.base import CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from ingest import cli
from ingest.services.webhooks import webhooks_deliver, webhooks_list, webhooks_replay


def since_option(value: str) -> datetime:
    """An ISO 8601 date or date-time (naive means UTC); a usage error otherwise."""
    text = str(value).strip()
    try:
        moment = parse_datetime(text) or (datetime.combine(parse_date(text), datetime.min.time()) if parse_date(text) else None)
    except ValueError:
        moment = None
    if moment is None:
        raise cli.usage_error(f"--since takes an ISO 8601 date or date-time such as 2026-01-31T12:00:00Z, not {text!r}.")
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment, timezone.utc)


class Command(cli.PipelineCommand):
    help = (
        "Webhooks (docs/webhooks.md). 'deliver': fan the new events out to the endpoints and send the due "
        "batches, once (for cron; Celery does it with ingest.events.deliver). 'replay --since ISO' or "
        "'replay --event ID': send those events again (delivered or dead), to every endpoint that wants them "
        "or to --endpoint ID. 'list': the endpoints, their state and backlog. Exit status: 0 done, 1 the "
        "database failed, 2 bad arguments."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["deliver", "replay", "list"])
        parser.add_argument("--since", metavar="ISO", help="replay: the events created at or after this moment.")
        parser.add_argument("--event", type=int, metavar="ID", help="replay: this one event.")
        parser.add_argument("--endpoint", type=int, metavar="ID", help="replay: only to this endpoint.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object with the result on stdout.")

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action != "replay" and (options["since"] or options["event"] is not None or options["endpoint"] is not None):
            raise cli.usage_error("--since, --event and --endpoint belong to 'webhooks replay'.")
        if action == "deliver":
            result = webhooks_deliver().as_dict()
            text = (f"Dispatched {result['dispatched']} events; sent {result['batches']} batches, "
                    f"{result['delivered']} deliveries acknowledged, {result['failed']} batches failed, "
                    f"{result['dead']} deliveries dead.")
        elif action == "replay":
            if (options["since"] is None) == (options["event"] is None):
                raise cli.usage_error("webhooks replay takes one of --since ISO or --event ID.")
            since = since_option(options["since"]) if options["since"] is not None else None
            pending = webhooks_replay(since=since, event_id=options["event"], endpoint_id=options["endpoint"])
            result = {"pending": pending}
            text = f"{pending} deliveries are pending again; 'webhooks deliver' (or the worker) sends them."
        else:
            result = {"endpoints": webhooks_list()}
            text = "\n".join(f"{e['id']:>4}  {e['state']:<8}  pending {e['pending']:<6} dead {e['dead']:<6} {e['url']}"
                             + (f"  ({e['disabled_reason']})" if e["disabled_reason"] else "")
                             for e in result["endpoints"]) or "No webhook endpoints."
        if options["json"]:
            cli.print_json(self.stdout, {"action": action, **result})
        elif options["verbosity"] >= 1:
            self.stdout.write(text)
