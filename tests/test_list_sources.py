"""``manage.py list_sources``: each source's health, last error and next fetch with its reason."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ingest.models import TechnicalArticle
from tests.helpers import call, ingest

URL = "http://feeds.example/{}.rss"


def listing(*args, verbosity: int = 1) -> str:
    out = StringIO()
    call_command("list_sources", *args, verbosity=verbosity, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def sources(db):
    now = timezone.now()
    make = TechnicalArticle.objects.create
    return {
        "ok": make(name="Fine", feed_url=URL.format("ok"), last_fetched_at=now - timedelta(minutes=5),
                   last_success_at=now - timedelta(minutes=5), next_fetch_at=now + timedelta(minutes=25), last_status=200),
        "failing": make(name="Broken", feed_url=URL.format("failing"), consecutive_failures=3, last_status=500,
                        last_fetched_at=now, next_fetch_at=now + timedelta(hours=2),
                        last_error="HTTP 500 from the server.\nTraceback line that is not shown"),
        "throttled": make(name="Busy", feed_url=URL.format("throttled"), consecutive_failures=1, last_status=429,
                          last_fetched_at=now, next_fetch_at=now + timedelta(hours=1), last_error="HTTP 429: too many requests"),
        "internal": make(name="Buggy", feed_url=URL.format("internal"), consecutive_failures=1, last_fetched_at=now,
                         next_fetch_at=now - timedelta(minutes=1), last_error="internal error: KeyError: 'x'"),
        "deactivated": make(name="Gone", feed_url=URL.format("gone"), active=False, consecutive_failures=1,
                            last_status=410, last_error="HTTP 410 Gone. The source was deactivated; re-activate it in the admin."),
        "never": make(name="New", feed_url=URL.format("never")),
        "leased": make(name="Busy now", feed_url=URL.format("leased"), lease_owner="run-9",
                       lease_expires_at=now + timedelta(minutes=10)),
    }


def by_name(report: dict) -> dict:
    return {s["name"]: s for s in report["sources"]}


def test_json_says_each_sources_health_and_when_and_why_it_is_fetched_next(sources):
    report = call("list_sources")
    assert report["total"] == 7
    rows = by_name(report)
    assert [s["id"] for s in report["sources"]] == sorted(s.pk for s in sources.values())
    assert {name: (row["health_text"], row["next_reason"]) for name, row in rows.items()} == {
        "Fine": ("ok", "scheduled"),
        "Broken": ("failing 3 in a row", "backoff"),
        "Busy": ("failing 1 in a row", "backoff"),
        "Buggy": ("internal error", "due"),
        "Gone": ("deactivated", "deactivated"),
        "New": ("never fetched", "due"),
        "Busy now": ("never fetched", "leased"),
    }
    assert rows["Broken"]["last_error"] == "HTTP 500 from the server."  # the first line only
    assert rows["Broken"]["next_fetch"].startswith("in 1h59m") or rows["Broken"]["next_fetch"].startswith("in 2h00m")
    assert "backed off after 3 failures until " in rows["Broken"]["next_fetch"]
    assert "Retry-After" not in rows["Broken"]["next_fetch"] and "(HTTP 429, Retry-After) until " in rows["Busy"]["next_fetch"]
    assert rows["Fine"]["next_fetch"].endswith("scheduled, every 30m00s")
    assert rows["Gone"]["next_fetch"] == "never: deactivated, re-activate in the admin"
    assert rows["New"]["next_fetch"] == "due now" and rows["New"]["last_success_at"] is None
    assert rows["Busy now"]["next_fetch"].startswith("being fetched now (leased until ")
    assert (rows["Fine"]["url"], rows["Fine"]["active"], rows["Gone"]["active"]) == (URL.format("ok"), True, False)


def test_failing_due_source_and_limit_narrow_the_list(sources):
    failing = call("list_sources", "--failing")
    assert [s["name"] for s in failing["sources"]] == ["Broken", "Busy", "Buggy", "Gone"]  # most failures first
    due = call("list_sources", "--due")
    assert sorted(s["name"] for s in due["sources"]) == ["Buggy", "Busy now", "New"]  # active and due, as a run sees them
    one = call("list_sources", "--source", URL.format("failing"), "--source", str(sources["ok"].pk))
    assert sorted(s["name"] for s in one["sources"]) == ["Broken", "Fine"]
    limited = call("list_sources", "--limit", "2")
    assert limited["total"] == 7 and len(limited["sources"]) == 2
    assert "… and 5 more (--limit)" in listing("--limit", "2")


def test_the_table_and_the_verbosity_levels(sources):
    table = listing()
    lines = table.splitlines()
    assert lines[0].split() == ["id", "name", "url", "active", "health", "last", "success", "next", "fetch", "last", "error"]
    assert len(lines) == 2 + len(sources)
    broken = next(line for line in lines if "Broken" in line)
    assert "failing 3 in a row" in broken and "HTTP 500 from the server." in broken and "Traceback" not in broken
    assert "never: deactivated, re-activate in the admin" in next(line for line in lines if "Gone" in line)
    assert listing(verbosity=0) == ""
    detailed = listing(verbosity=2).splitlines()
    assert len(detailed) == 2 * len(sources) + 2
    assert f"{sources['failing'].pk}: {URL.format('failing')}  last fetched 0s ago, HTTP 500; next fetch in " in "\n".join(detailed)


def test_bad_arguments_are_one_sentence_and_exit_2(db):
    for args in (["--limit", "0"], ["--source", "http://feeds.example/unknown.rss"], ["--source", "0"]):
        with pytest.raises(CommandError) as caught:
            listing(*args)
        assert caught.value.returncode == 2 and "\n" not in str(caught.value)
    assert listing() == "No sources.\n"


def test_a_real_failing_feed_is_listed_as_failing_and_backed_off(db, feed_server):
    feed_server.add("/down.rss", b"oops", status=503, headers={"Retry-After": "7200"})
    feed_server.add("/up.rss", b"<rss version='2.0'><channel><title>Up</title></channel></rss>")
    TechnicalArticle.objects.create(name="down", feed_url=feed_server.url("/down.rss"))
    TechnicalArticle.objects.create(name="up", feed_url=feed_server.url("/up.rss"))
    ingest("--all")
    failing = call("list_sources", "--failing")["sources"]
    assert [s["name"] for s in failing] == ["down"]
    [down] = failing
    assert down["health_text"] == "failing 1 in a row" and down["last_status"] == 503
    assert "backed off after 1 failure (HTTP 503, Retry-After) until " in down["next_fetch"]
    assert down["next_fetch"].startswith(("in 1h59m", "in 2h00m"))  # the server's Retry-After, not the 5 min base
    up = by_name(call("list_sources"))["up"]
    assert up["health"] == "ok" and up["last_success_at"] and up["next_reason"] == "scheduled"


def test_verbosity_0_1_2_and_nothing_on_stderr(sources):
    for verbosity, expected_lines in ((0, 0), (1, 2 + len(sources)), (2, 2 + 2 * len(sources))):
        out, err = StringIO(), StringIO()
        call_command("list_sources", verbosity=verbosity, stdout=out, stderr=err)
        assert len(out.getvalue().splitlines()) == expected_lines and err.getvalue() == ""
