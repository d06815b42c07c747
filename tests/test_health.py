"""Feed health (docs/health.md): the rule by hand, then through ``ingest_feeds`` against the real
feed server (one ``source.health_changed`` event per change, none when the state stays), and what
the admin, the API, ``pipeline_status`` and ``/healthz`` show of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest import selectors
from ingest.errors import BlockedURL, BotWall, HTTPStatusError, ParseError, SourceGone
from ingest.health import (
    BLOCKED, DEGRADED, FAILING, GONE, HEALTHY, STATES, HealthRule, health_after, health_effective, stale_at,
)
from ingest.models import Event, Health, TechnicalArticle
from ingest.services.tokens import token_issue
from tests.helpers import ROOT, database_url, ingest, rss, rss_item

RULE = HealthRule(failing_after=3, stale_factor=3)
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=dt_timezone.utc)
FEED = rss([rss_item("a", "A post")])


# --- The rule, by hand --------------------------------------------------------------------------


def test_the_states_are_the_models_choices():
    assert STATES == tuple(Health.values)


@pytest.mark.parametrize("error, failures, active, state", [
    (None, 0, True, HEALTHY),
    (HTTPStatusError("HTTP 500", status=500), 1, True, DEGRADED),
    (ParseError("not a feed"), 2, True, DEGRADED),
    (HTTPStatusError("HTTP 500", status=500), 3, True, FAILING),
    (HTTPStatusError("HTTP 503", status=503), 40, True, FAILING),
    (HTTPStatusError("HTTP 403", status=403), 1, True, BLOCKED),
    (HTTPStatusError("HTTP 401", status=401), 9, True, BLOCKED),
    (BlockedURL("a private address"), 1, True, BLOCKED),
    (BotWall(status=503, host="h", vendor="Cloudflare"), 5, True, BLOCKED),
    (SourceGone("HTTP 410", status=410), 1, False, GONE),
    (None, 0, False, GONE),  # fetched by id while deactivated
])
def test_the_state_after_a_fetch_outcome(error, failures, active, state):
    assert health_after(error=error, failures=failures, active=active, rule=RULE)[0] == state


def test_the_threshold_is_the_setting_and_the_reason_says_why():
    error = HTTPStatusError("HTTP 500 from a.example.", status=500)
    assert health_after(error=error, failures=1, active=True, rule=HealthRule(failing_after=1))[0] == FAILING
    state, reason = health_after(error=error, failures=2, active=True, rule=RULE)
    assert (state, reason) == (DEGRADED, "2 failures in a row: HTTP 500 from a.example.")


def test_stale_is_a_factor_of_the_interval_the_schedule_chose():
    assert stale_at(now=NOW, next_fetch_at=NOW + timedelta(hours=2), rule=RULE) == NOW + timedelta(hours=6)
    late = NOW + timedelta(hours=6, seconds=1)
    assert health_effective(stored=HEALTHY, active=True, stale_since=NOW + timedelta(hours=6), now=late) == DEGRADED
    assert health_effective(stored=HEALTHY, active=True, stale_since=late, now=late) == HEALTHY
    assert health_effective(stored=HEALTHY, active=True, stale_since=None, now=late) == HEALTHY  # never judged
    assert health_effective(stored=HEALTHY, active=False, stale_since=NOW, now=late) == GONE  # inactive: not stale
    assert health_effective(stored=FAILING, active=True, stale_since=NOW, now=late) == FAILING


# --- Through ingest_feeds and the real feed server ----------------------------------------------


def health_events(source=None) -> list[dict]:
    rows = Event.objects.filter(type=Event.Type.SOURCE_HEALTH_CHANGED).order_by("id")
    if source is not None:
        rows = rows.filter(source_id=source.pk)
    return [row.payload for row in rows]


def stored(source) -> str:
    return TechnicalArticle.objects.get(pk=source.pk).health


def test_a_feed_that_breaks_and_recovers_is_one_event_per_change(db, feed_server):
    error = {"body": "oops", "status": 500, "content_type": "text/plain"}
    feed_server.add_sequence("/flaky.rss", [{"body": FEED}, error, error, error, error, {"body": FEED}])
    source = TechnicalArticle.objects.create(name="flaky", feed_url=feed_server.url("/flaky.rss"))

    states = []
    for _ in range(6):
        ingest("--all")
        states.append(stored(source))
    assert states == [HEALTHY, DEGRADED, DEGRADED, FAILING, FAILING, HEALTHY]

    events = health_events(source)
    assert [(e["from"], e["to"]) for e in events] == [(HEALTHY, DEGRADED), (DEGRADED, FAILING), (FAILING, HEALTHY)]
    assert events[0] == {"source_id": source.pk, "name": "flaky", "feed_url": source.feed_url, "from": HEALTHY,
                         "to": DEGRADED, "reason": events[0]["reason"]}
    assert events[0]["reason"].startswith("1 failure in a row: ") and "500" in events[0]["reason"]
    assert events[1]["reason"].startswith("3 failures in a row: ")
    assert events[2]["reason"] == "fetched successfully"
    row = TechnicalArticle.objects.get(pk=source.pk)
    assert row.health_changed_at == Event.objects.order_by("-id").first().created_at


def test_an_unchanged_state_costs_no_statement(db, feed_server):
    feed_server.add_sequence("/broken.rss", [{"body": FEED}, {"body": "oops", "status": 500, "content_type": "text/plain"}])
    source = TechnicalArticle.objects.create(name="broken", feed_url=feed_server.url("/broken.rss"))
    ingest()  # a first success: the host's budget row and the entries exist before the runs compared

    def run() -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            ingest("--all")
        return [q["sql"] for q in queries.captured_queries]

    changed = run()  # healthy -> degraded
    unchanged = run()  # degraded -> degraded
    assert stored(source) == DEGRADED and len(health_events(source)) == 1
    inserts = [sql for sql in changed if "ingest_event" in sql.lower()]
    assert len(inserts) == 1 and inserts[0].lstrip().upper().startswith("INSERT")
    assert not [sql for sql in unchanged if "ingest_event" in sql.lower()]
    assert len(changed) == len(unchanged) + 1


def test_gone_and_blocked_are_their_own_states_with_one_event_each(db, feed_server):
    feed_server.add("/gone.rss", "", status=410, content_type="text/plain")
    feed_server.add("/forbidden.rss", "<html>Forbidden</html>", status=403, content_type="text/html")
    make = TechnicalArticle.objects.create
    gone = make(name="gone", feed_url=feed_server.url("/gone.rss"))
    forbidden = make(name="forbidden", feed_url=feed_server.url("/forbidden.rss"))
    private = make(name="private", feed_url="http://10.20.30.40/feed.xml")  # refused by the URL guard

    ingest("--all")
    ingest("--all")  # the 410 source is deactivated: not fetched again; the others stay as they are
    assert (stored(gone), stored(forbidden), stored(private)) == (GONE, BLOCKED, BLOCKED)
    assert not TechnicalArticle.objects.get(pk=gone.pk).active
    assert [(e["from"], e["to"]) for e in health_events(gone)] == [(HEALTHY, GONE)]
    assert health_events(gone)[0]["reason"] == "the feed is gone (HTTP 410)"
    assert [(e["from"], e["to"]) for e in health_events(forbidden)] == [(HEALTHY, BLOCKED)]
    assert "403" in health_events(forbidden)[0]["reason"]
    assert [(e["from"], e["to"]) for e in health_events(private)] == [(HEALTHY, BLOCKED)]


def test_staleness_is_judged_when_read(db, feed_server):
    feed_server.add("/ok.rss", FEED)
    source = TechnicalArticle.objects.create(name="ok", feed_url=feed_server.url("/ok.rss"), fetch_interval=3600)
    before = timezone.now()
    ingest()
    row = TechnicalArticle.objects.get(pk=source.pk)
    # 3 x the interval its schedule chose (an hour, and up to INGEST_JITTER more).
    assert before + timedelta(hours=3) <= row.health_stale_at <= timezone.now() + timedelta(hours=3.4)

    def counts(at):
        return selectors.health_counts(now=at)

    assert counts(before + timedelta(hours=2))[HEALTHY] == 1
    assert counts(before + timedelta(hours=4)) == {**dict.fromkeys(STATES, 0), DEGRADED: 1}
    assert stored(source) == HEALTHY and not health_events(source)  # read-time only: no write, no event
    TechnicalArticle.objects.filter(pk=source.pk).update(active=False)
    assert counts(before + timedelta(hours=4)) == {**dict.fromkeys(STATES, 0), GONE: 1}  # inactive: gone, not stale


def test_counts_and_filters_agree_with_the_rule_in_one_query(db, django_assert_num_queries):
    now = timezone.now()
    sources = []
    for i, (state, active, stale) in enumerate((s, a, t) for s in STATES for a in (True, False)
                                               for t in (None, now - timedelta(hours=1), now + timedelta(hours=1))):
        sources.append(TechnicalArticle.objects.create(name=f"s{i}", feed_url=f"https://h{i}.example/feed",
                                                       health=state, active=active, health_stale_at=stale))
    expected = Counter(selectors.source_health(s, now=now) for s in sources)
    with django_assert_num_queries(1):
        counts = selectors.health_counts(now=now)
    assert counts == {state: expected[state] for state in STATES}
    for state in STATES:
        ids = set(selectors.sources_by_health(TechnicalArticle.objects.all(), state=state, now=now).values_list("pk", flat=True))
        assert ids == {s.pk for s in sources if selectors.source_health(s, now=now) == state}


# --- Where it is shown ----------------------------------------------------------------------------


@pytest.fixture
def mixed(db, feed_server):
    """Four sources after one run: healthy, degraded (one 500), blocked (403), and healthy gone stale."""
    feed_server.add("/ok.rss", FEED)
    feed_server.add("/stale.rss", FEED)
    feed_server.add("/broken.rss", "oops", status=500, content_type="text/plain")
    feed_server.add("/forbidden.rss", "no", status=403, content_type="text/plain")
    sources = {name: TechnicalArticle.objects.create(name=name, feed_url=feed_server.url(f"/{name}.rss"))
               for name in ("ok", "stale", "broken", "forbidden")}
    ingest()
    # As if the last success of "stale" were long past its schedule.
    TechnicalArticle.objects.filter(pk=sources["stale"].pk).update(health_stale_at=timezone.now() - timedelta(minutes=1))
    return sources


def test_the_admin_shows_and_filters_by_effective_health(mixed, client):
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    url = "/admin/ingest/technicalarticle/"
    page = client.get(url)
    assert page.status_code == 200 and "By health" in page.content.decode()
    shown = {}
    for state in STATES:
        response = client.get(url, {"health": state})
        assert response.status_code == 200
        shown[state] = {row.name for row in response.context["cl"].result_list}
    assert shown == {HEALTHY: {"ok"}, DEGRADED: {"stale", "broken"}, FAILING: set(), BLOCKED: {"forbidden"}, GONE: set()}
    html = client.get(url, {"health": DEGRADED}).content.decode()
    assert "degraded" in html and "broken" in html


def test_the_api_shows_health_and_filters_by_it(mixed):
    User.objects.create_user("reader", password="pw")
    api = Client(HTTP_AUTHORIZATION=f"Token {token_issue(username='reader').key}")
    rows = api.get("/api/articles/").json()["results"]
    assert {row["name"]: row["health"] for row in rows} == {"ok": HEALTHY, "stale": DEGRADED, "broken": DEGRADED,
                                                            "forbidden": BLOCKED}
    assert all("health_changed_at" in row for row in rows)
    degraded = api.get("/api/articles/", {"health": DEGRADED}).json()["results"]
    assert sorted(row["name"] for row in degraded) == ["broken", "stale"]
    assert api.get("/api/articles/", {"health": "sick"}).status_code == 400


def status(*args) -> tuple[int, dict]:
    out = StringIO()
    try:
        call_command("pipeline_status", "--no-celery", "--json", *args, stdout=out, stderr=StringIO())
        code = 0
    except CommandError as exc:
        code = exc.returncode
    return code, json.loads(out.getvalue())


def test_pipeline_status_counts_and_exits_4_past_the_tolerance(mixed):
    code, report = status()
    assert report["health"]["counts"] == {HEALTHY: 1, DEGRADED: 2, FAILING: 0, BLOCKED: 1, GONE: 0}
    assert (report["health"]["broken"], report["health"]["active"]) == (1, 4)
    # 1 of 4 is more than the default 10 %: the pipeline works, a feed needs attention.
    assert code == 4 and report["exit_status"] == 4 and report["healthy"] is False
    assert report["problems"] == ["1 of 4 active sources are failing or blocked, more than the tolerance of 10%"]
    assert status("--tolerance", "0.25")[0] == 0  # 1 is not more than a quarter of 4
    assert status("--tolerance", "0")[0] == 4
    with override_settings(PIPELINE_HEALTH_TOLERANCE=0.5):
        assert status()[0] == 0
    out = StringIO()
    call_command("pipeline_status", "--no-celery", "--tolerance", "1", stdout=out, stderr=StringIO())
    assert "Health: 1 healthy, 2 degraded, 0 failing, 1 blocked, 0 gone" in out.getvalue()


def test_the_pipelines_own_problem_wins_over_the_feeds(mixed):
    from ingest.models import IngestRun

    IngestRun.objects.all().delete()  # no completed run: the pipeline itself is unhealthy
    code, report = status()
    assert code == 3 and report["exit_status"] == 3
    assert any("failing or blocked" in problem for problem in report["problems"])


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan", "half"])
def test_a_bad_tolerance_is_a_usage_error(db, value):
    with pytest.raises(CommandError) as caught:
        call_command("pipeline_status", "--no-celery", "--tolerance", value, stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 2 and str(caught.value).startswith("--tolerance must be a fraction from 0 to 1")


def test_exit_status_4_from_the_command_line(transactional_db, feed_server):
    feed_server.add("/ok.rss", FEED)
    feed_server.add("/forbidden.rss", "no", status=403, content_type="text/plain")
    for name in ("ok", "forbidden"):
        TechnicalArticle.objects.create(name=name, feed_url=feed_server.url(f"/{name}.rss"))
    ingest()  # partial: the run completed, one of its two sources is blocked
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    result = subprocess.run([sys.executable, "manage.py", "pipeline_status", "--no-celery", "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 4, result.stderr
    assert json.loads(result.stdout)["health"]["counts"][BLOCKED] == 1
    assert "failing or blocked" in result.stderr and "Traceback" not in result.stderr


def test_healthz_counts_the_states_and_keeps_its_status(mixed, client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok"  # a broken feed is the publisher's problem, not the web process's
    assert body["health"] == {HEALTHY: 1, DEGRADED: 2, FAILING: 0, BLOCKED: 1, GONE: 0}
