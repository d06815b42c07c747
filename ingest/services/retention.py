"""Retention: ``prune_entries`` (by hand, cron, beat, the Azure timer) deletes the entries a source
no longer keeps, and leaves a tombstone of each so that its feed does not bring it back.

What a source keeps (``retention_policy``): ``TechnicalArticle.retention_days`` and
``retention_max_entries``, each null for the setting (``INGEST_RETENTION_DAYS``,
``INGEST_RETENTION_MAX_ENTRIES``) and 0 for "no limit". Both apply together: an entry goes when it
is older than the days, or not among the newest N.

* Age is the entry's ``published_at``: its own date. An entry whose feed gave no date was stored
  with the time it was first fetched (``ingested_at``) as ``published_at``, so its age counts from then.
* The newest N are by (``published_at``, id), computed once per source at the start of the run.
* A discussed entry (``number_of_comments`` or ``number_of_pingbacks`` above 0, or a Comment or
  Pingback row that targets it) is never deleted without ``include_discussed``; it is kept beside
  the newest N, not counted in them.

The deletion reuses ``ingest.services.delete.entries_delete`` (every row that points at an entry
goes with it, pingbacks the entry *sent* are unlinked, so the counters of the entries they target
stay right): chunks of at most 1,000 entries in primary-key order, each one ``run_atomic``
transaction that also writes the chunk's ``EntryTombstone`` rows. A failure part-way leaves whole
chunks deleted, each with its tombstones; running it again finishes the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import Error
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from ingest.db import chunked, in_batch_size, no_query_log, write_batch_size
from ingest.errors import RunError
from ingest.models import Comment, Entry, EntryTombstone, IngestRun, Pingback, TechnicalArticle
from ingest.retry import RetryStats, run_atomic
from ingest.services.delete import MAX_CHUNK, entries_delete
from ingest.services.events import pruned_events
from ingest.services.runs import run_failed, run_finish, run_start

log = logging.getLogger("ingest.services")
COMMAND = "prune_entries"


@dataclass(frozen=True)
class RetentionPolicy:
    days: int  # 0: no age limit
    max_entries: int  # 0: no cap

    @property
    def keeps_everything(self) -> bool:
        return not self.days and not self.max_entries


def retention_policy(*, retention_days: int | None, retention_max_entries: int | None) -> RetentionPolicy:
    """A source's policy: its own values, or the settings where they are null."""
    days = settings.INGEST_RETENTION_DAYS if retention_days is None else retention_days
    cap = settings.INGEST_RETENTION_MAX_ENTRIES if retention_max_entries is None else retention_max_entries
    return RetentionPolicy(days=days, max_entries=cap)


def discussed() -> Q:
    """Entries with comments or pingbacks, by their counters or by the rows themselves."""
    return (Q(number_of_comments__gt=0) | Q(number_of_pingbacks__gt=0)
            | Q(Exists(Comment.objects.filter(entry_id=OuterRef("pk"))))
            | Q(Exists(Pingback.objects.filter(target_id=OuterRef("pk")))))


def prunable(*, source_id: int, policy: RetentionPolicy, now: datetime, include_discussed: bool) -> QuerySet | None:
    """The source's entries this policy deletes (None: it deletes nothing). The cap's boundary is
    read here, once: the (published_at, id) of the newest entry that is still kept."""
    entries = Entry.objects.filter(technical_article_id=source_id)
    condition = Q()
    if policy.days:
        condition |= Q(published_at__lt=now - timedelta(days=policy.days))
    if policy.max_entries:
        boundary = (entries.order_by("-published_at", "-pk").values_list("published_at", "pk")
                    [policy.max_entries - 1:policy.max_entries].first())
        if boundary is not None:
            published_at, pk = boundary
            condition |= Q(published_at__lt=published_at) | Q(published_at=published_at, pk__lt=pk)
    if not condition:
        return None
    selected = entries.filter(condition)
    return selected if include_discussed else selected.exclude(discussed())


@dataclass
class SourcePruned:
    id: int
    name: str
    days: int
    max_entries: int
    entries: int = 0  # deleted (with dry_run: would be deleted)
    kept_discussed: int = 0  # past the policy, kept because discussed (0 with include_discussed)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "retention_days": self.days, "retention_max_entries": self.max_entries,
                "entries": self.entries, "kept_discussed": self.kept_discussed}


@dataclass
class PruneEntriesReport:
    run_id: int | None
    status: str
    dry_run: bool
    include_discussed: bool
    sources: list[SourcePruned] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)  # model label -> rows deleted
    unlinked: dict[str, int] = field(default_factory=dict)  # model label -> rows kept, their entry link set to NULL
    tombstones: int = 0
    chunks: int = 0
    retries: int = 0
    elapsed_s: float = 0.0

    @property
    def entries(self) -> int:
        return sum(source.entries for source in self.sources)

    def as_dict(self) -> dict:
        return {"run_id": self.run_id, "status": self.status, "dry_run": self.dry_run,
                "include_discussed": self.include_discussed, "entries": self.entries,
                "kept_discussed": sum(s.kept_discussed for s in self.sources), "tombstones": self.tombstones,
                "deleted": dict(self.deleted), "unlinked": dict(self.unlinked), "chunks": self.chunks,
                "retries": self.retries, "elapsed_s": round(self.elapsed_s, 3),
                "sources": [s.as_dict() for s in self.sources if s.entries or s.kept_discussed]}


def _add(counts: dict[str, int], label: str, n: int) -> None:
    if n:
        counts[label] = counts.get(label, 0) + n


def _prune_chunk(selected: QuerySet, *, source_id: int, size: int, now: datetime, first: bool = False):
    """One transaction: the next ``size`` selected entries, everything that points at them, and their
    tombstones (the ``first`` chunk of a source also forgets its body digest)."""
    rows = list(selected.order_by("pk").values_list("pk", "guid_key", "guid", "link", "headline", "published_at")[:size])
    if not rows:
        return None
    ids = [row[0] for row in rows]
    keys = sorted({row[1] for row in rows})
    deleted, unlinked = entries_delete(ids=ids)
    # The outbox: an entry.pruned event each, in the chunk's transaction.
    pruned_events(source_id=source_id, entries=[(pk, guid, link, headline, published) for pk, _, guid, link, headline,
                                                published in rows], now=now)
    have: set[str] = set()
    for batch in chunked(keys, min(MAX_CHUNK, in_batch_size())):
        have.update(EntryTombstone.objects.filter(source_id=source_id, guid_key__in=batch).values_list("guid_key", flat=True))
    tombstones = [EntryTombstone(source_id=source_id, guid_key=key, pruned_at=now) for key in keys if key not in have]
    if tombstones:
        EntryTombstone.objects.bulk_create(tombstones, batch_size=write_batch_size(["source", "guid_key", "pruned_at"], tombstones))
    if first:
        # New tombstones change what the feed's next parse stores (ingest.parse.digest): its next
        # 200 is parsed even when the body is the one stored last time. Once per source.
        TechnicalArticle.objects.filter(pk=source_id).exclude(body_digest="").update(body_digest="")
    return len(ids), deleted, unlinked, len(tombstones)


@no_query_log()  # long-running: no DEBUG query log (ingest.db)
def entries_prune(
    *,
    source_ids: Sequence[int] = (),
    dry_run: bool = False,
    include_discussed: bool = False,
    chunk_size: int = MAX_CHUNK,
    trigger: str = IngestRun.Trigger.MANUAL,
    now: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PruneEntriesReport:
    """Delete (or with ``dry_run`` count) the entries past their source's retention, every source
    or those of ``source_ids``, in chunks of ``chunk_size`` entries (1 to 1,000), each its own
    retried transaction; recorded as an ``IngestRun`` (not a dry run). ``on_progress`` is called with
    the entries deleted so far after each chunk commits. Must not run inside ``transaction.atomic()``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be a whole number from 1 to {MAX_CHUNK}, not {chunk_size!r}.")
    started = time.monotonic()
    now = now or timezone.now()
    size = min(chunk_size, in_batch_size())
    run = None if dry_run else run_start(command=COMMAND, trigger=trigger)
    report = PruneEntriesReport(run_id=run.pk if run else None, status=IngestRun.Status.RUNNING, dry_run=dry_run,
                                include_discussed=include_discussed)
    stats = RetryStats()
    try:
        try:
            sources = TechnicalArticle.objects.order_by("pk")
            if source_ids:
                sources = sources.filter(pk__in=list(source_ids))
            rows = list(sources.values_list("pk", "name", "retention_days", "retention_max_entries"))
        except Error as exc:
            raise RunError.database(exc, doing="the sources cannot be read") from exc
        for pk, name, days, cap in rows:
            policy = retention_policy(retention_days=days, retention_max_entries=cap)
            if policy.keeps_everything:
                continue
            pruned = SourcePruned(id=pk, name=name, days=policy.days, max_entries=policy.max_entries)
            report.sources.append(pruned)
            try:
                selected = prunable(source_id=pk, policy=policy, now=now, include_discussed=include_discussed)
                if selected is None:
                    continue
                if not include_discussed:
                    everything = prunable(source_id=pk, policy=policy, now=now, include_discussed=True)
                    pruned.kept_discussed = everything.filter(discussed()).count()
                if dry_run:
                    pruned.entries = selected.count()
                    continue
            except Error as exc:
                raise RunError.database(exc, doing=f"source {pk} cannot be read") from exc
            first = True
            while True:
                chunk = run_atomic(lambda: _prune_chunk(selected, source_id=pk, size=size, now=now, first=first),
                                   stats=stats, label="prune_entries.chunk")
                if chunk is None:
                    break
                first = False
                entries, deleted, unlinked, tombstones = chunk
                report.chunks += 1
                pruned.entries += entries
                report.tombstones += tombstones
                for label, n in deleted.items():
                    _add(report.deleted, label, n)
                for label, n in unlinked.items():
                    _add(report.unlinked, label, n)
                if on_progress is not None:
                    on_progress(report.entries)
                if entries < size:
                    break
    except BaseException as exc:
        report.status, report.retries = IngestRun.Status.FAILED, stats.retries
        report.elapsed_s = time.monotonic() - started
        if run is not None:
            run_failed(run, exc, stats=report.as_dict())
        if isinstance(exc, Error):
            raise RunError.database(exc, doing=f"pruning stopped after {report.entries} entries") from exc
        raise
    report.retries = stats.retries
    report.elapsed_s = time.monotonic() - started
    report.status = IngestRun.Status.SUCCEEDED
    if run is not None:
        run_finish(run, status=report.status, stats=report.as_dict())
    log.info("prune_entries finished", extra={k: v for k, v in report.as_dict().items() if k != "sources"})
    return report
