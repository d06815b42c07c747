"""Source leases: a run claims the sources it will fetch, so overlapping runs (cron, Celery, Azure,
by hand) never work on the same source, and releases them when it is done or dies.

The lease is two columns on the source (owner, expiry); the per-source transaction in ``store``
releases it with the bookkeeping and proves it is still held before committing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from ingest.models import TechnicalArticle
from ingest.retry import run_atomic
from ingest.db import chunked, in_batch_size


def sources_claim(*, ids: Sequence[int], owner: str, now: datetime, ttl: int | None = None) -> list[TechnicalArticle]:
    """Lease the given sources for ``owner``; returns the ones this call won.

    One UPDATE per batch whose WHERE re-checks that the lease is free: every backend evaluates it
    atomically per row (row locks on PostgreSQL, MariaDB and SQL Server; the database lock on SQLite),
    so two runs that race for a source never both get it.
    """
    expires = now + timedelta(seconds=ttl or settings.INGEST_LEASE_SECONDS)
    free = Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now) | Q(lease_owner=owner)

    def claim() -> None:
        for batch in chunked(list(ids), in_batch_size()):
            TechnicalArticle.objects.filter(free, pk__in=batch).update(lease_owner=owner, lease_expires_at=expires)

    run_atomic(claim, label="sources_claim")
    return list(TechnicalArticle.objects.filter(lease_owner=owner, pk__in=ids).order_by("pk")) if ids else []


def sources_release(*, owner: str) -> int:
    return run_atomic(
        lambda: TechnicalArticle.objects.filter(lease_owner=owner).update(lease_owner="", lease_expires_at=None),
        label="sources_release",
    )
