"""The Prometheus series of ``/metrics`` (docs/metrics.md), computed from the database at scrape time.

Every gunicorn worker and Celery process writes to the same tables, so a series read from them is
the same whichever web process answers the scrape: no per-process counters, no multiprocess
directory to share or clean up. The cost is a fixed number of aggregate queries per scrape
(``ingest.selectors``, "Metrics"), whatever the number of sources, entries or runs.

Counters are sums over the run ledger, so ``prune_runs`` (which deletes finished runs older than
INGEST_RUNS_KEEP_DAYS) makes them drop: Prometheus reads a drop as a counter reset, and an
``increase()`` or ``rate()`` window that spans a prune counts the runs that remain once more.
docs/metrics.md ("Counters and prune_runs") says how to read them; the alert rules use gauges only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ingest import monitoring, selectors

PREFIX = "pipeline_"


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class PipelineCollector(Collector):
    """Reads the database (and, with a Celery app, the broker's queue lengths) on every ``collect``."""

    def __init__(self, *, celery_app=None, broker_timeout: float = 0.5):
        self.celery_app = celery_app
        self.broker_timeout = broker_timeout

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield from self._runs()
        yield from self._sources(now)
        yield from self._webhooks(now)
        if self.celery_app is not None:
            yield from self._queue()

    def _runs(self) -> Iterator[Metric]:
        totals = selectors.metrics_run_totals()
        fetches = CounterMetricFamily(f"{PREFIX}fetches", "Source fetches by outcome (fetched: a new or changed "
                                      "document was stored; internal_error is counted in failed too).",
                                      labels=["command", "outcome"])
        entries = CounterMetricFamily(f"{PREFIX}entries", "Entries the runs created, updated or found unchanged.",
                                      labels=["command", "change"])
        retries = CounterMetricFamily(f"{PREFIX}run_retries", "Transactions retried after a transient database error.",
                                      labels=["command"])
        durations = HistogramMetricFamily(f"{PREFIX}run_duration_seconds", "Wall time of the finished runs.",
                                          labels=["command"])
        last = GaugeMetricFamily(f"{PREFIX}last_success_timestamp_seconds",
                                 "When the newest succeeded or partial run of the command finished (Unix time).",
                                 labels=["command"])
        for t in totals:
            for outcome, value in (("fetched", t.fetched), ("not_modified", t.not_modified), ("failed", t.failed),
                                   ("internal_error", t.internal_errors), ("deferred", t.deferred)):
                fetches.add_metric([t.command, outcome], value)
            for change, value in (("created", t.created), ("updated", t.updated), ("unchanged", t.unchanged)):
                entries.add_metric([t.command, change], value)
            retries.add_metric([t.command], t.retries)
            buckets = [(f"{bound:g}", count) for bound, count in zip(selectors.RUN_DURATION_BUCKETS, t.buckets)]
            durations.add_metric([t.command], buckets + [("+Inf", t.finished)], t.duration_s)
            if t.last_success_at is not None:
                last.add_metric([t.command], _ts(t.last_success_at))
        runs = CounterMetricFamily(f"{PREFIX}runs", "Runs recorded in the ledger, by final (or running) status.",
                                   labels=["command", "status"])
        for (command, status), count in selectors.metrics_runs_by_status().items():
            runs.add_metric([command, status], count)
        idle = CounterMetricFamily(f"{PREFIX}idle_ticks", "Scheduled ticks that found nothing due (no run recorded).",
                                   labels=["command"])
        idle_last = GaugeMetricFamily(f"{PREFIX}idle_tick_last_timestamp_seconds",
                                      "When the command's last idle tick happened (Unix time).", labels=["command"])
        for command, count, at in selectors.metrics_idle_ticks():
            idle.add_metric([command], count)
            if at is not None:
                idle_last.add_metric([command], _ts(at))
        yield from (fetches, entries, retries, durations, runs, last, idle, idle_last)

    def _sources(self, now: datetime) -> Iterator[Metric]:
        health = GaugeMetricFamily(f"{PREFIX}sources", "Sources by health state.", labels=["health"])
        for state, count in selectors.health_counts(now=now).items():
            health.add_metric([state], count)
        due = selectors.metrics_due_sources(now=now)
        lag = (now - due.oldest_due_at).total_seconds() if due.oldest_due_at is not None else 0.0
        yield health
        yield GaugeMetricFamily(f"{PREFIX}sources_due", "Active sources whose next fetch is due now.", value=due.due)
        yield GaugeMetricFamily(f"{PREFIX}freshness_lag_seconds", "Now minus the oldest due source's next_fetch_at "
                                "(0 when none is due): how far behind its schedule the pipeline is.", value=max(0.0, lag))

    def _webhooks(self, now: datetime) -> Iterator[Metric]:
        states = selectors.metrics_webhook_deliveries()
        deliveries = GaugeMetricFamily(f"{PREFIX}webhook_deliveries", "Webhook deliveries by state.", labels=["state"])
        for state, (count, _) in states.items():
            deliveries.add_metric([state], count)
        pending, oldest = states.get("pending", (0, None))
        age = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
        yield deliveries
        yield GaugeMetricFamily(f"{PREFIX}webhook_backlog", "Webhook deliveries waiting to be sent.", value=pending)
        yield GaugeMetricFamily(f"{PREFIX}webhook_backlog_oldest_age_seconds",
                                "Age of the oldest pending webhook delivery (0 when none is pending).", value=age)

    def _queue(self) -> Iterator[Metric]:
        report = monitoring.queue_lengths(self.celery_app, timeout=self.broker_timeout)
        yield GaugeMetricFamily(f"{PREFIX}broker_up", "1 when the broker's queue lengths could be read, else 0.",
                                value=0 if report.error else 1)
        if report.error:
            return
        waiting = GaugeMetricFamily(f"{PREFIX}queue_messages", "Messages waiting in the Celery queue.", labels=["queue"])
        for queue, count in report.waiting.items():
            waiting.add_metric([queue], count)
        yield waiting
        if report.unacked is not None:
            yield GaugeMetricFamily(f"{PREFIX}queue_unacked", "Messages delivered to a worker and not acknowledged yet.",
                                    value=report.unacked)


def metrics_registry(*, celery_app=None, broker_timeout: float = 0.5) -> CollectorRegistry:
    """A registry holding only the pipeline's collector: no per-process series of the process that
    happens to answer the scrape (they would differ from one gunicorn worker to the next)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(celery_app=celery_app, broker_timeout=broker_timeout))
    return registry
