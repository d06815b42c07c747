"""The per-item transaction: one source's entries and bookkeeping, one comment feed's comments.

Each write runs in one retry-wrapped transaction with the bookkeeping last, so a crash means "do
it again", never "half done". ``_state_write`` is the one writer of fetch state (validators, next
fetch, failures in a row, last error, body digest) for sources and comment feeds alike; ``ingest.decide`` says
what the state becomes, ``ingest.health`` the health it leaves (written in the same UPDATE, with
one ``source.health_changed`` event when it changes). The second half of the containment boundary:
a write that fails becomes this item's failure (``boundary.write_failure``) unless the database
itself is failing.

A 200 whose body is the one stored last time (``Fetched.same_body``) is stored as not modified,
"same body": like a 304, its validators and schedule only, no entry read or written. The body
digest is written only by the successful write transaction, so a failed one leaves the old digest.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from ingest.comments import comments_upsert
from ingest.decide import Policy, entries_decide, fetch_state
from ingest.errors import LeaseLost, SourceError, storable
from ingest.health import Change, HealthRule, health_after, health_change, stale_at
from ingest.links import default_name
from ingest.models import CommentFeed, Event, TechnicalArticle
from ingest.pingbacks import pingbacks_record
from ingest.retry import RetryStats, run_atomic
from ingest.schedule import Decision, cadence_seconds, hints_from_text, hints_text, jittered, next_fetch
from ingest.services.boundary import write_failure
from ingest.services.duplicates import duplicates_mark
from ingest.services.events import entry_events, events_record
from ingest.services.runs import run_add
from ingest.services.subscriptions import subscription_live, subscription_note
from ingest.types import (
    FEED_URL_MAX, LINK_MAX, REASON_MAX, SAME_BODY, SOURCE_NAME_MAX, CommentsFetched, CommentsResult, Counts, Deferred,
    Failure, Fetched, NotModified, SourceResult,
)
from ingest.db import commit_asynchronously
from ingest.upsert import existing_load, feed_upsert, tombstones_sieve

log = logging.getLogger("ingest.services")


def source_store(
    *, source: TechnicalArticle, fetched: Fetched, owner: str, stats: RetryStats | None = None, run_id: int | None = None
) -> SourceResult:
    """Write one fetched source: entries, then bookkeeping, in one retry-wrapped transaction.

    With ``run_id`` (a fanned-out Celery run), the run's counters are incremented in the same
    transaction, so a redelivered task can neither lose nor double-count a source.
    """
    now = timezone.now()
    if fetched.error is not None:
        return source_record_failure(source=source, error=fetched.error, owner=owner, now=now, run_id=run_id)

    def write():
        value = NotModified(SAME_BODY if fetched.same_body else "")
        if fetched.feed is not None:
            counts = feed_upsert(article_id=source.pk, feed=fetched.feed, fetched_at=fetched.fetched_at,
                                 whole_document=not fetched.pushed)
            # Duplicates across feeds before the pingbacks: a pingback goes to the canonical entry.
            new_ids = [pk for pk, _ in counts.touched[:counts.created]]
            canonical_of = duplicates_mark(entry_ids=[pk for pk, _ in counts.touched], new_ids=new_ids)
            value = Counts(counts.created, counts.updated, counts.unchanged,
                           pingbacks_record(touched=counts.touched, canonical_of=canonical_of, new_ids=new_ids))
            subscription_note(source_id=source.pk, feed=fetched.feed, now=now)
            # The outbox: entry.created / entry.updated commit (or roll back) with the entries.
            entry_events(source_id=source.pk, touched=counts.touched, created=counts.created, now=now)
        # Bookkeeping last: if anything above fails, the source stays due and the next run redoes it.
        # It also proves the lease is still ours: if it expired and another run took the source
        # over, this transaction is rolled back and that run's work stands alone.
        values = _success_fields(source, fetched, now)
        if fetched.digest:
            # Only here, with the write that succeeded: a failed store keeps the old digest, so the
            # next run parses the body again.
            values["body_digest"] = fetched.digest
        elif fetched.pushed:
            # A push changes what parsing the polled document would store: the next poll parses.
            values["body_digest"] = ""
        change = _health_fields(source, values, error=None, now=now)
        if not _state_write(source, owner, values):
            raise LeaseLost(f"The lease on source {source.pk} expired and another run took it over; nothing was written.")
        _health_record(source, change, values)
        result = _result(source, value, name=values.get("name", source.name),
                         repaired=fetched.feed is not None and fetched.feed.repaired)
        if run_id:
            run_add(run_id, result=result, retries=stats.retries if stats else 0)
        return result

    try:
        return run_atomic(write, stats=stats, label=f"source {source.pk}")
    except LeaseLost as exc:
        log.warning("lease lost before commit", extra={"source_id": source.pk, "owner": owner})
        return _result(source, Failure(str(exc)))
    except Exception as exc:  # noqa: BLE001 - the containment boundary (a failing database re-raises)
        error = write_failure(exc, what="a source", source_id=source.pk)
        return source_record_failure(source=source, error=error, owner=owner, now=now, run_id=run_id)


def source_record_failure(*, source: TechnicalArticle, error: SourceError, owner: str, now: datetime,
                          run_id: int | None = None) -> SourceResult:
    """Record a failed fetch or write of a source held by ``owner``: backed off, lease freed (and,
    with ``run_id``, counted on that run in the same transaction)."""
    result = _result(source, Failure(storable(str(error), REASON_MAX), error.internal))
    values = {**fetch_state(now=now, interval=None, failures=source.consecutive_failures, policy=_policy(), error=error,
                            rand=_rand, reason=True),
              "last_status": getattr(error, "status", None)}
    if error.deactivate:
        values["active"] = False
        values["last_error"] = storable(f"{error} The source was deactivated; re-activate it in the admin.", REASON_MAX)
    change = _health_fields(source, values, error=error, now=now)

    def write() -> None:
        if _state_write(source, owner, values):
            _health_record(source, change, values)
            if run_id:
                run_add(run_id, result=result)

    run_atomic(write, label="source_record_failure")
    return result


def source_defer(*, source: TechnicalArticle, owner: str, reason: str, run_id: int | None = None) -> SourceResult:
    """Give back a source its host's budget kept from being fetched: lease freed, no fetch state
    written (no failure, no backoff, still due), and, with ``run_id``, counted on that run."""
    result = _result(source, Deferred(reason))

    def write() -> None:
        if TechnicalArticle.objects.filter(pk=source.pk, lease_owner=owner).update(lease_owner="", lease_expires_at=None) and run_id:
            run_add(run_id, result=result)

    run_atomic(write, label=f"source {source.pk} deferred")
    return result


def source_preview(*, source: TechnicalArticle, fetched: Fetched) -> SourceResult:
    """Dry run: what ``source_store`` would do, reading only."""
    if fetched.error is not None:
        return _result(source, Failure(str(fetched.error)))
    if fetched.feed is None:
        return _result(source, NotModified(SAME_BODY if fetched.same_body else ""))
    entries = tombstones_sieve(article_id=source.pk, entries=fetched.feed.entries, whole_document=False)
    plan = entries_decide(entries, existing_load(article_id=source.pk, guids=[e.guid for e in entries]))
    return _result(source, Counts(len(plan.new), len(plan.changed), plan.unchanged), repaired=fetched.feed.repaired)


def comments_store(*, fetched: CommentsFetched, stats: RetryStats | None = None) -> CommentsResult:
    """Write one comment feed's comments and its fetch state."""
    now = timezone.now()
    job = fetched.job
    result = fetched.result
    if fetched.error is None:
        state = fetch_state(now=now, interval=job.interval, failures=job.failures, policy=_policy(), result=result,
                            rand=_rand)

        def write() -> Counts | NotModified:
            value = NotModified(SAME_BODY if fetched.same_body else "")
            commit_asynchronously()
            if not result.not_modified and not fetched.same_body:
                value = Counts(*comments_upsert(entry_id=job.entry_id, comments=fetched.comments, fetched_at=fetched.fetched_at))
            # The digest only with a successful write, as for sources.
            digest = {"body_digest": fetched.digest} if fetched.digest else {}
            CommentFeed.objects.update_or_create(entry_id=job.entry_id, defaults={**state, **digest})
            return value

        try:
            return CommentsResult(entry_id=job.entry_id, url=job.url,
                                  value=run_atomic(write, stats=stats, label=f"comments {job.entry_id}"))
        except Exception as exc:  # noqa: BLE001 - the containment boundary (a failing database re-raises)
            error = write_failure(exc, what="a comment feed", entry_id=job.entry_id)
    else:
        error = fetched.error
    log.warning("comment feed failed", extra={"entry_id": job.entry_id, "url": job.url, "error": str(error)})
    state = fetch_state(now=now, interval=job.interval, failures=job.failures, policy=_policy(), error=error, rand=_rand)
    run_atomic(lambda: CommentFeed.objects.update_or_create(entry_id=job.entry_id, defaults=state), stats=stats,
               label=f"comments {job.entry_id}")
    return CommentsResult(entry_id=job.entry_id, url=job.url, value=Failure(state["last_error"], error.internal))


def _policy() -> Policy:
    return Policy.from_settings(settings)


_rand = random.random  # the jitter's random source (ingest.schedule takes it as an argument)


def _state_write(source: TechnicalArticle, owner: str, values: dict) -> bool:
    """The one writer of a source's fetch state; False when ``owner`` no longer holds its lease."""
    return bool(TechnicalArticle.objects.filter(pk=source.pk, lease_owner=owner).update(
        **values, lease_owner="", lease_expires_at=None))


def _health_fields(source: TechnicalArticle, values: dict, *, error: SourceError | None, now: datetime) -> Change | None:
    """Add to ``values`` (the fetch state about to be written) the health columns this outcome
    changes, so that they go in the same UPDATE; the change to record, or None.

    The state is ``ingest.health``'s; ``source.health`` is the stored one, read under this lease
    (only the lease holder writes fetch state). A success also moves ``health_stale_at``. An
    unchanged state writes no health column and no event: a feed failing every run is one change.
    """
    rule = HealthRule.from_settings(settings)
    state, reason = health_after(error=error, failures=values["consecutive_failures"],
                                 active=values.get("active", source.active), rule=rule)
    if error is None:
        values["health_stale_at"] = stale_at(now=now, next_fetch_at=values["next_fetch_at"], rule=rule)
    change = health_change(source.health, state, storable(reason, REASON_MAX))
    if change is not None:
        values.update(health=state, health_changed_at=now)
    return change


def _health_record(source: TechnicalArticle, change: Change | None, values: dict) -> None:
    """One ``source.health_changed`` event for a changed state, in the caller's transaction."""
    if change is None:
        return
    events_record([Event(
        type=Event.Type.SOURCE_HEALTH_CHANGED, source_id=source.pk, created_at=values["health_changed_at"],
        payload={"source_id": source.pk, "name": values.get("name", source.name),
                 "feed_url": values.get("feed_url", source.feed_url), "from": change.before, "to": change.after,
                 "reason": change.reason},
    )])


def _result(source: TechnicalArticle, value, *, name: str | None = None, repaired: bool = False) -> SourceResult:
    return SourceResult(id=source.pk, url=source.feed_url, name=source.name if name is None else name, value=value,
                        repaired=repaired)


def _success_fields(source: TechnicalArticle, fetched: Fetched, now: datetime) -> dict:
    result = fetched.result
    assert result is not None
    values = {**_schedule_fields(source, fetched, now), "last_success_at": now, "last_status": result.status}
    feed = fetched.feed
    if feed is not None:
        if feed.title and source.name == default_name(source.feed_url):
            values["name"] = feed.title[:SOURCE_NAME_MAX]
        if feed.tagline and not source.tagline:
            values["tagline"] = feed.tagline
        if feed.site_url and not source.site_url and len(feed.site_url) <= LINK_MAX:
            values["site_url"] = feed.site_url
        if feed.warning:
            values["last_error"] = f"warning: {feed.warning}"[:REASON_MAX]
    new_url = result.permanent_url
    if new_url and new_url != source.feed_url and len(new_url) <= FEED_URL_MAX:
        if not TechnicalArticle.objects.filter(**TechnicalArticle.keys_for(feed_url=new_url)).exclude(pk=source.pk).exists():
            values["feed_url"] = new_url
            log.info("source moved permanently", extra={"source_id": source.pk, "old_url": source.feed_url, "new_url": new_url})
    return values


def _schedule_fields(source: TechnicalArticle, fetched: Fetched, now: datetime) -> dict:
    """The fetch state after a success, with the next fetch ``ingest.schedule`` decides: a full
    fetch measures the cadence and reads the feed's hints afresh, a 304 keeps the stored ones."""
    policy = _policy()
    feed, result = fetched.feed, fetched.result
    assert result is not None
    if feed is not None:
        cadence = cadence_seconds((e.published_at or e.updated_at for e in feed.entries), now)
        hints = feed.hints
        kept = {"publish_cadence": cadence, "feed_hints": hints_text(hints)}
    else:
        cadence, hints, kept = source.publish_cadence, hints_from_text(source.feed_hints), {}
    if subscription_live(source_id=source.pk, now=now):
        # Pushed to by a WebSub hub: the poll is a safety net, once every INGEST_MAX_INTERVAL.
        decision = Decision(*jittered(settings.INGEST_MAX_INTERVAL, policy.jitter, _rand,
                                      "pushed by its WebSub hub, polled as a safety net"))
    else:
        decision = next_fetch(now=now, bounds=policy.bounds, default_interval=policy.default_interval, rand=_rand,
                              fetch_interval=source.fetch_interval, cadence=cadence, headers=result.headers,
                              hints=hints, honour_hints=source.honour_server_hints)
    return {**fetch_state(now=now, interval=source.fetch_interval, failures=0, policy=policy, result=result,
                          decision=decision, reason=True), **kept}
