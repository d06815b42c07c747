"""Deleting a source and everything under it, in bounded chunks: ``delete_source`` and the admin.

Django's own delete (``TechnicalArticle.delete()``, the admin's default) collects every entry of
the source and then deletes each related table in one statement per 2,050 entries, all in one
transaction. On SQL Server that means statements touching tens of thousands of rows (lock
escalation to a table lock at about 5,000) and, above 2,048 ids, mssql-django moving each IN list
into a ``#Temp_params`` table it fills in the same transaction (mssql-django issue 156).

``source_delete`` instead:

1. deactivates the source (its own transaction), so that no new run claims it meanwhile;
2. takes the source's entries in primary-key order, ``chunk_size`` (at most 1,000) at a time, and
   per chunk, in one ``run_atomic`` transaction: deletes every row that refers to those entries
   (comments, pingbacks to them, outbound links, comment-feed state, author links: read from the
   model's relations, so a relation added later is not forgotten) by primary key, at most 1,000 per
   statement; unlinks the pingbacks those entries sent to other entries (``source_entry`` is
   SET_NULL), by primary key; then deletes the entries themselves. Before that, copies of those
   entries in other sources are re-pointed to the oldest remaining copy
   (``duplicates.promote_duplicates``), so that none points at a deleted entry;
3. deletes the source's entry tombstones (``prune_entries``), at most 1,000 per transaction;
4. deletes the source row once no entry is left.

So no statement carries more than 1,000 ids, touches more than 1,000 rows, or makes mssql-django
spill. A failure part-way leaves a deactivated source with fewer entries, never a half-deleted
chunk: running the delete again finishes it. Shared rows (authors) stay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.deletion import get_candidate_relations_to_delete

from ingest.db import MAX_ROWS_PER_STATEMENT, chunked
from ingest.errors import RunError, UnknownSource
from ingest.models import Entry, EntryTombstone, TechnicalArticle
from ingest.retry import RetryStats, run_atomic
from ingest.services.duplicates import promote_duplicates
from ingest.services.websub import subscriptions_maintain

MAX_CHUNK = MAX_ROWS_PER_STATEMENT  # entries per chunk and transaction, and ids per statement
# A run that had claimed the source before it was deactivated may still add entries; the last
# step then finds some and takes another pass. Past this many passes the delete gives up.
MAX_PASSES = 5


@dataclass(frozen=True)
class Relation:
    """A table whose rows point at an entry: what deleting the entry does to them."""

    model: type[models.Model]
    field: str  # the foreign key's name on ``model``
    on_delete: str  # "cascade" (the rows go too) or "set_null" (they stay, unlinked)

    @property
    def label(self) -> str:
        return self.model._meta.label


def entry_relations() -> list[Relation]:
    """Every relation to Entry, cascades first (a pingback between two entries of one chunk is
    deleted, not unlinked and then deleted). Anything else than CASCADE, SET_NULL or DO_NOTHING
    is refused: this module would have to learn it first."""
    found = []
    for rel in get_candidate_relations_to_delete(Entry._meta):
        on_delete = rel.on_delete
        if on_delete is models.CASCADE:
            found.append(Relation(rel.related_model, rel.field.name, "cascade"))
        elif on_delete is models.SET_NULL:
            found.append(Relation(rel.related_model, rel.field.name, "set_null"))
        elif on_delete is not models.DO_NOTHING:
            raise NotImplementedError(f"source_delete does not handle on_delete={on_delete.__name__} of "
                                      f"{rel.related_model._meta.label}.{rel.field.name}")
    # Auto-created M2M tables (author links) last: a confirmation lists what a reader knows first.
    return sorted(found, key=lambda relation: (relation.on_delete != "cascade", bool(relation.model._meta.auto_created)))


@dataclass(frozen=True)
class SourceDeletePlan:
    """What deleting a source removes, counted before: the confirmation question and the admin page."""

    id: int
    name: str
    feed_url: str
    rows: dict[str, int]  # model label -> rows that go with the source (the source itself included)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "feed_url": self.feed_url, "rows": dict(self.rows)}


def source_delete_preview(*, source_id: int) -> SourceDeletePlan:
    """Count what ``source_delete`` would remove; UnknownSource when there is no such source.

    One COUNT per table, each a join on the source's id: no id list in any statement.
    """
    source = TechnicalArticle._base_manager.filter(pk=source_id).values("pk", "name", "feed_url").first()
    if source is None:
        raise UnknownSource(f"No source has the id {source_id}.")
    rows = {TechnicalArticle._meta.label: 1,
            Entry._meta.label: Entry._base_manager.filter(technical_article_id=source_id).count()}
    for relation in entry_relations():
        if relation.on_delete == "cascade":
            rows[relation.label] = rows.get(relation.label, 0) + relation.model._base_manager.filter(
                **{f"{relation.field}__technical_article_id": source_id}).count()
    return SourceDeletePlan(id=source["pk"], name=source["name"], feed_url=source["feed_url"], rows=rows)


@dataclass
class SourceDeleted:
    id: int
    name: str
    feed_url: str
    deleted: dict[str, int] = field(default_factory=dict)  # model label -> rows deleted
    unlinked: dict[str, int] = field(default_factory=dict)  # model label -> rows kept, their link set to NULL
    chunks: int = 0
    retries: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "feed_url": self.feed_url, "deleted": dict(self.deleted),
                "unlinked": dict(self.unlinked), "chunks": self.chunks, "retries": self.retries,
                "elapsed_s": round(self.elapsed_s, 3)}


def _add(counts: dict[str, int], label: str, n: int) -> None:
    if n:
        counts[label] = counts.get(label, 0) + n


def _delete_chunk(*, source_id: int, chunk_size: int, using: str) -> tuple[int, dict[str, int], dict[str, int]] | None:
    """One transaction: the next ``chunk_size`` entries of the source and every row that points at them."""
    ids = list(Entry._base_manager.using(using).filter(technical_article_id=source_id)
               .order_by("pk").values_list("pk", flat=True)[:chunk_size])
    if not ids:
        return None
    deleted, unlinked = entries_delete(ids=ids, using=using)
    return len(ids), deleted, unlinked


def entries_delete(*, ids, using: str = DEFAULT_DB_ALIAS) -> tuple[dict[str, int], dict[str, int]]:
    """Delete these entries (at most ``MAX_CHUNK``) and every row that points at them, by primary
    key, at most ``MAX_CHUNK`` ids per statement; unlink the rows that only refer to them
    (``entry_relations``). Inside the caller's transaction. Returns (deleted, unlinked) per model label.
    Also ``prune_entries``' (``ingest.services.retention``) deletion of one chunk."""
    if len(ids) > MAX_CHUNK:
        raise ValueError(f"entries_delete takes at most {MAX_CHUNK} ids, not {len(ids)}.")
    deleted: dict[str, int] = {}
    unlinked: dict[str, int] = {}
    # Copies of these entries in other sources re-point to the oldest remaining one (never dangle).
    promote_duplicates(ids)
    for relation in entry_relations():
        manager = relation.model._base_manager.using(using)
        pks = list(manager.filter(**{f"{relation.field}__in": ids}).order_by("pk").values_list("pk", flat=True))
        for batch in chunked(pks, MAX_CHUNK):
            if relation.on_delete == "cascade":
                # Rows nothing else points at go in one DELETE ... WHERE pk IN (batch); the collector
                # handles anything that points at them in turn, in batches of this size.
                _, per_model = manager.filter(pk__in=batch).delete()
                for label, n in per_model.items():
                    _add(deleted, label, n)
            else:
                _add(unlinked, relation.label, manager.filter(pk__in=batch).update(**{relation.field: None}))
    # Everything that pointed at these entries is gone, in this transaction: delete them without the
    # collector, which would look for dependents again with a DELETE per related table, by entry id.
    _add(deleted, Entry._meta.label, Entry._base_manager.using(using).filter(pk__in=ids)._raw_delete(using))
    return deleted, unlinked


def _delete_tombstones(*, source_id: int, using: str) -> int:
    """One transaction: the next ``MAX_CHUNK`` tombstones of the source, by primary key (0: none left)."""
    manager = EntryTombstone._base_manager.using(using)
    ids = list(manager.filter(source_id=source_id).order_by("pk").values_list("pk", flat=True)[:MAX_CHUNK])
    return manager.filter(pk__in=ids)._raw_delete(using) if ids else 0


def _delete_source_row(*, source_id: int, using: str) -> dict[str, int] | None:
    """Delete the source itself once no entry is left (None: entries arrived; take another pass)."""
    if Entry._base_manager.using(using).filter(technical_article_id=source_id).exists():
        return None
    _, per_model = TechnicalArticle._base_manager.using(using).filter(pk=source_id).delete()
    return per_model


def source_delete(
    *,
    source_id: int,
    chunk_size: int = MAX_CHUNK,
    using: str = DEFAULT_DB_ALIAS,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> SourceDeleted:
    """Delete the source and everything under it in chunks of ``chunk_size`` entries (1 to 1,000).

    Raises UnknownSource when there is no such source. Each chunk is its own retried transaction, so
    this must not be called inside ``transaction.atomic()`` (``run_atomic`` refuses).
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must be a whole number from 1 to {MAX_CHUNK}, not {chunk_size!r}.")
    started = time.monotonic()
    plan = source_delete_preview(source_id=source_id)
    result = SourceDeleted(id=plan.id, name=plan.name, feed_url=plan.feed_url)
    stats = RetryStats()
    total, done = plan.rows.get(Entry._meta.label, 0), 0
    if on_start is not None:
        on_start(total)

    run_atomic(lambda: TechnicalArticle._base_manager.using(using).filter(pk=source_id).update(active=False),
               using=using, stats=stats, label="source_delete.deactivate")
    for _ in range(MAX_PASSES):
        while True:
            chunk = run_atomic(lambda: _delete_chunk(source_id=source_id, chunk_size=chunk_size, using=using),
                               using=using, stats=stats, label="source_delete.chunk")
            if chunk is None:
                break
            entries, deleted, unlinked = chunk
            result.chunks += 1
            done += entries
            for label, n in deleted.items():
                _add(result.deleted, label, n)
            for label, n in unlinked.items():
                _add(result.unlinked, label, n)
            if on_progress is not None:
                on_progress(done, max(total, done))
        # Its tombstones (ingest.services.retention), in bounded chunks before the row they cascade from.
        while n := run_atomic(lambda: _delete_tombstones(source_id=source_id, using=using),
                              using=using, stats=stats, label="source_delete.tombstones"):
            _add(result.deleted, EntryTombstone._meta.label, n)
        per_model = run_atomic(lambda: _delete_source_row(source_id=source_id, using=using),
                               using=using, stats=stats, label="source_delete.source")
        if per_model is not None:
            for label, n in per_model.items():
                _add(result.deleted, label, n)
            break
    else:
        raise RunError(f"Source {source_id} still gets new entries after {MAX_PASSES} passes; "
                       "stop the runs that ingest it and delete it again.")
    result.retries = stats.retries
    # Its WebSub subscription outlives it (source null) until the hub confirms the unsubscription.
    subscriptions_maintain()
    result.elapsed_s = time.monotonic() - started
    return result
