"""A comment feed that fails (HTTP 500, or a body that is not a feed) while its source works.

What a user must see: the run goes on and completes (exit 0), the source's entries are stored, the
failure is counted in the report and its reason recorded (and shown), the feed is backed off, and
the next run fetches it again once it recovers.
"""

import json
import logging
import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.models import Comment, CommentFeed, Entry, IngestRun, TechnicalArticle

DATA = Path(__file__).parent / "data" / "comments"
COVERING, FILTERED = "https://indexing.example/?p=101", "https://indexing.example/?p=102"


@pytest.fixture
def wordpress(db, feed_server, settings):
    """The WordPress sample: covering.rss answers 500, filtered.rss is an HTML error page."""
    settings.INGEST_COMMENTS_DAYS = 36500  # the sample posts are dated 2026-11
    body = (DATA / "wordpress.rss").read_text().replace("__BASE__", feed_server.base_url)
    feed_server.add("/wp.rss", body)
    feed_server.add("/comments/covering.rss", b"database down", status=500, content_type="text/plain")
    feed_server.add("/comments/filtered.rss", b"<html><body><h1>Maintenance</h1></body></html>", content_type="text/html")
    return TechnicalArticle.objects.create(name="wp", feed_url=feed_server.url("/wp.rss"), fetch_comments=True)


def ingest(*args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ingest_feeds", *args, stdout=out, stderr=err)  # returns: exit status 0
    return out.getvalue(), err.getvalue()


def test_the_run_completes_keeps_the_entries_and_counts_the_failures(wordpress):
    out, _ = ingest("--json")
    report = json.loads(out)
    assert report["status"] == "succeeded"  # the source itself worked: comment feeds do not fail it
    assert [(s["outcome"], s["created"], s["error"]) for s in report["sources"]] == [("created", 2, "")]
    assert report["comments"] == {"feeds": 2, "created": 0, "updated": 0, "not_modified": 0, "failed": 2, "deferred": 0, "same_body": 0}
    assert set(Entry.objects.values_list("guid", flat=True)) == {COVERING, FILTERED}
    assert Entry.objects.get(guid=COVERING).reported_comments == 2  # the entry's own data is kept
    assert Comment.objects.count() == 0
    assert IngestRun.objects.get().status == "succeeded"


def test_each_failure_is_recorded_with_its_reason_and_backed_off(wordpress):
    ingest("--json")
    states = {s.entry.guid: s for s in CommentFeed.objects.select_related("entry")}
    assert states[COVERING].last_error.startswith("HTTP 500")
    assert "HTML page" in states[FILTERED].last_error
    for state in states.values():
        assert state.consecutive_failures == 1 and state.next_fetch_at > timezone.now()


def test_the_summary_line_counts_the_failed_comment_feeds(wordpress):
    out, _ = ingest()
    summary = out.strip().splitlines()[-1]
    assert re.search(r"succeeded: 1 sources, 2 new, .* 0 failed in \d+\.\d\ds; comment feeds: 2 polled, 0 new comments, "
                     r"0 updated, 0 not modified, 2 failed; 1 pingbacks recorded$", summary), summary


def test_a_recovered_comment_feed_is_ingested_by_a_later_run(wordpress, feed_server):
    ingest("--json")
    feed_server.add("/comments/covering.rss", (DATA / "covering.rss").read_bytes())
    out, _ = ingest("--json", "--all")  # --all: the backed-off comment feeds too
    assert json.loads(out)["comments"]["created"] == 2
    state = CommentFeed.objects.get(entry__guid=COVERING)
    assert (state.consecutive_failures, state.last_error) == (0, "")
    assert Entry.objects.get(guid=COVERING).number_of_comments == 2


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_the_reason_of_a_failing_comment_feed_reaches_the_logs(wordpress):
    handler = _Records()
    logger = logging.getLogger("ingest")
    logger.addHandler(handler)
    try:
        ingest("--json")
    finally:
        logger.removeHandler(handler)
    failures = [r for r in handler.records if r.levelno >= logging.WARNING and "comment" in r.getMessage()]
    reasons = " ".join(str(getattr(r, "error", "")) for r in failures)
    assert "HTTP 500" in reasons and "HTML page" in reasons
