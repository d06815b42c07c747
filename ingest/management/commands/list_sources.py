from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import CommandParser
from django.utils import timezone

from ingest import cli
from ingest.selectors import SourceStatus, sources_status

# A listing for a person to read; a larger export belongs to the database's own tools.
LIMIT_MAX = 10_000
RETRY_AFTER_STATUSES = (429, 503)  # the statuses whose Retry-After header the backoff honours


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else ""


def _ago(moment: datetime | None, now: datetime) -> str:
    return f"{_duration((now - moment).total_seconds())} ago" if moment else "never"


def health_text(source: SourceStatus) -> str:
    if source.health == "failing":
        return f"failing {source.failures} in a row"
    if source.health == "bot_wall":
        return f"blocked by bot protection {source.failures} in a row"
    return source.health.replace("_", " ")


def next_text(source: SourceStatus, now: datetime) -> str:
    """When the source is fetched next, and why then."""
    reason = source.next_reason
    if reason == "deactivated":
        return "never: deactivated, re-activate in the admin"
    if reason == "leased":
        return f"being fetched now (leased until {_when(source.lease_expires_at)})"
    if reason == "due":
        return "due now"
    wait = _duration((source.next_fetch_at - now).total_seconds())
    if reason == "backoff":
        plural = "s" if source.failures != 1 else ""
        retry_after = f" (HTTP {source.last_status}, Retry-After)" if source.last_status in RETRY_AFTER_STATUSES else ""
        if source.health == "bot_wall":
            retry_after = f" (HTTP {source.last_status}, bot protection)"
        until = source.next_fetch_at.strftime("%Y-%m-%d %H:%M")
        return f"in {wait}: backed off after {source.failures} failure{plural}{retry_after} until {until}"
    if source.websub:
        return f"in {wait}: pushed by its WebSub hub, polled every {_duration(settings.INGEST_MAX_INTERVAL)} as a safety net"
    if source.schedule_reason:
        return f"in {wait} because: {source.schedule_reason}"
    return f"in {wait}: scheduled, every {_duration(source.fetch_interval)}"


def source_dict(source: SourceStatus, now: datetime) -> dict:
    return {
        "id": source.id, "name": source.name, "url": source.url, "active": source.active,
        "health": source.health, "health_text": health_text(source), "consecutive_failures": source.failures,
        "last_success_at": _when(source.last_success_at) or None, "last_fetched_at": _when(source.last_fetched_at) or None,
        "last_status": source.last_status, "last_error": source.last_error,
        "next_fetch_at": _when(source.next_fetch_at) or None, "next_reason": source.next_reason,
        "next_fetch": next_text(source, now), "lease_expires_at": _when(source.lease_expires_at) or None,
        "fetch_interval": source.fetch_interval, "schedule_reason": source.schedule_reason,
        "publish_cadence": source.publish_cadence, "honour_server_hints": source.honour_server_hints,
        "websub": source.websub,
        "auth": source.auth,
    }


class Command(cli.PipelineCommand):
    help = (
        "List the registered sources with their health (ok, failing N in a row, internal error, deactivated, "
        "never fetched), last success, last error and when they are fetched next and why (due now, scheduled "
        "because of the server's hints or the feed's cadence, backed off, being fetched, deactivated). "
        "Exit status: 0, 1 when the database failed, 2 for bad arguments or an unknown --source."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--failing", action="store_true", help="Only sources whose last fetch failed (most failures first).")
        parser.add_argument("--due", action="store_true", help="Only active sources due now.")
        parser.add_argument("--source", action="append", default=[], metavar="ID_OR_URL", help="Only this source; repeatable.")
        parser.add_argument("--limit", type=int, default=100, metavar="N", help=f"At most N sources, 1-{LIMIT_MAX} (default 100).")
        parser.add_argument("--json", action="store_true",
                            help='Print one JSON object, {"total": N, "sources": [...]}, on stdout.')

    def handle(self, *args, **options) -> None:
        limit = cli.int_option(options["limit"], "--limit", low=1, high=LIMIT_MAX)
        ids = cli.source_ids(options["source"])
        now = timezone.now()
        total, sources = sources_status(now=now, ids=ids, failing=options["failing"], due=options["due"], limit=limit)
        if options["json"]:
            cli.print_json(self.stdout, {"total": total, "sources": [source_dict(s, now) for s in sources]})
            return
        verbosity = options["verbosity"]
        if verbosity < 1:
            return
        if not sources:
            self.stdout.write("No sources." if not (options["failing"] or options["due"] or ids) else "No sources match.")
            return
        rows = [[s.id, cli.shorten(s.name, 28), cli.shorten(s.url, 40), "yes" if s.active else "no", health_text(s),
                 _ago(s.last_success_at, now), cli.shorten(next_text(s, now), 90), cli.shorten(s.last_error, 50)]
                for s in sources]
        self.stdout.write(cli.table(["id", "name", "url", "active", "health", "last success", "next fetch", "last error"],
                                    rows, align_right={0}))
        if verbosity >= 2:  # one detail line per source, after the table (whatever draws the table)
            for source in sources:
                status = f", HTTP {source.last_status}" if source.last_status else ""
                error = f"; error: {source.last_error}" if source.last_error else ""
                auth = f"; auth: {source.auth}" if source.auth else ""
                self.stdout.write(f"{source.id}: {source.url}  last fetched {_ago(source.last_fetched_at, now)}{status}; "
                                  f"next fetch {next_text(source, now)}{error}{auth}")
        if total > len(sources):
            self.stdout.write(f"… and {total - len(sources)} more (--limit)")
