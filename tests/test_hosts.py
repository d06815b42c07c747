"""The per-host budget (ingest/services/hosts.py) through the real command, real processes, real
Celery workers and the real feed server: concurrency and spacing per host, Retry-After in both
scopes, deferred sources, and the slot of a killed holder.

One ``FeedServer`` is one host: its ``max_in_flight_total`` is what that host saw at once, its
``start_times`` when each request arrived. 127.0.0.2 is a second host on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest import tasks
from ingest.identity import host_key
from ingest.models import HostBudget, HostSlot, IngestRun, TechnicalArticle
from ingest.services.fanout import ingest_dispatch, source_ingest
from samples.feedserver import FeedServer
from tests.helpers import ROOT, call, database_url, ingest, rss, rss_item, wait_until
from tests.workers import WorkerProcess


def feeds(server: FeedServer, count: int, *, prefix: str = "f", delay: float = 0.0) -> list[TechnicalArticle]:
    """``count`` distinct one-entry feeds on ``server``, each answering after ``delay`` seconds, registered."""
    sources = []
    for n in range(count):
        path = f"/{prefix}{n}.rss"
        server.add(path, rss([rss_item(f"{prefix}-{n}", f"Post {n}")], title=f"{prefix} {n}"), delay=delay)
        sources.append(TechnicalArticle.objects.create(name=f"{prefix}{n}", feed_url=server.url(path)))
    return sources


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``manage.py *args`` in its own process on the test database (stdout: its --json report)."""
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(), **(env or {})}
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)


def report_of(proc: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


def block_loopback(*, minutes: float) -> None:
    """127.0.0.1 blocked for ``minutes``, as a Retry-After in the host scope leaves it."""
    HostBudget.objects.create(host_key=host_key("127.0.0.1"), host="127.0.0.1", blocked_reason="HTTP 429 Too Many Requests.",
                              blocked_until=timezone.now() + timedelta(minutes=minutes))


@pytest.fixture
def second_host():
    """A feed server on 127.0.0.2: another host to the budget."""
    with FeedServer(host="127.0.0.2") as server:
        yield server


def test_one_run_with_more_workers_than_the_budget_keeps_each_host_to_it(db, feed_server, second_host, settings):
    settings.INGEST_HOST_CONCURRENCY = 2
    feeds(feed_server, 8, delay=0.3)
    feeds(second_host, 4, prefix="g", delay=0.3)
    report = ingest("--workers", "8")
    assert report["totals"]["created"] == 12 and report["totals"]["deferred"] == 0
    # Each host saw its two requests at once, never three, though eight threads were free.
    assert feed_server.max_in_flight_total() == 2
    assert second_host.max_in_flight_total() == 2
    # The hosts are budgeted apart, and a busy one holds no thread back: the second host (whose
    # sources come last) was served while the first one's queue was still waiting.
    assert second_host.start_times()[0] < feed_server.start_times()[-1] - 0.5


def test_request_starts_to_one_host_are_spaced(db, feed_server, settings):
    settings.INGEST_HOST_SPACING = 0.5
    feeds(feed_server, 4)
    report = ingest("--workers", "4")
    assert report["totals"]["created"] == 4
    starts = feed_server.start_times()
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    # Turns are spaced exactly; the way to the server (a thread, a connection, its handler thread on
    # a busy machine) adds a little to each arrival, so one gap may look shorter by that much.
    assert len(gaps) == 3 and min(gaps) >= 0.5 - 0.1, gaps
    assert starts[-1] - starts[0] >= 3 * 0.5 - 0.05, gaps
    budget = HostBudget.objects.get(host="127.0.0.1")
    assert budget.last_start_at is not None and not budget.slots.exclude(holder="").exists()  # every slot given back


def test_two_concurrent_commands_share_the_budget_of_a_host(transactional_db, feed_server):
    sources = feeds(feed_server, 8, delay=0.5)
    env = {"INGEST_HOST_CONCURRENCY": "2"}
    first = manage("ingest_feeds", "--json", "--workers", "4", *[f"--source={s.pk}" for s in sources[:4]], env=env)
    second = manage("ingest_feeds", "--json", "--workers", "4", *[f"--source={s.pk}" for s in sources[4:]], env=env)
    reports = [report_of(first), report_of(second)]
    assert [r["totals"]["created"] for r in reports] == [4, 4]
    # Each process alone would have had two requests in flight; together they still had two.
    assert feed_server.max_in_flight_total() == 2
    assert feed_server.overlapping_paths() == []


@pytest.mark.slow
def test_two_celery_workers_share_the_budget_of_a_host(transactional_db, broker, feed_server, tmp_path):
    feeds(feed_server, 8, delay=0.5)
    env = {"INGEST_HOST_CONCURRENCY": "2"}
    workers = [WorkerProcess(log_dir=tmp_path, env=env, concurrency=3).start() for _ in range(2)]
    try:
        started = tasks.ingest_feeds.delay().get(timeout=30)
        run = wait_until(lambda: IngestRun.objects.exclude(status="running").filter(pk=started["run_id"]).first(),
                         timeout=60, message="the fanned-out run to finish")
    except BaseException:
        for worker in workers:
            print(worker.log())
        raise
    finally:
        for worker in workers:
            worker.stop()
    assert (run.status, run.sources_fetched, run.sources_deferred, run.entries_created) == ("succeeded", 8, 0, 8)
    # Six task processes could have fetched at once; the host saw two.
    assert feed_server.max_in_flight_total() == 2


def test_retry_after_backs_off_only_the_source_by_default(db, feed_server, settings):
    feed_server.add("/limited.rss", "slow down", status=429, headers={"Retry-After": "120"}, content_type="text/plain")
    limited = TechnicalArticle.objects.create(name="limited", feed_url=feed_server.url("/limited.rss"))
    others = feeds(feed_server, 2)
    report = ingest("--workers", "1")
    outcomes = {s["id"]: s["outcome"] for s in report["sources"]}
    assert outcomes == {limited.pk: "failed", others[0].pk: "created", others[1].pk: "created"}
    limited.refresh_from_db()
    assert limited.next_fetch_at >= timezone.now() + timedelta(seconds=110)
    assert HostBudget.objects.get(host="127.0.0.1").blocked_until is None


def test_retry_after_in_the_host_scope_defers_the_whole_host_for_every_run(db, feed_server, second_host, settings):
    settings.INGEST_RETRY_AFTER_SCOPE = "host"
    feed_server.add("/limited.rss", "slow down", status=429, headers={"Retry-After": "120"}, content_type="text/plain")
    limited = TechnicalArticle.objects.create(name="limited", feed_url=feed_server.url("/limited.rss"))
    others = feeds(feed_server, 2)
    elsewhere = feeds(second_host, 1, prefix="g")[0]

    first = ingest("--workers", "1")
    outcomes = {s["id"]: s["outcome"] for s in first["sources"]}
    assert outcomes == {limited.pk: "failed", others[0].pk: "deferred", others[1].pk: "deferred", elsewhere.pk: "created"}
    assert (first["status"], first["totals"]["deferred"], first["totals"]["failed"]) == ("partial", 2, 1)
    reason = next(s["deferred_reason"] for s in first["sources"] if s["id"] == others[0].pk)
    assert reason.startswith("Host 127.0.0.1: blocked by a Retry-After until ")
    assert feed_server.hits("/f0.rss") == feed_server.hits("/f1.rss") == 0
    for source in others:  # deferred is not failed: no backoff, no error, lease freed, still due
        source.refresh_from_db()
        assert (source.consecutive_failures, source.last_error, source.lease_owner, source.next_fetch_at) == (0, "", "", None)
    budget = HostBudget.objects.get(host="127.0.0.1")
    assert budget.blocked_until >= timezone.now() + timedelta(seconds=110) and "429" in budget.blocked_reason
    run = IngestRun.objects.get(pk=first["run_id"])
    assert (run.sources_deferred, run.sources_fetched, run.sources_failed) == (2, 1, 1)
    assert sorted(s["outcome"] for s in run.stats["sources"]) == ["created", "deferred", "deferred", "failed"]

    # Another run (here forced) respects the block too, and hits the host not once.
    second = ingest("--all")
    assert {s["outcome"] for s in second["sources"] if s["id"] != elsewhere.pk} == {"deferred"}
    assert feed_server.hits("/limited.rss") == 1 and feed_server.hits("/f0.rss") == 0

    # Once the block is over, the next scheduled run fetches the deferred sources (they stayed due).
    HostBudget.objects.filter(pk=budget.pk).update(blocked_until=timezone.now() - timedelta(seconds=1))
    third = ingest()
    assert {s["id"]: s["outcome"] for s in third["sources"]} == {others[0].pk: "created", others[1].pk: "created"}


def test_a_blocked_host_defers_a_fanned_out_source_and_its_run_still_closes(db, feed_server):
    source = feeds(feed_server, 1)[0]
    block_loopback(minutes=5)
    run_id, owner, claimed = ingest_dispatch()
    result = source_ingest(source_id=source.pk, owner=owner, run_id=run_id)
    assert result.outcome == "deferred" and feed_server.hits("/f0.rss") == 0
    run = IngestRun.objects.get(pk=run_id)
    assert (run.status, run.sources_total, run.sources_deferred, run.sources_failed) == ("succeeded", 1, 1, 0)
    assert run.finished_at is not None and run.stats["sources"][0]["outcome"] == "deferred"
    source.refresh_from_db()
    assert source.lease_owner == "" and source.next_fetch_at is None


def test_a_source_that_waits_past_the_bound_is_deferred_and_fetched_by_the_next_run(transactional_db, feed_server, settings):
    """Another process holds the host's one slot longer than this run may wait (INGEST_DEADLINE)."""
    settings.INGEST_HOST_CONCURRENCY = 1
    settings.INGEST_DEADLINE = 1
    slow = feeds(feed_server, 1, prefix="slow", delay=3)[0]
    fast = feeds(feed_server, 1, prefix="fast")[0]
    holder = manage("ingest_feeds", "--json", f"--source={slow.pk}", env={"INGEST_HOST_CONCURRENCY": "1", "INGEST_DEADLINE": "8",
                                                                           "INGEST_READ_TIMEOUT": "6"})
    try:
        wait_until(lambda: feed_server.hits("/slow0.rss") == 1, timeout=20, message="the slow feed to be requested")
        out = call("ingest_feeds", "--source", str(fast.pk))
        assert [(s["outcome"], s["error"]) for s in out["sources"]] == [("deferred", "")]
        assert "INGEST_HOST_CONCURRENCY" in out["sources"][0]["deferred_reason"]
        assert (out["status"], out["totals"]["deferred"], out["totals"]["failed"]) == ("succeeded", 1, 0)
        assert feed_server.hits("/fast0.rss") == 0
    finally:
        assert report_of(holder)["totals"]["created"] == 1
    fast.refresh_from_db()
    assert fast.next_fetch_at is None and fast.lease_owner == ""
    # The next scheduled run finds it still due (the slow one is not: it was fetched).
    assert [(s["id"], s["outcome"]) for s in ingest()["sources"]] == [(fast.pk, "created")]
    assert feed_server.hits("/fast0.rss") == 1


def test_the_summary_counts_deferred_sources(db, feed_server):
    feeds(feed_server, 1)
    block_loopback(minutes=5)
    out = StringIO()
    call_command("ingest_feeds", stdout=out, stderr=StringIO())
    text = out.getvalue()
    assert "deferred" in text.splitlines()[2] and "Retry-After" in text
    assert "0 failed" in text and "; 1 deferred (their host's budget was spent: a later run fetches them)" in text


def test_the_slot_of_a_process_killed_mid_request_is_taken_over_at_once(transactional_db, feed_server, settings):
    settings.INGEST_HOST_CONCURRENCY = 1
    slow = feeds(feed_server, 1, prefix="slow", delay=30)[0]
    fast = feeds(feed_server, 1, prefix="fast")[0]
    holder = manage("ingest_feeds", "--json", f"--source={slow.pk}", env={"INGEST_HOST_CONCURRENCY": "1"})
    wait_until(lambda: feed_server.hits("/slow0.rss") == 1, timeout=20, message="the slow feed to be requested")
    os.killpg(holder.pid, signal.SIGKILL)  # mid-request: it never gives its slot back
    holder.wait(timeout=10)
    slot = HostSlot.objects.get(budget__host="127.0.0.1")
    assert slot.holder.split(":")[1] == str(holder.pid) and slot.expires_at > timezone.now()
    # Its process is gone from this machine: the next taker frees the slot without waiting for the expiry.
    assert [s["outcome"] for s in ingest("--source", str(fast.pk))["sources"]] == ["created"]


def test_a_slot_held_by_another_machine_is_taken_once_it_expires(db, feed_server, settings):
    """A machine that died mid-request left its slot (only its expiry can tell that it is dead)."""
    settings.INGEST_HOST_CONCURRENCY = 1
    settings.INGEST_DEADLINE = 1  # the wait before a deferral
    fast = feeds(feed_server, 1, prefix="fast")[0]
    budget = HostBudget.objects.create(host_key=host_key("127.0.0.1"), host="127.0.0.1")
    slot = HostSlot.objects.create(budget=budget, number=0, holder="elsewhere:4242:0123456789ab",
                                   expires_at=timezone.now() + timedelta(seconds=2))
    assert [s["outcome"] for s in ingest("--source", str(fast.pk))["sources"]] == ["deferred"]
    time.sleep(max(0.0, (slot.expires_at - timezone.now()).total_seconds()) + 0.1)
    assert [s["outcome"] for s in ingest("--source", str(fast.pk))["sources"]] == ["created"]
    slot.refresh_from_db()
    assert slot.holder == "" and feed_server.hits("/fast0.rss") == 1

def test_the_admin_lists_hosts_and_lifts_a_block(admin_client, db):
    block_loopback(minutes=5)
    budget = HostBudget.objects.get()
    page = admin_client.get("/admin/ingest/hostbudget/")
    assert page.status_code == 200 and b"127.0.0.1" in page.content and b"HTTP 429 Too Many Requests." in page.content
    done = admin_client.post("/admin/ingest/hostbudget/", {"action": "unblock", "_selected_action": [budget.pk]}, follow=True)
    assert b"1 host(s) unblocked" in done.content
    budget.refresh_from_db()
    assert (budget.blocked_until, budget.blocked_reason) == (None, "")
