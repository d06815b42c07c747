"""parsepool: parses in worker processes, each within its time budget; a stuck or dead worker fails
its own feed only and is replaced. Real spawned processes, small budgets."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest.errors import ParseError
from ingest.parse import parse_feed
from ingest.parsepool import ParsePool
from ingest.types import ParsedFeed

pytestmark = pytest.mark.nodb
ROOT = Path(__file__).resolve().parents[1]

FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>Pool</title>'
        b"<item><guid>urn:pool:1</guid><title>One</title><description>&lt;p&gt;body&lt;/p&gt;</description></item>"
        b"</channel></rss>")


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (whoever reaps orphans here may be slow)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def test_parse_runs_in_a_worker_and_returns_its_result():
    with ParsePool(1, timeout=30) as pool:
        feed = pool.parse(parse_feed, FEED, headers={"content-type": "application/rss+xml"}, url="http://pool.example/")
        worker_pid = pool.parse(os.getpid)

    assert isinstance(feed, ParsedFeed)
    assert feed.entries[0].body_text == "<p>body</p>"
    assert worker_pid != os.getpid()
    _wait_for(lambda: _gone(worker_pid))  # closing the pool stopped it


def test_the_parse_error_of_a_worker_reaches_the_caller():
    with ParsePool(1, timeout=30) as pool:
        with pytest.raises(ParseError, match="HTML page, not a feed"):
            pool.parse(parse_feed, b"<!DOCTYPE html><html><body>hi</body></html>")
        assert pool.parse(len, b"still works") == 11


def test_a_parse_over_its_budget_is_killed_while_the_other_worker_goes_on():
    with ParsePool(2, timeout=1.5) as pool:
        # Both workers started: the budget covers the parse, not a worker's start-up.
        with ThreadPoolExecutor(2) as threads:
            list(threads.map(lambda _: pool.parse(time.sleep, 0.3), range(2)))
        before = set(pool.pids())
        assert len(before) == 2

        with ThreadPoolExecutor(2) as threads:
            stuck = threads.submit(pool.parse, time.sleep, 120)
            time.sleep(0.2)
            normal = threads.submit(pool.parse, parse_feed, FEED)
            assert normal.result(timeout=20).title == "Pool"
            started = time.monotonic()
            with pytest.raises(ParseError, match=r"longer than the 1\.5 s budget \(INGEST_PARSE_TIMEOUT\)"):
                stuck.result(timeout=20)
            assert time.monotonic() - started < 5

        after = set(pool.pids())
        killed = before - after
        assert len(killed) == 1 and _gone(killed.pop())
        # The pool goes on, with a new worker in place of the killed one.
        with ThreadPoolExecutor(2) as threads:
            feeds = list(threads.map(lambda _: pool.parse(parse_feed, FEED), range(4)))
        assert [feed.title for feed in feeds] == ["Pool"] * 4
        assert len(pool.pids()) == 2 and set(pool.pids()) != before


def test_a_worker_killed_from_outside_fails_its_feed_and_is_replaced():
    with ParsePool(1, timeout=60) as pool:
        first = pool.parse(os.getpid)
        with ThreadPoolExecutor(1) as threads:
            busy = threads.submit(pool.parse, time.sleep, 60)
            time.sleep(0.5)  # the sleep has started in the worker
            os.kill(first, signal.SIGKILL)
            with pytest.raises(ParseError, match="died while parsing this feed.*SIGKILL"):
                busy.result(timeout=20)

        second = pool.parse(os.getpid)
        assert second != first
        # An idle worker killed from outside is replaced without failing anyone's feed.
        os.kill(second, signal.SIGKILL)
        _wait_for(lambda: not pool._idle[0].alive())
        third = pool.parse(os.getpid)
        assert third not in (first, second)
        assert pool.parse(parse_feed, FEED).title == "Pool"


def test_closing_the_pool_kills_a_stuck_parse_without_waiting_for_it():
    pool = ParsePool(1, timeout=300)
    pool.parse(os.getpid)
    (pid,) = pool.pids()
    errors = []

    def stuck():
        try:
            pool.parse(time.sleep, 300)
        except ParseError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=stuck)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    pool.close()
    thread.join(20)

    assert time.monotonic() - started < 10 and not thread.is_alive()
    assert errors == ["The parse pool was shut down while this feed was being parsed."]
    _wait_for(lambda: _gone(pid))
    with pytest.raises(RuntimeError, match="closed"):
        pool.parse(os.getpid)


def test_workers_leave_when_the_parent_dies_without_closing_the_pool():
    script = (
        "import os, signal, threading, time\n"
        "from ingest.parsepool import ParsePool\n"
        "pool = ParsePool(1, timeout=300)\n"
        "print(pool.parse(os.getpid), flush=True)\n"
        "threading.Thread(target=pool.parse, args=(time.sleep, 300), daemon=True).start()\n"
        "time.sleep(0.5)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    worker = int(done.stdout.split()[0])
    _wait_for(lambda: _gone(worker), timeout=10)  # mid-parse, it noticed its parent was gone


def test_without_processes_the_parse_runs_here_and_an_overrun_is_logged(caplog):
    with ParsePool(0, timeout=0.05) as pool, caplog.at_level(logging.WARNING, logger="ingest.parsepool"):
        assert pool.parse(os.getpid) == os.getpid()
        assert pool.parse(time.sleep, 0.2) is None  # the parse is kept, however long it took
        assert pool.pids() == []

    [record] = [r for r in caplog.records if r.name == "ingest.parsepool"]
    assert "overran its time budget" in record.getMessage()
    assert record.budget_s == 0.05 and record.elapsed_s >= 0.2


@pytest.mark.parametrize("processes, timeout", [(-1, 1), (1, 0), (1, -2)])
def test_bad_arguments_are_refused(processes, timeout):
    with pytest.raises(ValueError):
        ParsePool(processes, timeout)


def test_a_worker_imports_only_what_parsing_needs():
    """The child is a fresh interpreter: no Django, no HTTP client, no ORM, however the parent runs."""
    heavy = "sorted({m.split('.')[0] for m in __import__('sys').modules} & {'django', 'httpx', 'celery', 'rich'})"
    with ParsePool(1, timeout=30) as pool:
        assert pool.parse(parse_feed, FEED, headers={}, url="http://pool.example/").entries
        assert pool.parse(eval, heavy) == []
        assert pool.parse(eval, "'ingest.models' in __import__('sys').modules") is False


def test_parse_here_runs_in_the_calling_thread_and_starts_no_worker():
    with ParsePool(2, timeout=30) as pool:
        assert pool.parse_here(os.getpid) == os.getpid()
        assert pool.pids() == []


def test_without_processes_parses_sent_to_the_pool_run_one_at_a_time():
    """They are the large ones: their memory must not add up over the fetch threads."""
    running, most = 0, 0
    lock = threading.Lock()

    def parse():
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1

    with ParsePool(0, timeout=30) as pool, ThreadPoolExecutor(4) as threads:
        list(threads.map(lambda _: pool.parse(parse), range(8)))
        assert most == 1
        here = [threads.submit(pool.parse_here, time.sleep, 0.2) for _ in range(4)]
        started = time.monotonic()
        [f.result() for f in here]
        assert time.monotonic() - started < 0.6  # small parses are not held to it
