"""The pipeline on Celery under faults: a manual run racing a Celery run, Redis going away while a
worker and beat run, a worker killed with SIGKILL inside its database transaction.

Real ``celery -A pipeline worker`` / ``beat`` processes, a real Redis (Redis database 11, or a
``redis-server`` the test starts and stops on a port of its own), the real test database, feeds
over 127.0.0.1. tests/test_celery.py covers the configuration and kills a worker while it fetches;
here the kill lands while the worker's transaction is open.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Entry, IngestRun, TechnicalArticle
from samples.feedserver import FeedServer
from tests.helpers import (
    WHEN,
    entry_keys,
    expected_entries,
    generate_feeds,
    postgres_only,
    rss,
    rss_item,
    snapshot,
    vendor,
    wait_until,
    wipe,
)
from tests.reliability.celery_harness import (
    SHARED_REDIS,
    Broker,
    CeleryProcess,
    RedisServer,
    require_redis,
    result_of,
    run_finished,
)
from tests.reliability.runner import manage, observe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_broker():
    broker = Broker(SHARED_REDIS)
    require_redis(broker)
    broker.cleanup()
    yield broker
    broker.cleanup()
    broker.close()


def _register(server: FeedServer, paths) -> dict[str, TechnicalArticle]:
    return {path: TechnicalArticle.objects.create(name=path, feed_url=server.url(path)) for path in paths}


def test_manual_run_and_celery_run_at_the_same_moment_never_share_a_source(shared_broker, tmp_path):
    feeds, unique = generate_feeds(30, 10, seed=3)
    with FeedServer(feeds=feeds, latency=(0.1, 0.3), seed=5) as server:
        _register(server, feeds)
        worker = CeleryProcess("worker", broker=shared_broker, log_dir=tmp_path, concurrency=4).start()
        try:
            rounds = []
            for force in (False, True):  # due sources only; then --all / force=True: everything at once
                start = threading.Barrier(2, timeout=30)
                manual: dict = {}

                def by_hand(start=start, manual=manual, force=force):
                    start.wait()
                    manual["run"] = manage("ingest_feeds", "--json", "--workers", "4", *(["--all"] if force else []))

                thread = threading.Thread(target=by_hand)
                thread.start()
                start.wait()
                dispatched = result_of(shared_broker.send("ingest.tasks.ingest_feeds", force=force), timeout=30)
                thread.join(120)
                celery_run = run_finished(dispatched["run_id"], timeout=120)
                by_hand_report = manual["run"].json()
                assert manual["run"].returncode == 0, manual["run"].explain()
                rounds.append((by_hand_report, celery_run))
                if not force:
                    # Due sources only: every source fetched, by one run at a time. A source the other
                    # run stored between this run's due-check and its claim may be fetched again: a
                    # conditional GET answered 304, which writes nothing.
                    assert len(server.hit_counts()) == 30, server.hit_counts()
                    refetched = {path for path, n in server.hit_counts().items() if n > 1}
                    again = [s for s in by_hand_report["sources"] if s["url"][len(server.base_url):] in refetched]
                    assert all(s["outcome"] == "not_modified" for s in again), again
        except BaseException:
            print(worker.log())
            raise
        finally:
            worker.stop()
        assert worker.tripped() == []
        assert server.overlapping_paths() == [], "a source was fetched by two runs at once"
        assert server.max_in_flight() == 1

    expected = expected_entries(server, unique, set(feeds))
    assert entry_keys() == expected and Entry.objects.count() == len(expected)  # no duplicates, nothing missing
    for by_hand_report, celery_run in rounds:
        manual_run = IngestRun.objects.get(pk=by_hand_report["run_id"])
        assert (manual_run.trigger, manual_run.status) == ("manual", "succeeded")
        assert (celery_run.trigger, celery_run.status) == ("celery", "succeeded")
    # Round 1: every due source went to one of the two runs (the other saw it leased), apart from
    # those re-fetched after the first run had stored them (304, nothing written; see above).
    first_manual, first_celery = rounds[0]
    assert first_celery.sources_total + first_manual["totals"]["sources"] - len(refetched) == 30
    assert IngestRun.objects.filter(command="ingest_feeds").count() == 4
    assert not TechnicalArticle.objects.exclude(lease_owner="").exists()
    observe("manual-and-celery", f"{vendor()}: 2 rounds (due; then --all/force) of `ingest_feeds` by hand and the "
            f"Celery task started on one barrier: sources split {first_manual['totals']['sources']}/"
            f"{first_celery.sources_total} then {rounds[1][0]['totals']['sources']}/{rounds[1][1].sources_total} "
            f"(manual/Celery), skipped as leased {first_manual['skipped_leased']} and {rounds[1][0]['skipped_leased']} "
            f"by hand; {len(refetched)} feed(s) fetched again by the later claimer (304, nothing written); "
            f"at most 1 request in flight per feed; {len(expected)} entries, 0 duplicates; 4 IngestRuns, "
            "all succeeded.")


# --- Redis stops while a worker and beat run ------------------------------------------------------

OUTAGE_ENV = {
    "INGEST_SCHEDULE_SECONDS": "2",
    "RECOUNT_SCHEDULE_SECONDS": "3600",
    "CELERY_VISIBILITY_TIMEOUT": "20",
    "CELERY_TASK_TIME_LIMIT": "15",
    "CELERY_TASK_SOFT_TIME_LIMIT": "12",
    "INGEST_DEADLINE": "5",
    "INGEST_PARSE_PROCESSES": "0",
}


def _all_stored(sources) -> bool:
    ids = [s.pk for s in sources]
    return TechnicalArticle.objects.filter(pk__in=ids, last_success_at__isnull=False).count() == len(ids)


@pytest.mark.slow
@postgres_only
@pytest.mark.parametrize("persistent", [True, False], ids=["aof", "no-persistence"])
def test_redis_stopped_while_worker_and_beat_run_then_back_everything_due_is_ingested(tmp_path, persistent):
    """Redis stops (clean shutdown) while source tasks are queued and one is running; a source is
    registered during the outage; Redis comes back on the same port.

    ``aof``: the broker keeps its queue (append-only file), as a production broker should, and the
    lease (60 s) outlasts the outage: the queued source tasks run when Redis is back, and every
    run completes.
    ``no-persistence``: the queue is lost with Redis (and a 10 s lease lets queued tasks expire):
    the sources whose tasks vanished stay leased by their run until the lease expires, then the
    next periodic run takes them and the orphaned run is closed as partial: late, never lost.
    """
    redis_server = RedisServer(tmp_path, persistent=persistent).start()
    broker = Broker(redis_server.url())
    feeds, unique = generate_feeds(14, 5, seed=11)
    paths = sorted(feeds)
    env = {**OUTAGE_ENV, "INGEST_LEASE_SECONDS": "60" if persistent else "10"}
    with FeedServer(feeds=feeds) as server:
        fast = _register(server, paths[:4])
        worker = CeleryProcess("worker", broker=broker, log_dir=tmp_path, env=env, concurrency=2).start()
        beat = CeleryProcess("beat", broker=broker, log_dir=tmp_path, env=env).start()
        try:
            wait_until(lambda: _all_stored(fast.values()), timeout=60, message="beat's first runs to ingest the sources")
            server.latency = (1.5, 1.5)  # from now on every feed takes 1.5 s: tasks queue up behind the 2 processes
            slow = _register(server, paths[4:10])
            wait_until(lambda: sum(server.hits(p) for p in paths[4:10]) >= 1, timeout=30,
                       message="a source task of the slow sources to start")
            redis_server.stop()
            down_at = time.monotonic()
            during = _register(server, paths[10:])  # registered while the broker is down: due at once
            time.sleep(6)  # three beat intervals without a broker
            assert worker.running and beat.running, "a Celery process died with the broker"
            redis_server.start()
            back_at = time.monotonic()
            everything = [*fast.values(), *slow.values(), *during.values()]
            wait_until(lambda: _all_stored(everything), timeout=120, interval=0.5,
                       message="every source to be ingested after Redis came back")
            caught_up = time.monotonic() - back_at
            wait_until(lambda: not IngestRun.objects.filter(status="running", sources_total__gt=0).exists(),
                       timeout=60, interval=0.5, message="the runs to close")
        except BaseException:
            print(worker.log(), beat.log(), sep="\n--- beat\n")
            raise
        finally:
            beat.stop()
            worker.stop()
            redis_server.kill()
            broker.close()
        assert worker.tripped() == [] and beat.tripped() == []
        assert server.overlapping_paths() == []
        expected = expected_entries(server, unique, set(paths))
    assert entry_keys() == expected and Entry.objects.count() == len(expected)
    assert not TechnicalArticle.objects.exclude(lease_owner="").exists()
    runs = IngestRun.objects.filter(command="ingest_feeds")
    statuses = sorted(set(runs.values_list("status", flat=True)))
    not_clean = "; ".join(f"run {r.pk} {r.status}: {r.error.rstrip('.')}" for r in runs.exclude(status="succeeded"))
    if persistent:
        assert statuses == ["succeeded"], not_clean  # no source task was lost with the broker
    else:
        # The queue went with Redis: the run whose source tasks vanished is closed partial, and says
        # how many never reported and that their sources are due again (they were: see above). No run
        # is left running or marked failed.
        assert "partial" in statuses and set(statuses) <= {"partial", "succeeded"}, not_clean
        lost = list(runs.filter(status="partial").values_list("error", flat=True))
        assert all(re.fullmatch(r"[1-9]\d* source task\(s\) never reported \(lost or expired\); "
                                r"those sources are due again\.", error) for error in lost), lost
    observe(f"redis-outage-{'aof' if persistent else 'volatile'}",
            f"{vendor()}: Redis {'with AOF' if persistent else 'without persistence'} down {back_at - down_at:.0f}s "
            f"with source tasks queued and running, 4 sources registered meanwhile; worker and beat survived; "
            f"all 14 sources ingested {caught_up:.0f}s after Redis returned; {len(expected)} entries, 0 duplicates; "
            f"{runs.count()} IngestRuns ({', '.join(statuses)})" + (f"; {not_clean}" if not_clean else "") + ".")


# --- SIGKILL inside the transaction -----------------------------------------------------------------


def _pg_dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def _entry_insert_running() -> bool:
    with psycopg.connect(_pg_dsn(), autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'INSERT INTO \"ingest_entry\" (%%'").fetchone()[0] > 0


@pytest.mark.slow
@postgres_only
def test_worker_killed_inside_its_transaction_redelivers_and_ends_like_an_undisturbed_run(tmp_path):
    """SIGKILL to the pool process while it is inserting a 20,000-entry feed: PostgreSQL rolls the
    transaction back, the message is requeued, another delivery stores the source; the database
    equals that of a run nobody disturbed."""
    big = rss([rss_item(f"k-{i}", f"Kill {i}", f"<p>{i}</p>", link=f"http://kill.example/{i}", date=WHEN - timedelta(seconds=i))
               for i in range(20_000)], title="Big")
    small = rss([rss_item(f"s-{i}", f"Small {i}", date=WHEN) for i in range(5)], title="Small")
    feeds = {"/big.rss": big.encode(), "/small.rss": small.encode()}
    broker = Broker(SHARED_REDIS)
    require_redis(broker)
    broker.cleanup()
    env = {"INGEST_DEADLINE": "30", "INGEST_PARSE_PROCESSES": "0"}
    with FeedServer(feeds=feeds) as server:
        _register(server, feeds)
        worker = CeleryProcess("worker", broker=broker, log_dir=tmp_path, env=env, concurrency=1).start()
        try:
            dispatched = result_of(broker.send("ingest.tasks.ingest_feeds"), timeout=30)
            wait_until(_entry_insert_running, timeout=60, interval=0.01, message="the worker to insert entries")
            pid = broker.active_pid(worker.name, "ingest.tasks.ingest_source")
            os.kill(pid, signal.SIGKILL)
            killed_at = timezone.now()
            run = run_finished(dispatched["run_id"], timeout=120)
            disturbed = snapshot()
            assert server.hits("/big.rss") == 2, "the killed task was not delivered again"

            wipe()
            _register(server, feeds)
            again = result_of(broker.send("ingest.tasks.ingest_feeds"), timeout=30)
            run_finished(again["run_id"], timeout=120)
            undisturbed = snapshot()
        except BaseException:
            print(worker.log())
            raise
        finally:
            worker.stop()
            broker.cleanup()
            broker.close()
    assert (run.status, run.sources_total, run.sources_fetched, run.entries_created) == ("succeeded", 2, 2, 20_005)
    assert disturbed == undisturbed
    assert disturbed["counts"]["Entry"] == 20_005
    observe("sigkill-mid-transaction", f"{vendor()}: pool process SIGKILLed at {killed_at:%H:%M:%S} while inserting "
            "a 20,000-entry feed; transaction rolled back, message requeued, source stored by the next delivery; "
            "run succeeded with 20,005 entries counted once; snapshot equal to an undisturbed run.")
