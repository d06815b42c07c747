"""Database faults during real runs: killed connections, deadlocks, an unreachable database.

Each fault hits ``ingest_feeds`` / ``recompute_counts`` as a user runs them, on the real test
database, with feeds served over 127.0.0.1. The retry helper's unit tests are in
tests/test_retry.py; here the question is what the *product* does with the fault: the final rows
must equal those of a run nobody disturbed, and nothing may be half-written.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections
from django.utils import timezone

from ingest import pingbacks
from ingest.models import Comment, Entry, IngestRun, Pingback, TechnicalArticle
from tests.helpers import WHEN, call, entry_keys, postgres_only, rss, rss_item, snapshot, vendor, wait_until, wipe
from tests.reliability.runner import assert_one_sentence_error, manage, observe

pytestmark = pytest.mark.django_db(transaction=True)


def _pg_dsn() -> str:
    s = connection.settings_dict
    return f"host={s['HOST'] or '127.0.0.1'} port={s['PORT'] or 5432} user={s['USER']} dbname={s['NAME']}"


def _terminate(pid: int) -> None:
    with psycopg.connect(_pg_dsn(), autocommit=True) as admin:
        # The two-argument form waits until the backend is gone, so the next statement surely fails.
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", [pid]).fetchone()[0]


def _serve_linked_feeds(server) -> dict[str, str]:
    """Three feeds: one of 2,500 entries (three INSERT batches), two that link to its entries."""
    big = [rss_item(f"big-{i}", f"Big {i}", f"<p>Entry {i} of the big feed.</p>", link=f"http://big.example/posts/{i}",
                    date=WHEN - timedelta(minutes=i), author=f"author{i % 3}@big.example (Author {i % 3})")
           for i in range(2500)]
    small = [rss_item(f"small-{i}", f"Small {i}", f'<p>See <a href="http://big.example/posts/{i * 7}">big {i * 7}</a>.</p>',
                      link=f"http://small.example/{i}", date=WHEN - timedelta(hours=i), author="me@small.example (Me)")
             for i in range(20)]
    third = [rss_item(f"third-{i}", f"Third {i}", f'<a href="http://small.example/{i}/">back to small</a>',
                      link=f"http://third.example/{i}", date=WHEN - timedelta(days=i)) for i in range(10)]
    feeds = {"/big.rss": rss(big, title="Big"), "/small.rss": rss(small, title="Small"), "/third.rss": rss(third, title="Third")}
    for path, body in feeds.items():
        server.add(path, body, etag=f'"{path}"')
    return {path: server.url(path) for path in feeds}


def _register(urls) -> dict[str, TechnicalArticle]:
    return {path: TechnicalArticle.objects.create(name=path.strip("/"), feed_url=url) for path, url in urls.items()}


@postgres_only
def test_connection_killed_mid_upsert_is_redone_and_the_rows_equal_an_undisturbed_run(feed_server, caplog):
    """pg_terminate_backend twice during one run: between two INSERT batches of a 2,500-entry
    source, and at another source's bookkeeping UPDATE (its entries already written)."""
    urls = _serve_linked_feeds(feed_server)
    sources = _register(urls)
    kills: list[str] = []
    entry_batches = {"n": 0}

    def killer(execute, sql, params, many, context):
        kill = None
        if sql.startswith('INSERT INTO "ingest_entry" ('):
            entry_batches["n"] += 1
            # --workers 1 stores the sources in id order: the second INSERT is /big.rss's second batch
            # (on PostgreSQL new entries go as one executemany of 1,000 rows per batch).
            if entry_batches["n"] == 2 and not kills:
                assert (len(params) if many else len(params[0])) == 1000
                kill = "between the INSERT batches of /big.rss (1,000 of its entries written)"
        elif (sql.startswith('UPDATE "ingest_technicalarticle"') and '"last_success_at"' in sql
              and params and params[-1] == sources["/small.rss"].pk and len(kills) == 1):
            kill = "at the bookkeeping UPDATE of /small.rss (its entries, authors and pingbacks written)"
        if kill:
            kills.append(kill)
            _terminate(context["connection"].connection.info.backend_pid)
        return execute(sql, params, many, context)

    caplog.set_level(logging.WARNING, logger="ingest.retry")
    with connection.execute_wrapper(killer):
        disturbed_report = call("ingest_feeds", "--workers", "1")
    assert len(kills) == 2, kills
    assert disturbed_report["status"] == "succeeded", disturbed_report
    assert disturbed_report["retries"] == 2
    retried = [r.error for r in caplog.records if r.getMessage() == "transient database error, retrying"]
    assert len(retried) == 2 and all("terminat" in e or "closed" in e or "lost" in e for e in retried), retried
    disturbed = snapshot()
    assert disturbed["counts"]["Entry"] == 2530
    assert disturbed["counts"]["Pingback"] > 0

    wipe()
    _register(urls)
    undisturbed_report = call("ingest_feeds", "--workers", "1")
    assert undisturbed_report["retries"] == 0
    assert snapshot() == disturbed
    observe("db-kill-mid-upsert", f"{vendor()}: 2 backends killed ({'; '.join(kills)}); 2 retries; "
            f"{disturbed['counts']['Entry']} entries, {disturbed['counts']['Pingback']} pingbacks, "
            f"{disturbed['counts']['Author']} authors; snapshot equal to an undisturbed run.")


# --- Deadlock: ingest_feeds and recompute_counts on the same entries --------------------------------


def _lock_waiter_sql() -> str:
    if connection.vendor == "postgresql":
        return ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE \"ingest_entry\"%%'")
    # MariaDB does not always list the blocked statement as LOCK WAIT in innodb_trx; an UPDATE of a
    # ten-row table still running after 300 ms is waiting for a lock.
    return ("SELECT count(*) FROM information_schema.processlist WHERE db = database() AND time_ms > 300 "
            "AND info LIKE 'UPDATE `ingest_entry`%%'")


def _someone_waits_for_a_row_lock() -> bool:
    # A connection of its own: this runs while the test's threads hold theirs.
    from django.db import connections as conns

    alias = "default"
    own = conns.create_connection(alias)
    try:
        with own.cursor() as cursor:
            cursor.execute(_lock_waiter_sql())
            return cursor.fetchone()[0] > 0
    finally:
        own.close()


def _deadlocks_so_far() -> int | None:
    if connection.vendor != "postgresql":
        return None
    with psycopg.connect(_pg_dsn(), autocommit=True) as admin:
        admin.execute("SELECT pg_stat_clear_snapshot()")
        return admin.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()").fetchone()[0]


@pytest.mark.skipif(connection.vendor not in ("postgresql", "mysql"),
                    reason="SQLite serializes writers (BEGIN IMMEDIATE): two writers queue, they cannot deadlock")
def test_ingest_and_recount_deadlock_one_is_retried_both_finish_and_counters_are_right(feed_server, caplog, monkeypatch):
    """The ingest of S updates S's entries, then (pingbacks found) the counters of T's entries; a
    recount chunk updates T's entries, then S's: the classic lock-order cycle."""
    t_items = [rss_item(f"t-{i}", f"T {i}", "<p>target</p>", link=f"http://t.example/posts/{i}", date=WHEN - timedelta(hours=i))
               for i in range(5)]
    feed_server.add("/t.rss", rss(t_items, title="T"))
    s_v1 = [rss_item(f"s-{i}", f"S {i}", "<p>no links yet</p>", link=f"http://s.example/{i}", date=WHEN - timedelta(hours=i))
            for i in range(5)]
    s_v2 = [rss_item(f"s-{i}", f"S {i}", f'<p>now linking <a href="http://t.example/posts/{i}">T {i}</a></p>',
                     link=f"http://s.example/{i}", date=WHEN - timedelta(hours=i)) for i in range(5)]
    feed_server.add_sequence("/s.rss", [{"body": rss(s_v1, title="S")}, {"body": rss(s_v2, title="S")}])
    t = TechnicalArticle.objects.create(name="T", feed_url=feed_server.url("/t.rss"))
    s = TechnicalArticle.objects.create(name="S", feed_url=feed_server.url("/s.rss"))
    call("ingest_feeds", "--source", str(t.pk))  # T's entries get the lower ids: a recount chunk locks them first
    call("ingest_feeds", "--source", str(s.pk))
    Entry.objects.update(number_of_comments=7)  # drift on every entry: the recount chunk must update them all
    Comment.objects.create(entry=Entry.objects.get(guid="t-0"), guid="c1")

    ingest_holds_s = threading.Event()
    real_refresh = pingbacks.counters_refresh
    calls = {"n": 0}

    def refresh_after_the_recount_is_waiting(ids):
        calls["n"] += 1
        if calls["n"] == 1:
            ingest_holds_s.set()  # S's entries are updated (locked) in the ingest's open transaction
            wait_until(_someone_waits_for_a_row_lock, timeout=20, interval=0.05, message="the recount to wait for S's rows")
        return real_refresh(ids)

    reports: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(name, *args):
        try:
            if name == "recompute_counts":
                assert ingest_holds_s.wait(20), "the ingest never reached its counter refresh"
            reports[name] = call(name, *args)
        except BaseException as exc:  # noqa: BLE001 - the main thread reports it
            errors.append(exc)
        finally:
            connections.close_all()

    before = _deadlocks_so_far()
    caplog.set_level(logging.WARNING, logger="ingest.retry")
    monkeypatch.setattr(pingbacks, "counters_refresh", refresh_after_the_recount_is_waiting)
    threads = [threading.Thread(target=run, args=("ingest_feeds", "--source", str(s.pk))),
               threading.Thread(target=run, args=("recompute_counts", "--chunk-size", "100"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert reports["ingest_feeds"]["status"] == "succeeded" and reports["recompute_counts"]["status"] == "succeeded"
    assert reports["ingest_feeds"]["totals"]["updated"] == 5 and reports["ingest_feeds"]["totals"]["pingbacks"] == 5
    retries = reports["ingest_feeds"]["retries"] + reports["recompute_counts"]["retries"]
    assert retries >= 1, reports
    victims = [r.work for r in caplog.records if r.getMessage() == "transient database error, retrying"
               and "eadlock" in r.error]
    assert victims, [r.__dict__ for r in caplog.records]
    if before is not None:
        wait_until(lambda: _deadlocks_so_far() > before, timeout=5, message="PostgreSQL to count the deadlock")

    stored = {pk: (c, p) for pk, c, p in Entry.objects.values_list("pk", "number_of_comments", "number_of_pingbacks")}
    true = {e.pk: (e.comments.count(), e.pingbacks.count()) for e in Entry.objects.all()}
    assert stored == true
    assert true[Entry.objects.get(guid="t-0").pk] == (1, 1)
    assert Pingback.objects.count() == 5
    runs = IngestRun.objects.filter(status="succeeded")
    assert runs.filter(command="ingest_feeds").count() == 3 and runs.filter(command="recompute_counts").count() == 1
    observe("deadlock-ingest-recount", f"{vendor()}: deadlock detected, victim retried: {', '.join(victims)}; "
            f"ingest {reports['ingest_feeds']['retries']} / recount {reports['recompute_counts']['retries']} retries; "
            f"both succeeded; all {len(true)} counters equal the rows.")


# --- The database is unreachable ------------------------------------------------------------------


def _unreachable_url(tmp_path: Path) -> str:
    if connection.vendor == "postgresql":
        return "postgres://postgres@127.0.0.1:1/x"
    if connection.vendor == "mysql":
        return "mysql://root@127.0.0.1:1/x"
    unusable = tmp_path / "not-a-database-file"
    unusable.mkdir(exist_ok=True)  # SQLite cannot open a directory: "unable to open database file"
    return f"sqlite:///{unusable}"


def test_database_unreachable_for_the_whole_run_one_sentence_nothing_written_next_run_catches_up(feed_server, tmp_path):
    urls = {f"/feed-{i}.rss": None for i in range(3)}
    for i, path in enumerate(urls):
        feed_server.add(path, rss([rss_item(f"{i}-{k}", f"Entry {k}") for k in range(4)], title=f"Feed {i}"))
        urls[path] = feed_server.url(path)
    _register(urls)
    before = snapshot()

    failed = manage("ingest_feeds", database=_unreachable_url(tmp_path))
    message = assert_one_sentence_error(failed, returncode=1)
    assert "database is unreachable" in message, failed.explain()
    failed_json = manage("ingest_feeds", "--json", database=_unreachable_url(tmp_path))
    assert failed_json.returncode == 1 and failed_json.json()["status"] == "failed", failed_json.explain()
    assert feed_server.requests == []  # nothing fetched that could not be stored
    assert snapshot() == before  # nothing written; every source still due
    assert all(a.next_fetch_at is None and a.lease_owner == "" for a in TechnicalArticle.objects.all())

    caught_up = manage("ingest_feeds", "--json")
    assert caught_up.returncode == 0, caught_up.explain()
    assert caught_up.json()["totals"]["created"] == 12
    assert entry_keys() == {(url, f"{i}-{k}") for i, url in enumerate(urls.values()) for k in range(4)}
    observe("db-unreachable-whole-run", f"{vendor()}: exit {failed.returncode} in {failed.elapsed_s:.1f}s, "
            f"stderr: \"{message}\"; 0 requests, database unchanged; next run exit 0, 12/12 entries.")


@postgres_only
def test_database_lost_mid_run_one_sentence_no_half_written_source_next_run_catches_up(feed_server):
    """The database goes away while the run is between sources (connections cut, new ones refused)."""
    paths = [f"/slow-{i}.rss" for i in range(6)]
    for i, path in enumerate(paths):
        feed_server.add(path, rss([rss_item(f"{i}-{k}", f"Entry {k}", link=f"http://slow.example/{i}/{k}")
                                   for k in range(30)], title=f"Slow {i}"), delay=0.4)
    sources = _register({path: feed_server.url(path) for path in paths})
    env = {"INGEST_LEASE_SECONDS": "3", "INGEST_PARSE_PROCESSES": "0", "DB_RETRY_ATTEMPTS": "3"}
    dbname = connection.settings_dict["NAME"]

    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(run=manage("ingest_feeds", "--workers", "1", env=env)))
    runner.start()
    wait_until(lambda: TechnicalArticle.objects.filter(last_success_at__isnull=False).count() >= 2, timeout=30,
               message="two sources to be stored")
    with psycopg.connect(_pg_dsn().replace(f"dbname={dbname}", "dbname=postgres"), autocommit=True) as admin:
        try:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            admin.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> %s", [dbname, connection.connection.info.backend_pid])
            runner.join(60)
        finally:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    lost = result["run"]
    message = assert_one_sentence_error(lost, returncode=1)
    assert "database" in message.lower(), lost.explain()

    # Every source is either completely stored or untouched: never half-written.
    stored, untouched = [], []
    for path, source in sources.items():
        source.refresh_from_db()
        keys = set(Entry.objects.filter(technical_article=source).values_list("guid", flat=True))
        if source.last_success_at is not None:
            assert len(keys) == 30 and source.etag == "" and source.next_fetch_at > timezone.now(), path
            stored.append(path)
        else:
            assert keys == set() and source.consecutive_failures == 0, path
            untouched.append(path)
    assert len(stored) >= 2 and untouched, (stored, untouched)
    run = IngestRun.objects.get()
    assert run.status in ("running", "failed")  # "running" when the database was gone before it could say so

    time.sleep(3.5)  # the dead run's leases expire (INGEST_LEASE_SECONDS=3)
    caught_up = manage("ingest_feeds", "--json", env=env)
    assert caught_up.returncode == 0, caught_up.explain()
    assert {s["url"].rsplit("/", 1)[1] for s in caught_up.json()["sources"]} == {p.strip("/") for p in untouched}
    assert Entry.objects.count() == 6 * 30
    observe("db-lost-mid-run", f"{vendor()}: database cut after {len(stored)} of 6 sources; exit {lost.returncode}, "
            f"stderr: \"{message}\"; {len(stored)} sources complete, {len(untouched)} untouched; "
            f"after the 3 s lease the next run stored the {len(untouched)} others: 180/180 entries.")
