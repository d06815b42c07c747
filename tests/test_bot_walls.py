"""Bot walls: a challenge page of a publisher's bot protection is its own failure, named, with its
own backoff, and told apart from a broken feed in ``ingest_feeds``, ``list_sources`` and
``pipeline_status``. The detector's table first, then through the real command and server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from ingest.fetch.botwall import PEEK_BYTES, detect
from ingest.models import TechnicalArticle
from tests.helpers import call, ingest, rss, rss_item

CLOUDFLARE_PAGE = ("<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
                   "<script src=\"/cdn-cgi/challenge-platform/h/b/orchestrate/chl_page/v1\"></script></body></html>")

PAGES = {
    "Cloudflare": (403, {}, CLOUDFLARE_PAGE),
    "DDoS-Guard": (403, {}, "<html><head><title>DDoS-Guard</title></head><body>Checking your browser</body></html>"),
    "Sucuri": (403, {}, "<html><title>Sucuri WebSite Firewall - Access Denied</title></html>"),
    "Imperva": (403, {"x-iinfo": "9-1234"}, "<html><head><title>Pardon Our Interruption</title></head></html>"),
    "PerimeterX": (403, {}, "<html><body><div id=\"px-captcha\"></div></body></html>"),
    "DataDome": (403, {"x-datadome": "protected"},
                 "<html><script src=\"https://ct.captcha-delivery.com/c.js\"></script></html>"),
    "Akamai": (403, {}, "<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY>Reference&#32;&#35;18.1a2b</BODY></HTML>"),
}


@pytest.mark.parametrize("vendor", sorted(PAGES))
def test_each_vendors_challenge_page_is_named(vendor):
    status, headers, body = PAGES[vendor]
    assert detect(status, headers, body.encode()) == vendor
    assert detect(503, headers, body.encode()) == vendor


@pytest.mark.parametrize("status, headers, body", [
    (403, {}, "<html><title>Forbidden</title>You do not have access.</html>"),  # an ordinary refusal
    (403, {"x-iinfo": "9-1234"}, "Forbidden"),  # Imperva's header is on every response it serves
    (404, {"cf-mitigated": "challenge"}, CLOUDFLARE_PAGE),  # only a refusal is examined
    (429, {"server": "ddos-guard"}, "Too many requests"),  # a vendor's rate limit, not a challenge
    (500, {}, CLOUDFLARE_PAGE),
])
def test_an_ordinary_refusal_is_not_a_bot_wall(status, headers, body):
    assert detect(status, headers, body.encode()) is None


def test_a_header_alone_and_a_429_that_is_clearly_a_challenge():
    assert detect(403, {"cf-mitigated": "challenge"}, b"") == "Cloudflare"
    assert detect(429, {"cf-mitigated": "challenge"}, b"") == "Cloudflare"
    assert detect(429, {}, b'<div id="px-captcha">') == "PerimeterX"
    assert detect(403, {"server": "ddos-guard"}, b"") == "DDoS-Guard"
    # Only the start of the body is read: a marker past it is not seen.
    assert detect(403, {}, b" " * PEEK_BYTES + CLOUDFLARE_PAGE.encode()) is None


FEED = rss([rss_item("a", "A post")])


@pytest.fixture
def walled(db, feed_server):
    feed_server.add("/ok.rss", FEED)
    feed_server.add("/walled.rss", CLOUDFLARE_PAGE, status=403, content_type="text/html; charset=UTF-8",
                    headers={"cf-mitigated": "challenge"}, gzip=True)
    feed_server.add("/broken.rss", "<html><title>Forbidden</title></html>", status=403, content_type="text/html")
    make = TechnicalArticle.objects.create
    return {name: make(name=name, feed_url=feed_server.url(f"/{name}.rss")) for name in ("ok", "walled", "broken")}


@override_settings(INGEST_BOT_WALL_BACKOFF=7200, INGEST_BACKOFF_BASE=300)
def test_a_challenge_page_is_its_own_failure_with_its_own_backoff(walled):
    before = timezone.now()
    report = ingest()
    results = {r["name"]: r for r in report["sources"]}
    walled_result, broken = results["walled"], results["broken"]
    assert walled_result["outcome"] == "failed" and walled_result["bot_wall"] is True
    assert walled_result["error"].startswith("blocked by the publisher's bot protection (Cloudflare): ")
    assert "HTTP 403" in walled_result["error"]
    assert broken["bot_wall"] is False and broken["error"].startswith("HTTP 403 Forbidden")
    assert report["totals"]["failed"] == 2 and report["totals"]["bot_walls"] == 1

    walled_row = TechnicalArticle.objects.get(pk=walled["walled"].pk)
    broken_row = TechnicalArticle.objects.get(pk=walled["broken"].pk)
    assert walled_row.last_status == 403
    # Its own backoff (2 h), where an ordinary first failure waits INGEST_BACKOFF_BASE (5 min).
    assert walled_row.next_fetch_at - before >= timedelta(seconds=7200)
    assert walled_row.next_fetch_at - before < timedelta(seconds=7200 + 60)
    assert broken_row.next_fetch_at - before < timedelta(seconds=300 + 60)

    listing = {s["name"]: s for s in call("list_sources")["sources"]}
    assert listing["walled"]["health"] == "bot_wall"
    assert listing["walled"]["health_text"] == "blocked by bot protection 1 in a row"
    assert "bot protection" in listing["walled"]["next_fetch"]
    assert listing["walled"]["last_error"].startswith("blocked by the publisher's bot protection (Cloudflare)")
    assert listing["broken"]["health"] == "failing"

    # Two of three sources blocked would exit 4 (docs/health.md); the listing is what this test reads.
    status = call("pipeline_status", "--no-celery", "--tolerance", "1")
    assert status["health"]["counts"]["blocked"] == 2
    assert status["sources"]["bot_walls"] == 1
    failing = {s["name"]: s for s in status["sources"]["failing_sources"]}
    assert failing["walled"]["bot_wall"] is True and failing["broken"]["bot_wall"] is False


@override_settings(INGEST_BOT_WALL_BACKOFF=7200)
def test_the_human_summary_counts_the_bot_walls(walled):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("ingest_feeds", stdout=out, stderr=StringIO())
    assert "2 failed (1 blocked by bot protection)" in out.getvalue()
    assert "blocked by the publisher's bot" in out.getvalue()
