"""The schedule through ``manage.py ingest_feeds`` and a real HTTP server: the server's caching
headers and the feed's ttl / skipHours set the next fetch, within the bounds, with jitter;
the cadence measured from the entries; an explicit fetch_interval; the per-source switch; a 304
keeps what the last full fetch measured; and ``list_sources``, the API and the admin say why."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from ingest.models import TechnicalArticle
from ingest.services.tokens import token_issue
from tests.helpers import call, ingest

pytestmark = pytest.mark.django_db
HOUR, DAY = 3600, 86400


def rss(*, gap: timedelta | None = None, n: int = 10, channel: str = "") -> bytes:
    """An RSS feed of ``n`` items published ``gap`` apart up to now (no dates without ``gap``)."""
    now = datetime.now(UTC)
    items = "".join(
        f"<item><title>Post {i}</title><guid>post-{i}</guid>"
        + (f"<pubDate>{format_datetime(now - gap * (i + 1), usegmt=True)}</pubDate>" if gap else "")
        + "</item>" for i in range(n))
    return f"<rss version='2.0'><channel><title>Feed</title>{channel}{items}</channel></rss>".encode()


def register(server, path: str, **fields) -> TechnicalArticle:
    return TechnicalArticle.objects.create(name=path.strip("/"), feed_url=server.url(path), **fields)


def wait_of(source: TechnicalArticle, since: datetime) -> float:
    source.refresh_from_db()
    return (source.next_fetch_at - since).total_seconds()


def listed(source: TechnicalArticle) -> dict:
    [row] = call("list_sources", "--source", str(source.pk))["sources"]
    return row


@override_settings(INGEST_JITTER=0.1)
def test_max_age_sets_the_next_fetch_with_jitter_and_list_sources_says_why(feed_server):
    feed_server.add("/cached.rss", rss(), headers={"Cache-Control": "public, max-age=7200"})
    source = register(feed_server, "/cached.rss")
    before = timezone.now()
    assert ingest()["totals"]["created"] == 10
    assert 2 * HOUR <= wait_of(source, before) <= 2.2 * HOUR + 5
    row = listed(source)
    assert row["schedule_reason"].startswith("Cache-Control max-age 2 h")
    assert row["next_fetch"].startswith(("in 2h", "in 1h59m")) and "because: Cache-Control max-age 2 h" in row["next_fetch"]


def test_a_max_age_of_a_year_is_capped_at_the_max_interval_and_max_age_0_at_the_min(feed_server):
    feed_server.add("/year.rss", rss(), headers={"Cache-Control": "max-age=31536000"})
    feed_server.add("/zero.rss", rss(gap=timedelta(seconds=30)), headers={"Cache-Control": "max-age=0"})
    year, zero = register(feed_server, "/year.rss"), register(feed_server, "/zero.rss")
    before = timezone.now()
    ingest()
    assert DAY <= wait_of(year, before) <= DAY + 5
    assert "capped at INGEST_MAX_INTERVAL 1 d" in listed(year)["next_fetch"]
    assert 300 <= wait_of(zero, before) <= 305  # a feed posting every 30 s, served max-age=0: not every run
    assert listed(zero)["schedule_reason"] == "cadence 30 s, raised to INGEST_MIN_INTERVAL 5 min"


def test_ttl_sets_the_next_fetch_and_a_304_keeps_it(feed_server):
    feed_server.add("/ttl.rss", rss(channel="<ttl>180</ttl>"), etag='"v1"')
    source = register(feed_server, "/ttl.rss")
    before = timezone.now()
    ingest()
    assert 3 * HOUR <= wait_of(source, before) <= 3 * HOUR + 5
    assert source.feed_hints == "ttl=180" and source.schedule_reason == "ttl 180 min"
    before = timezone.now()
    assert ingest("--all")["totals"]["not_modified"] == 1
    assert 3 * HOUR <= wait_of(source, before) <= 3 * HOUR + 5 and source.schedule_reason == "ttl 180 min"


def test_a_next_fetch_in_the_feeds_skip_hours_moves_past_them(feed_server):
    target = datetime.now(UTC) + timedelta(seconds=1800)  # the default interval: no dates, no headers
    skipped = (target.hour, (target.hour + 1) % 24)
    hours = "".join(f"<hour>{h}</hour>" for h in skipped)
    feed_server.add("/night.rss", rss(channel=f"<skipHours>{hours}</skipHours>"))
    source = register(feed_server, "/night.rss")
    ingest()
    source.refresh_from_db()
    assert source.next_fetch_at == target.replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    assert "skipHours until " in source.schedule_reason


def test_the_cadence_of_the_entries_sets_the_interval_and_an_explicit_fetch_interval_wins(feed_server):
    feed_server.add("/daily.rss", rss(gap=timedelta(hours=20)))
    feed_server.add("/busy.rss", rss(gap=timedelta(minutes=7)))
    daily, busy = register(feed_server, "/daily.rss"), register(feed_server, "/busy.rss")
    pinned = register(feed_server, "/busy.rss?pinned", fetch_interval=2 * HOUR)
    before = timezone.now()
    ingest()
    assert 20 * HOUR - 5 <= wait_of(daily, before) <= 20 * HOUR + 5 and daily.publish_cadence == 20 * HOUR
    assert 420 - 5 <= wait_of(busy, before) <= 425 and busy.schedule_reason == "cadence 7 min"
    assert 2 * HOUR <= wait_of(pinned, before) <= 2 * HOUR + 5 and pinned.publish_cadence == 420
    assert listed(pinned)["schedule_reason"] == "fetch_interval 2 h"


def test_the_per_source_switch_ignores_the_servers_hints(feed_server):
    feed_server.add("/cached.rss", rss(channel="<ttl>600</ttl>"), headers={"Cache-Control": "max-age=36000"})
    source = register(feed_server, "/cached.rss", honour_server_hints=False)
    before = timezone.now()
    ingest()
    assert 1800 <= wait_of(source, before) <= 1805
    assert listed(source)["schedule_reason"] == "default interval 30 min; server hints ignored (honour_server_hints off)"


def test_a_304_keeps_the_cadence_measured_by_the_last_full_fetch(feed_server):
    feed_server.add("/weekly.rss", rss(gap=timedelta(hours=6)), etag='"w1"')
    source = register(feed_server, "/weekly.rss")
    ingest()
    source.refresh_from_db()
    assert source.publish_cadence == 6 * HOUR
    before = timezone.now()
    report = ingest("--all")
    assert report["totals"]["not_modified"] == 1 and feed_server.last_status("/weekly.rss") == 304
    assert 6 * HOUR - 5 <= wait_of(source, before) <= 6 * HOUR + 5
    assert (source.publish_cadence, source.schedule_reason) == (6 * HOUR, "cadence 6 h")


@override_settings(INGEST_JITTER=0.1)
def test_sources_added_together_are_not_fetched_in_lockstep_nor_backed_off_in_lockstep(feed_server):
    feed_server.add("/ok.rss", rss())
    feed_server.add("/down.rss", b"oops", status=500)
    fine = [register(feed_server, f"/ok.rss?{i}") for i in range(8)]
    down = [register(feed_server, f"/down.rss?{i}") for i in range(8)]
    ingest()
    nexts = {s.pk: s.next_fetch_at for s in TechnicalArticle.objects.all()}
    assert len({nexts[s.pk] for s in fine}) == 8 and len({nexts[s.pk] for s in down}) == 8
    for source in down:
        source.refresh_from_db()
        assert source.schedule_reason.startswith("backoff 5 min after 1 failure")
        assert listed(source)["next_reason"] == "backoff"


def test_the_api_shows_why_and_lets_a_user_turn_the_hints_off(feed_server):
    feed_server.add("/cached.rss", rss(), headers={"Cache-Control": "max-age=7200"})
    source = register(feed_server, "/cached.rss")
    ingest()
    User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(username='staff').key}")
    body = client.get(f"/api/articles/{source.pk}/").json()
    assert (body["schedule_reason"], body["honour_server_hints"]) == ("Cache-Control max-age 2 h", True)
    refused = client.patch(f"/api/articles/{source.pk}/", {"schedule_reason": "because I say so"},
                           content_type="application/json")
    assert refused.status_code == 400 and "schedule_reason" in refused.json()
    changed = client.patch(f"/api/articles/{source.pk}/", {"honour_server_hints": False}, content_type="application/json")
    assert changed.status_code == 200
    before = timezone.now()
    ingest("--all")
    assert 1800 <= wait_of(source, before) <= 1805


def test_the_admin_shows_why_and_the_switch(feed_server, admin_client):
    feed_server.add("/ttl.rss", rss(gap=timedelta(hours=2), channel="<ttl>180</ttl>"))
    source = register(feed_server, "/ttl.rss")
    ingest()
    listing = admin_client.get("/admin/ingest/technicalarticle/").content.decode()
    assert "ttl 180 min" in listing
    page = admin_client.get(f"/admin/ingest/technicalarticle/{source.pk}/change/").content.decode()
    [checkbox] = re.findall(r'<input[^>]*name="honour_server_hints"[^>]*>', page)
    assert "checked" in checkbox
    assert "7200" in page and "ttl=180" in page  # the measured cadence and the stored hints, read-only
    assert 'name="schedule_reason"' not in page
