"""Read-only queries for status reports: ``manage.py pipeline_status`` and ``/healthz`` use them.

ORM reads only (HackSoft's "selectors"): nothing here writes, talks to Celery or Redis, or decides
what to print. They return model instances or small frozen values.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q

from ingest.models import Entry, IngestRun, TechnicalArticle

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
    """How long ago a job last completed, judged against a maximum age."""

    job: str
    finished_at: datetime | None
    age_s: float | None  # None: never completed
    max_age_s: int
    run_id: int | None

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
        }


def job_freshness(*, job: str, now: datetime, max_age_s: int) -> Freshness:
    run = run_last_completed(job=job)
    if run is None:
        return Freshness(job, None, None, max_age_s, None)
    return Freshness(job, run.finished_at, max(0.0, (now - run.finished_at).total_seconds()), max_age_s, run.pk)


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


def entries_list(*, source_ids=(), with_activity: bool = False, limit: int = 20) -> list[dict]:
    """Newest entries with their counters, for ``manage.py list_entries``."""
    query = Entry.objects.select_related("technical_article").order_by("-published_at", "-pk")
    if source_ids:
        query = query.filter(technical_article_id__in=source_ids)
    if with_activity:
        query = query.filter(Q(number_of_comments__gt=0) | Q(number_of_pingbacks__gt=0))
    return [
        {"id": e.pk, "source": e.technical_article.name, "pub_date": e.pub_date.isoformat(), "headline": e.headline,
         "link": e.link, "number_of_comments": e.number_of_comments, "reported_comments": e.reported_comments,
         "number_of_pingbacks": e.number_of_pingbacks}
        for e in query[:limit]
    ]
