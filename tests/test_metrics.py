"""``/metrics``: the Prometheus series of docs/metrics.md, scraped over HTTP after a real Celery
worker ingested feeds from the real feed server; its access control; its fixed query count; and
docs/alerts.yml, whose every metric name must be in a real scrape."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from celery import Celery
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ingest import tasks
from ingest.models import Entry, Event, IdleTick, IngestRun, TechnicalArticle, WebhookDelivery, WebhookEndpoint
from ingest.services.metrics import metrics_registry
from tests.helpers import wait_until
from tests.workers import in_process_worker

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "feeds"
TOKEN = "metrics-token-for-the-tests-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, keyed by name and sorted labels, as prometheus_client parses it."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(scrape: dict, name: str, **labels) -> float:
    return scrape[(name, tuple(sorted(labels.items())))]


def scrape(client, **headers) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    return samples(response.content.decode())


# --- A real worker, the real feed server, a scrape over HTTP ------------------------------------


def test_a_scrape_after_a_celery_run_reports_what_the_run_did(transactional_db, broker, feed_server, live_server,
                                                             settings):
    settings.PIPELINE_CELERY = True
    feed_server.add("/blog.rss", (DATA / "blog.rss").read_bytes(), etag='"v1"')
    feed_server.add("/news.atom", (DATA / "news.atom").read_bytes(), content_type="application/atom+xml")
    feed_server.add("/broken.rss", b"nope", status=500)
    for path in ("/blog.rss", "/news.atom", "/broken.rss"):
        TechnicalArticle.objects.create(name=path, feed_url=feed_server.url(path))
    with in_process_worker():
        started = tasks.ingest_feeds.delay().get(timeout=20)
        run = wait_until(lambda: IngestRun.objects.filter(pk=started["run_id"]).exclude(status="running").first(),
                         timeout=30, message="the run to finish")

    response = httpx.get(f"{live_server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    got = samples(response.text)
    created = Entry.objects.count()
    assert created == 8 and run.status == "partial"
    assert value(got, "pipeline_entries_total", command="ingest_feeds", change="created") == created
    assert value(got, "pipeline_entries_total", command="ingest_feeds", change="updated") == 0
    assert value(got, "pipeline_fetches_total", command="ingest_feeds", outcome="fetched") == 2
    assert value(got, "pipeline_fetches_total", command="ingest_feeds", outcome="failed") == 1
    assert value(got, "pipeline_runs_total", command="ingest_feeds", status="partial") == 1
    assert value(got, "pipeline_run_duration_seconds_count", command="ingest_feeds") == 1
    assert value(got, "pipeline_run_duration_seconds_bucket", command="ingest_feeds", le="+Inf") == 1
    assert value(got, "pipeline_run_duration_seconds_sum", command="ingest_feeds") == pytest.approx(run.elapsed_s, abs=1e-3)
    assert value(got, "pipeline_last_success_timestamp_seconds", command="ingest_feeds") == pytest.approx(
        run.finished_at.timestamp(), abs=1e-3)
    assert value(got, "pipeline_run_retries_total", command="ingest_feeds") == run.stats["retries"]
    assert sum(v for (name, _), v in got.items() if name == "pipeline_sources") == 3
    # Nothing is due right after the run: no lag; the failed source waits its backoff.
    assert value(got, "pipeline_sources_due") == 0 and value(got, "pipeline_freshness_lag_seconds") == 0
    assert value(got, "pipeline_broker_up") == 1
    assert value(got, "pipeline_queue_messages", queue="celery") == 0
    assert value(got, "pipeline_webhook_backlog") == 0


# --- What each series says ----------------------------------------------------------------------


def test_lag_backlog_and_idle_ticks_are_read_from_the_database(db, client, settings):
    settings.PIPELINE_CELERY = False
    now = timezone.now()
    TechnicalArticle.objects.create(name="late", feed_url="http://a.example/late.rss", next_fetch_at=now - timedelta(minutes=10))
    TechnicalArticle.objects.create(name="later", feed_url="http://a.example/later.rss", next_fetch_at=now - timedelta(minutes=2))
    TechnicalArticle.objects.create(name="off", feed_url="http://a.example/off.rss", active=False,
                                    next_fetch_at=now - timedelta(days=9))
    TechnicalArticle.objects.create(name="future", feed_url="http://a.example/future.rss", next_fetch_at=now + timedelta(hours=1))
    endpoint = WebhookEndpoint.objects.create(url="http://hooks.example/in")
    for minutes, state in ((30, "pending"), (5, "pending"), (60, "delivered"), (90, "dead")):
        event = Event.objects.create(type="entry.created")
        WebhookDelivery.objects.create(endpoint=endpoint, event=event, state=state, created_at=now - timedelta(minutes=minutes))
    IdleTick.objects.create(command="ingest_feeds", idle_ticks=7, last_idle_at=now - timedelta(seconds=30))

    got = scrape(client)
    assert value(got, "pipeline_sources_due") == 2  # the inactive one is not due, the future one not yet
    assert 600 <= value(got, "pipeline_freshness_lag_seconds") < 660
    assert value(got, "pipeline_webhook_backlog") == 2
    assert value(got, "pipeline_webhook_deliveries", state="pending") == 2
    assert value(got, "pipeline_webhook_deliveries", state="dead") == 1
    assert 1800 <= value(got, "pipeline_webhook_backlog_oldest_age_seconds") < 1860
    assert value(got, "pipeline_idle_ticks_total", command="ingest_feeds") == 7
    # An inactive source is gone (docs/health.md), whatever its last fetch said.
    assert value(got, "pipeline_sources", health="healthy") == 3 and value(got, "pipeline_sources", health="gone") == 1
    assert "pipeline_broker_up" not in {name for name, _ in got}  # no broker to read


def test_an_unreachable_broker_is_a_gauge_not_a_failed_scrape(db, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")  # Celery prefers it to its conf; nothing on port 1
    app = Celery(set_as_current=False)
    got = samples(generate_latest(metrics_registry(celery_app=app, broker_timeout=0.3)).decode())
    assert value(got, "pipeline_broker_up") == 0
    assert not any(name.startswith("pipeline_queue_") for name, _ in got)
    assert ("pipeline_sources_due", ()) in got


def test_a_scrape_costs_the_same_queries_at_any_number_of_sources(db, client):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            scrape(client)
        return len(captured)

    TechnicalArticle.objects.create(name="one", feed_url="http://a.example/0.rss")
    few = queries()
    TechnicalArticle.objects.bulk_create(
        TechnicalArticle(name=f"s{i}", feed_url=f"http://a.example/{i}.rss", health=("healthy", "failing")[i % 2])
        for i in range(1, 300))
    now = timezone.now()
    IngestRun.objects.bulk_create(IngestRun(command=("ingest_feeds", "recompute_counts")[i % 2], status="succeeded",
                                            started_at=now - timedelta(seconds=i + 5), finished_at=now)
                                  for i in range(100))
    assert queries() == few and 5 <= few <= 8, few


# --- Access control -----------------------------------------------------------------------------


def test_the_default_is_loopback_only(db, client):
    assert client.get("/metrics").status_code == 200  # the test client is 127.0.0.1
    refused = client.get("/metrics", REMOTE_ADDR="10.1.2.3")
    assert refused.status_code == 403 and b"pipeline_" not in refused.content


def test_allowed_networks_open_it_to_their_addresses(db, client, settings):
    from pipeline.networks import parse_networks

    settings.METRICS_ALLOWED_NETWORKS = parse_networks(["10.0.0.0/8", "fd00::/8"], name="METRICS_ALLOWED_NETWORKS")
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="fd00::7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # no longer the default


def test_the_token_opens_it_from_anywhere_and_only_the_right_one(db, client, settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_NETWORKS = ()  # the token alone
    bare = client.get("/metrics")
    assert bare.status_code == 401 and bare["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Token {TOKEN}"}).status_code == 401
    ok = client.get("/metrics", REMOTE_ADDR="203.0.113.9", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and b"pipeline_sources_due" in ok.content


def test_writes_are_refused(db, client):
    assert client.post("/metrics").status_code == 405


# --- docs/alerts.yml ----------------------------------------------------------------------------


def test_the_alert_rules_are_a_rules_file_that_uses_only_scraped_series(db, client):
    rules = yaml.safe_load((ROOT / "docs" / "alerts.yml").read_text())
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert all(set(group) >= {"name", "rules"} for group in rules["groups"])
    assert {"PipelineNoSuccessfulRun", "PipelineFreshnessLag", "PipelineSourcesFailing", "PipelineWebhookBacklog"} <= {
        rule["alert"] for rule in alerts}
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, rule
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["labels"]["severity"] in ("warning", "critical")
        assert {"summary", "description"} <= set(rule["annotations"])

    now = timezone.now()
    TechnicalArticle.objects.create(name="a", feed_url="http://a.example/a.rss")
    IngestRun.objects.create(command="ingest_feeds", status="succeeded", started_at=now - timedelta(seconds=3),
                             finished_at=now, stats={"retries": 0})
    IdleTick.objects.create(command="ingest_feeds", idle_ticks=1, last_idle_at=now)
    scraped = {name for name, _ in scrape(client)}
    used = {name for rule in alerts for name in re.findall(r"\bpipeline_[a-z_]+", rule["expr"])}
    assert used and used <= scraped, used - scraped
