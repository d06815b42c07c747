"""Read-only queries: what is due (sources, comment feeds, counters to reconcile) for the
services, and what the status reports (``manage.py pipeline_status``, ``/healthz``) show.

ORM reads only (HackSoft's "selectors"): nothing here writes, talks to Celery or Redis, or decides
what to print. They return ids, model instances, querysets or small frozen values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import NotSupportedError, connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.db.models import BigIntegerField, F, FloatField, Func, Max, Min, Sum
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce

from ingest.errors import BOT_WALL_PREFIX, SourceError
from ingest.fetch.credentials import auth_spec
from ingest.health import BLOCKED, DEGRADED, FAILING, GONE, HEALTHY, STATES, health_effective
from ingest.models import Comment, Entry, IdleTick, IngestRun, Pingback, TechnicalArticle, WebSubSubscription
from ingest.models import WebhookDelivery
from ingest.types import CommentJob

JOBS = ("ingest_feeds", "recompute_counts")
# A run that completed: "partial" means some sources failed, but the pipeline itself worked.
COMPLETED = (IngestRun.Status.SUCCEEDED, IngestRun.Status.PARTIAL)


def database_ping() -> None:
    """Raise ``django.db.Error`` when the database does not answer a trivial query."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def runs_recent(*, per_job: int = 5) -> dict[str, list[IngestRun]]:
    """The last ``per_job`` runs of each job, newest first; the known jobs always have a key."""
    jobs = list(JOBS) + sorted(set(IngestRun.objects.values_list("command", flat=True).distinct()) - set(JOBS))
    return {job: list(IngestRun.objects.filter(command=job).order_by("-started_at", "-pk")[:per_job]) for job in jobs}


def run_last_completed(*, job: str) -> IngestRun | None:
    return (
        IngestRun.objects.filter(command=job, status__in=COMPLETED, finished_at__isnull=False)
        .order_by("-finished_at", "-pk")
        .first()
    )


@dataclass(frozen=True)
class Freshness:
    """How long ago a job last completed, judged against a maximum age.

    A scheduled tick that found nothing due (counted on ``IdleTick``, no run recorded) counts as
    completed: the scheduler is alive and there was nothing to do. ``finished_at`` and ``age_s``
    are those of the newer of the last completed run and the last idle tick.
    """

    job: str
    finished_at: datetime | None
    age_s: float | None  # None: never completed
    max_age_s: int
    run_id: int | None  # the last completed run, even when an idle tick is newer
    last_idle_at: datetime | None = None
    idle_ticks: int = 0

    @property
    def stale(self) -> bool:
        return self.age_s is None or self.age_s > self.max_age_s

    def as_dict(self) -> dict:
        return {
            "job": self.job,
            "run_id": self.run_id,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "age_s": None if self.age_s is None else round(self.age_s, 1),
            "max_age_s": self.max_age_s,
            "stale": self.stale,
            "idle_ticks": self.idle_ticks,
            "last_idle_at": self.last_idle_at.isoformat() if self.last_idle_at else None,
        }


def idle_ticks(*, job: str) -> IdleTick | None:
    """The count of ``job``'s scheduled ticks that found nothing due, and the last one's time."""
    return IdleTick.objects.filter(command=job).first()


def job_freshness(*, job: str, now: datetime, max_age_s: int) -> Freshness:
    run = run_last_completed(job=job)
    idle = idle_ticks(job=job)
    idle_at = idle.last_idle_at if idle else None
    times = [t for t in (run.finished_at if run else None, idle_at) if t is not None]
    latest = max(times) if times else None
    return Freshness(job, latest, None if latest is None else max(0.0, (now - latest).total_seconds()), max_age_s,
                     run.pk if run else None, idle_at, idle.idle_ticks if idle else 0)


def sources_failing(*, limit: int = 50) -> tuple[int, list[TechnicalArticle]]:
    """Sources whose last fetch failed (backed off, or deactivated), most failures first.

    Returns the total count and at most ``limit`` of them.
    """
    query = TechnicalArticle.objects.filter(consecutive_failures__gt=0)
    rows = list(query.order_by("-consecutive_failures", "pk")[:limit])
    return query.count(), rows


INTERNAL_ERROR_PREFIX = "internal error:"  # how ingest.errors.InternalError reasons start


def sources_internal_errors(*, limit: int = 20) -> tuple[int, list[TechnicalArticle]]:
    """Sources whose last failure was an internal error (a bug, or input no rule foresaw)."""
    query = TechnicalArticle.objects.filter(consecutive_failures__gt=0, last_error__startswith=INTERNAL_ERROR_PREFIX)
    return query.count(), list(query.order_by("pk")[:limit])


def websub_states() -> dict[str, int]:
    """WebSub subscriptions by state (``pending``, ``requested``, ``subscribed``, ``failed``...)."""
    rows = WebSubSubscription.objects.values_list("state").annotate(n=Count("pk")).order_by("state")
    return dict(rows)


def sources_bot_walls() -> int:
    """Active sources whose last fetch met a bot protection's challenge page (``ingest.errors.BotWall``)."""
    return TechnicalArticle.objects.filter(consecutive_failures__gt=0, active=True,
                                           last_error__startswith=BOT_WALL_PREFIX).count()




# --- Health (ingest.health, docs/health.md) --------------------------------------------------------


def _health_q(state: str, now: datetime) -> Q:
    """``ingest.health.health_effective`` as a condition on the stored columns: plain comparisons
    (no date arithmetic in SQL), so that every backend counts and filters alike."""
    live = Q(active=True)
    stale = live & Q(health=HEALTHY, health_stale_at__lt=now)
    if state == GONE:
        return Q(active=False) | Q(health=GONE)
    if state == HEALTHY:
        return live & Q(health=HEALTHY) & (Q(health_stale_at__isnull=True) | Q(health_stale_at__gte=now))
    if state == DEGRADED:
        return (live & Q(health=DEGRADED)) | stale
    if state in (FAILING, BLOCKED):
        return live & Q(health=state)
    raise ValueError(f"unknown health state {state!r}")


def health_counts(*, now: datetime) -> dict[str, int]:
    """Sources per effective health state, every state present (staleness included): one
    aggregate query whatever the number of sources, for ``pipeline_status``, ``/healthz`` and
    ``/metrics``."""
    counts = TechnicalArticle.objects.aggregate(**{state: Count("pk", filter=_health_q(state, now)) for state in STATES})
    return {state: counts[state] or 0 for state in STATES}


def sources_by_health(query: QuerySet, *, state: str, now: datetime) -> QuerySet:
    """The sources of ``query`` whose effective health is ``state`` (the admin's filter, ``?health=``)."""
    return query.filter(_health_q(state, now))


def source_health(source: TechnicalArticle, *, now: datetime) -> str:
    """One source's effective health, from the columns already loaded."""
    return health_effective(stored=source.health, active=source.active, stale_since=source.health_stale_at, now=now)


HEALTH_STATES = STATES


@dataclass(frozen=True)
class SourceStatus:
    """One source as ``list_sources`` shows it: its health, and when and why it is fetched next.

    ``health``: ``ok``, ``failing`` (``failures`` in a row), ``internal_error`` (its last failure
    was a bug), ``bot_wall`` (blocked by the publisher's bot protection), ``deactivated`` or
    ``never_fetched``. ``next_reason``: ``deactivated``, ``leased``
    (a run holds it until ``lease_expires_at``), ``due`` (now), ``backoff`` (after ``failures``
    failures, until ``next_fetch_at``; ``last_status`` 429 or 503 means the server's Retry-After
    counted) or ``scheduled`` (one interval after its last fetch). ``schedule_reason``: why the
    next fetch is when it is (``ingest.schedule``: "Cache-Control max-age 2 h", "cadence 2.1 d"...).
    """

    id: int
    name: str
    url: str
    active: bool
    health: str
    failures: int
    last_success_at: datetime | None
    last_fetched_at: datetime | None
    last_status: int | None
    last_error: str  # its first line
    next_fetch_at: datetime | None
    next_reason: str
    lease_expires_at: datetime | None
    fetch_interval: int
    schedule_reason: str = ""
    publish_cadence: int | None = None  # seconds between its recent entries
    honour_server_hints: bool = True
    websub: bool = False  # a WebSub hub pushes to it (a verified subscription whose lease runs)
    auth: str = ""  # its credentials' references: "basic (env:NAME)", "bearer (setting:KEY), 1 header"


def _source_status(source: TechnicalArticle, *, now: datetime) -> SourceStatus:
    failures = source.consecutive_failures
    if not source.active:
        health = "deactivated"
    elif failures and source.last_error.startswith(INTERNAL_ERROR_PREFIX):
        health = "internal_error"
    elif failures and source.last_error.startswith(BOT_WALL_PREFIX):
        health = "bot_wall"
    elif failures:
        health = "failing"
    elif source.last_fetched_at is None:
        health = "never_fetched"
    else:
        health = "ok"
    if not source.active:
        reason = "deactivated"
    elif source.lease_expires_at is not None and source.lease_expires_at > now:
        reason = "leased"
    elif source.next_fetch_at is None or source.next_fetch_at <= now:
        reason = "due"
    elif failures:
        reason = "backoff"
    else:
        reason = "scheduled"
    return SourceStatus(
        id=source.pk, name=source.name, url=source.feed_url, active=source.active, health=health, failures=failures,
        last_success_at=source.last_success_at, last_fetched_at=source.last_fetched_at, last_status=source.last_status,
        last_error=(source.last_error.strip().splitlines() or [""])[0], next_fetch_at=source.next_fetch_at,
        next_reason=reason, lease_expires_at=source.lease_expires_at,
        fetch_interval=source.fetch_interval or settings.INGEST_DEFAULT_INTERVAL,
        schedule_reason=source.schedule_reason, publish_cadence=source.publish_cadence,
        honour_server_hints=source.honour_server_hints,
        websub=bool(getattr(source, "websub", False)),
        auth=auth_text(scheme=source.auth_scheme, secret=source.auth_secret, headers=source.extra_headers),
    )


def auth_text(*, scheme: str, secret: str, headers: object) -> str:
    """A source's credentials as references, for listings: "basic (env:NAME)", "1 header"; never a value."""
    parts = [f"{scheme} ({secret})"] if scheme and scheme != "none" else []
    if headers:
        parts.append(f"{len(headers)} header{'s' if len(headers) != 1 else ''}")
    return ", ".join(parts)


def sources_status(*, now: datetime, ids: Sequence[int] = (), failing: bool = False, due: bool = False,
                   limit: int = 100) -> tuple[int, list[SourceStatus]]:
    """Sources with their health and next fetch, for ``manage.py list_sources``: the total that
    match and at most ``limit`` of them (``failing``: failing or backed off, most failures first;
    ``due``: active and due now, as ``sources_due`` sees them; ``ids``: only those)."""
    query = TechnicalArticle.objects.all()
    if ids:
        query = query.filter(pk__in=ids)
    if failing:
        query = query.filter(consecutive_failures__gt=0)
    if due:
        query = query.filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now), active=True)
    order = ("-consecutive_failures", "pk") if failing else ("pk",)
    fields = ("id", "name", "feed_url", "active", "consecutive_failures", "last_success_at", "last_fetched_at",
              "last_status", "last_error", "next_fetch_at", "lease_expires_at", "fetch_interval",
              "schedule_reason", "publish_cadence", "honour_server_hints", "auth_scheme", "auth_secret", "extra_headers")
    live = WebSubSubscription.objects.filter(source=OuterRef("pk"), wanted=True,
                                             state=WebSubSubscription.State.SUBSCRIBED, lease_expires_at__gt=now)
    rows = [_source_status(source, now=now)
            for source in query.order_by(*order).only(*fields).annotate(websub=Exists(live))[:limit]]
    return query.count(), rows


def runs_overdue(*, now: datetime, max_running_s: int) -> list[IngestRun]:
    """Runs still ``running`` longer than ``max_running_s``: killed, hung, or their tasks lost."""
    cutoff = now - timedelta(seconds=max_running_s)
    return list(IngestRun.objects.filter(status=IngestRun.Status.RUNNING, started_at__lt=cutoff).order_by("started_at"))


@dataclass(frozen=True)
class SourceCounts:
    total: int
    active: int
    due: int
    leased: int


def sources_counts(*, now: datetime) -> SourceCounts:
    base = TechnicalArticle.objects
    active = base.filter(active=True)
    return SourceCounts(
        total=base.count(),
        active=active.count(),
        due=active.filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now)).count(),
        leased=base.filter(lease_expires_at__gt=now).count(),
    )


def entries_ingested_count(*, now: datetime, hours: int = 24) -> int:
    return Entry.objects.filter(ingested_at__gte=now - timedelta(hours=hours)).count()


def entries_list(*, source_ids=(), with_activity: bool = False, limit: int = 20,
                 hide_duplicates: bool = False) -> list[dict]:
    """Newest entries with their counters, for ``manage.py list_entries`` (``hide_duplicates``:
    without the copies of articles another source carried first)."""
    query = Entry.objects.select_related("technical_article").order_by("-published_at", "-pk")
    if source_ids:
        query = query.filter(technical_article_id__in=source_ids)
    if with_activity:
        query = query.filter(Q(number_of_comments__gt=0) | Q(number_of_pingbacks__gt=0))
    if hide_duplicates:
        query = query.filter(duplicate_of__isnull=True)
    return [
        {"id": e.pk, "source": e.technical_article.name, "pub_date": e.pub_date.isoformat(), "headline": e.headline,
         "link": e.link, "number_of_comments": e.number_of_comments, "reported_comments": e.reported_comments,
         "number_of_pingbacks": e.number_of_pingbacks, "duplicate_of": e.duplicate_of_id}
        for e in query[:limit]
    ]


# --- What is due -----------------------------------------------------------------------------


def sources_due(*, now: datetime, ids: Sequence[int] = (), force: bool = False) -> list[int]:
    """Ids of the active sources due now, soonest first (``ids``: those sources, active or not;
    ``force``: ignore the schedule)."""
    query = TechnicalArticle.objects.all()
    if ids:
        query = query.filter(pk__in=ids)
    else:
        query = query.filter(active=True)
    if not force:
        query = query.filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now))
    return list(query.order_by("next_fetch_at", "pk").values_list("pk", flat=True))


_COMMENT_FEED_DUE = Q(comment_feed__isnull=True) | Q(comment_feed__next_fetch_at__isnull=True)
_COMMENT_JOB_FIELDS = ("pk", "comments_feed_url", "comment_feed__etag", "comment_feed__last_modified",
                       "comment_feed__consecutive_failures")
# The source's credentials (references) and feed URL, for its comment feeds (ingest.fetch.credentials).
_COMMENT_AUTH_FIELDS = ("technical_article__auth_scheme", "technical_article__auth_username",
                        "technical_article__auth_secret", "technical_article__extra_headers",
                        "technical_article__feed_url")


def _comment_auth(scheme, username, secret, headers, feed_url) -> dict:
    """A comment job's ``auth`` and ``source_url``: none when the source has no credentials, or
    invalid ones (its own fetch reports those)."""
    if (scheme or "none") == "none" and not headers:
        return {}
    try:
        spec = auth_spec(scheme=scheme, username=username, secret=secret, extra_headers=headers)
    except SourceError:
        return {}
    return {"auth": spec, "source_url": feed_url}


def comment_feeds_due(*, source: TechnicalArticle, now: datetime, force: bool = False) -> list[CommentJob]:
    """Comment feeds of the source's recent entries (INGEST_COMMENTS_DAYS) that are due (all with ``force``)."""
    recent = now - timedelta(days=settings.INGEST_COMMENTS_DAYS)
    interval = source.fetch_interval or settings.INGEST_DEFAULT_INTERVAL
    rows = Entry.objects.filter(technical_article_id=source.pk, published_at__gte=recent).exclude(comments_feed_url="")
    if not force:
        rows = rows.filter(_COMMENT_FEED_DUE | Q(comment_feed__next_fetch_at__lte=now))
    rows = rows.order_by("pk").values_list(*_COMMENT_JOB_FIELDS, *_COMMENT_AUTH_FIELDS, "comment_feed__body_digest")
    return [CommentJob(pk, url, etag or "", modified or "", failures or 0, interval, **_comment_auth(*auth),
                       body_digest=digest or "")
            for pk, url, etag, modified, failures, *auth, digest in rows]


def comment_feeds_unclaimed(*, now: datetime) -> list[CommentJob]:
    """Due comment feeds of active comment-fetching sources that no run holds.

    A source's comment feeds are normally polled right after its entries are stored. A run that
    died in between (killed, crashed) stored the source, so the source is not due again for a
    whole interval; its comment feeds are taken by the next run from here instead. Leased sources
    (this run's own claims included) are left to the run that holds them.
    """
    recent = now - timedelta(days=settings.INGEST_COMMENTS_DAYS)
    rows = (
        Entry.objects.filter(technical_article__active=True, technical_article__fetch_comments=True, published_at__gte=recent)
        .exclude(comments_feed_url="")
        .filter(Q(technical_article__lease_expires_at__isnull=True) | Q(technical_article__lease_expires_at__lt=now))
        .filter(_COMMENT_FEED_DUE | Q(comment_feed__next_fetch_at__lte=now))
        .order_by("pk")
        .values_list(*_COMMENT_JOB_FIELDS, "technical_article__fetch_interval", *_COMMENT_AUTH_FIELDS,
                     "comment_feed__body_digest")
    )
    return [CommentJob(pk, url, etag or "", modified or "", failures or 0, interval or settings.INGEST_DEFAULT_INTERVAL,
                       **_comment_auth(*auth), body_digest=digest or "")
            for pk, url, etag, modified, failures, interval, *auth, digest in rows]


def counts_scope(*, source_ids: Sequence[int] = (), entry_ids: Sequence[int] = (), since: datetime | None = None) -> QuerySet:
    """The entries whose counters a recount walks: of these sources, these entries, or with a
    comment or pingback recorded since ``since`` (every entry when nothing is given)."""
    query = Entry.objects.all()
    if source_ids:
        query = query.filter(technical_article_id__in=source_ids)
    if entry_ids:
        query = query.filter(pk__in=entry_ids)
    if since is not None:
        query = query.filter(
            Q(pk__in=Comment.objects.filter(created_at__gte=since).values("entry_id"))
            | Q(pk__in=Pingback.objects.filter(created_at__gte=since).values("target_id"))
        )
    return query


# --- Metrics (/metrics, ingest/services/metrics.py) ---------------------------------------------
# Every read below is one statement whose result has a row per command, state or bucket, never
# per source, entry or run: a scrape costs the same number of queries at 10 sources or 100,000.

# Upper bounds (seconds) of the run duration histogram: a Celery tick takes seconds, a full
# in-process run of a large install tens of minutes.
RUN_DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class RunTotals:
    """The ledger of one command, added up over the runs it still holds (prune_runs deletes old ones)."""

    command: str
    runs: int
    fetched: int
    not_modified: int
    failed: int
    internal_errors: int
    deferred: int
    created: int
    updated: int
    unchanged: int
    retries: int
    finished: int  # runs with a finished_at: the histogram's count
    duration_s: float  # their durations added up: the histogram's sum
    buckets: tuple[int, ...]  # finished runs at most RUN_DURATION_BUCKETS[i] long (cumulative)
    last_success_at: datetime | None  # the newest succeeded or partial run's finished_at


class RunSeconds(Func):
    """``finished_at - started_at`` in seconds, in each backend's own arithmetic. Django's portable
    DurationField subtraction is a Python function per row on SQLite (``django_timestamp_diff``):
    over 8,640 runs and eleven buckets that alone was 500 ms a scrape; ``julianday`` is SQLite's C."""

    output_field = FloatField()

    def __init__(self):
        super().__init__(F("finished_at"), F("started_at"))

    def _both(self, compiler, connection):
        (end, end_params), (start, start_params) = (compiler.compile(e) for e in self.source_expressions)
        return end, tuple(end_params), start, tuple(start_params)

    def as_sqlite(self, compiler, connection, **extra):
        end, end_params, start, start_params = self._both(compiler, connection)
        return f"((julianday({end}) - julianday({start})) * 86400.0)", (*end_params, *start_params)

    def as_postgresql(self, compiler, connection, **extra):
        end, end_params, start, start_params = self._both(compiler, connection)
        return f"EXTRACT(EPOCH FROM ({end} - {start}))", (*end_params, *start_params)

    def as_mysql(self, compiler, connection, **extra):
        end, end_params, start, start_params = self._both(compiler, connection)
        return f"(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000.0)", (*start_params, *end_params)

    def as_microsoft(self, compiler, connection, **extra):  # mssql-django's vendor
        end, end_params, start, start_params = self._both(compiler, connection)
        return f"(DATEDIFF_BIG(microsecond, {start}, {end}) / 1000000.0)", (*start_params, *end_params)

    def as_sql(self, compiler, connection, **extra):
        raise NotSupportedError(f"run durations are computed on SQLite, PostgreSQL, MariaDB/MySQL and SQL Server, "
                                f"not {connection.vendor}.")


def metrics_run_totals() -> list[RunTotals]:
    """One GROUP BY command over the ledger: outcome and entry sums, retries (``stats.retries``),
    the duration histogram's buckets, sum and count, and the last completed run."""
    done = Q(finished_at__isnull=False)
    buckets = {f"le{i}": Count("pk", filter=done & Q(duration__lte=bound)) for i, bound in enumerate(RUN_DURATION_BUCKETS)}
    rows = (
        IngestRun.objects.alias(duration=RunSeconds()).values("command").order_by("command")
        .annotate(runs=Count("pk"), fetched=Sum("sources_fetched"), not_modified=Sum("sources_not_modified"),
                  failed=Sum("sources_failed"), internal_errors=Sum("sources_internal_errors"),
                  deferred=Sum("sources_deferred"), created=Sum("entries_created"), updated=Sum("entries_updated"),
                  unchanged=Sum("entries_unchanged"),
                  retries=Sum(Cast(KT("stats__retries"), BigIntegerField())),
                  finished=Count("pk", filter=done), duration_sum=Sum("duration", filter=done),
                  last_success_at=Max("finished_at", filter=done & Q(status__in=COMPLETED)), **buckets)
    )
    totals = []
    for row in rows:
        totals.append(RunTotals(
            row["command"], row["runs"], *(int(row[name] or 0) for name in (
                "fetched", "not_modified", "failed", "internal_errors", "deferred", "created", "updated", "unchanged",
                "retries", "finished")),
            float(row["duration_sum"] or 0),
            tuple(row[f"le{i}"] for i in range(len(RUN_DURATION_BUCKETS))), row["last_success_at"]))
    return totals


def metrics_runs_by_status() -> dict[tuple[str, str], int]:
    """Runs in the ledger per (command, status)."""
    rows = IngestRun.objects.values("command", "status").order_by("command", "status").annotate(n=Count("pk"))
    return {(row["command"], row["status"]): row["n"] for row in rows}


def metrics_idle_ticks() -> list[tuple[str, int, datetime | None]]:
    """(command, idle ticks, last idle tick) of every command that had one."""
    return list(IdleTick.objects.order_by("command").values_list("command", "idle_ticks", "last_idle_at"))


@dataclass(frozen=True)
class DueSources:
    due: int  # active sources whose next fetch is due (never fetched included)
    oldest_due_at: datetime | None  # the earliest next_fetch_at among them (created_at when never fetched)


def metrics_due_sources(*, now: datetime) -> DueSources:
    """How far behind its schedule the pipeline is: the due active sources and the oldest due time."""
    row = (TechnicalArticle.objects.filter(active=True).filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now))
           .aggregate(due=Count("pk"), oldest=Min(Coalesce("next_fetch_at", "created_at"))))
    return DueSources(row["due"], row["oldest"])


def metrics_webhook_deliveries() -> dict[str, tuple[int, datetime | None]]:
    """Webhook deliveries per state: (how many, the oldest one's created_at); every state present."""
    found = {state.value: (0, None) for state in WebhookDelivery.State}
    for row in WebhookDelivery.objects.values("state").order_by("state").annotate(n=Count("pk"), oldest=Min("created_at")):
        found[row["state"]] = (row["n"], row["oldest"])
    return found
