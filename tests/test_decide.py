"""ingest.decide: the pure decisions of a run, built by hand (no database, no network)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ingest.decide import CommentTotals, Policy, Totals, backoff_seconds, fetch_state, run_status, tally, tally_comments
from ingest.errors import BlockedURL, HTTPStatusError, SourceError, StoreError
from ingest.types import CommentsResult, Counts, Failure, FetchResult, NotModified, SourceResult

pytestmark = pytest.mark.nodb

POLICY = Policy(default_interval=3600, backoff_base=300, max_backoff=86400)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


def source(value, pk=1) -> SourceResult:
    return SourceResult(id=pk, url=f"https://example.com/{pk}", value=value)


def test_backoff_doubles_from_the_base_up_to_the_cap():
    assert [backoff_seconds(n, None, policy=POLICY) for n in (1, 2, 3, 4)] == [300, 600, 1200, 2400]
    assert backoff_seconds(40, None, policy=POLICY) == 86400


def test_backoff_is_never_earlier_than_retry_after_and_retry_after_is_capped_too():
    assert backoff_seconds(1, 7200, policy=POLICY) == 7200
    assert backoff_seconds(1, 10**9, policy=POLICY) == 86400


def test_a_failure_that_retrying_cannot_fix_waits_the_longest_backoff_at_once():
    assert backoff_seconds(1, None, policy=POLICY, transient=False) == 86400
    for error in (BlockedURL("a private address"), StoreError("refused")):
        state = fetch_state(now=NOW, interval=None, failures=0, policy=POLICY, error=error)
        assert state["next_fetch_at"] == NOW + timedelta(days=1)
    transient = fetch_state(now=NOW, interval=None, failures=0, policy=POLICY, error=HTTPStatusError("503", status=503))
    assert transient["next_fetch_at"] == NOW + timedelta(seconds=300)


def test_a_failure_counts_once_and_stores_a_clean_reason():
    state = fetch_state(now=NOW, interval=None, failures=2, policy=POLICY, error=SourceError("bad\x00bytes\nhere"))
    assert state["consecutive_failures"] == 3
    assert state["next_fetch_at"] == NOW + timedelta(seconds=1200)
    assert state["last_error"] == "bad bytes here" and "etag" not in state  # validators kept for the next GET


def test_a_success_keeps_the_validators_and_resets_the_failures():
    result = FetchResult(url="u", status=200, content=b"", headers={}, etag='"v1"', last_modified="Tue, 01 Dec 2026")
    state = fetch_state(now=NOW, interval=900, failures=5, policy=POLICY, result=result)
    assert state == {"etag": '"v1"', "last_modified": "Tue, 01 Dec 2026", "last_fetched_at": NOW,
                     "consecutive_failures": 0, "last_error": "", "next_fetch_at": NOW + timedelta(seconds=900)}
    assert fetch_state(now=NOW, interval=None, failures=0, policy=POLICY, result=result)["next_fetch_at"] == NOW + timedelta(hours=1)


def test_the_outcome_is_derived_from_the_value():
    assert [source(v).outcome for v in (Counts(created=1, updated=2), Counts(updated=1), Counts(unchanged=4),
                                        Counts(), NotModified(), Failure("x"))] == \
        ["created", "updated", "unchanged", "unchanged", "not_modified", "failed"]
    failed = source(Failure("internal error: KeyError: 'x'", internal=True))
    assert failed.as_dict() == {"id": 1, "url": "https://example.com/1", "name": "", "outcome": "failed", "created": 0,
                                "updated": 0, "unchanged": 0, "pingbacks": 0,
                                "error": "internal error: KeyError: 'x'", "internal_error": True, "deferred_reason": "",
                                "bot_wall": False, "repaired": False, "same_body": False}


def test_tally_adds_up_sources():
    results = [source(Counts(2, 1, 3, pingbacks=1), 1), source(NotModified(), 2), source(Failure("500"), 3),
               source(Failure("bug", internal=True), 4)]
    assert tally(results) == Totals(sources=4, created=2, updated=1, unchanged=3, not_modified=1, failed=2,
                                    internal_errors=1, pingbacks=1)
    assert tally([]) + tally(results[:1]) == tally(results[:1])


def test_tally_comments_adds_up_comment_feeds():
    results = [CommentsResult(entry_id=1, value=Counts(3, 1)), CommentsResult(entry_id=2, value=NotModified()),
               CommentsResult(entry_id=3, value=Failure("404"))]
    assert tally_comments(results) == CommentTotals(feeds=3, created=3, updated=1, not_modified=1, failed=1)
    assert tally_comments(results).as_dict() == {"feeds": 3, "created": 3, "updated": 1, "not_modified": 1, "failed": 1, "deferred": 0, "same_body": 0}


@pytest.mark.parametrize(("total", "failed", "lost", "status"), [
    (0, 0, 0, "succeeded"), (3, 0, 0, "succeeded"), (3, 1, 0, "partial"), (3, 3, 0, "failed"),
    (3, 0, 1, "partial"), (3, 2, 1, "partial"),
])
def test_run_status(total, failed, lost, status):
    assert run_status(total=total, failed=failed, lost=lost) == status
