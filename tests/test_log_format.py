"""``LOG_FORMAT=json``: every line a command's process writes to stderr is one JSON object with the
documented fields (``ts``, ``level``, ``logger``, ``event``, and fields such as ``run_id``,
``source_id``, ``outcome``, ``error``), while stdout keeps the command's own output.

The commands run as real ``manage.py`` processes against this test's database (committed rows:
``transactional_db``), so what is checked is what a log collector would read.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.models import Entry, TechnicalArticle
from tests.helpers import database_url, json_log_records

ROOT = Path(__file__).resolve().parent.parent
FEEDS = Path(__file__).parent / "data" / "feeds"


def manage(*args: str, log_format: str = "json") -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(),
           "LOG_FORMAT": log_format, "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def json_lines(stderr: str) -> list[dict]:
    """Each stderr line parsed as one JSON log record (tests.helpers), every one the project's."""
    records = json_log_records(stderr)
    for record in records:
        assert record["logger"].split(".")[0] in {"ingest", "pipeline"}, record
    return records


@pytest.fixture
def sources(transactional_db, feed_server):
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    feed_server.add("/broken.rss", b"oops", status=500, content_type="text/plain")
    return (TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/blog.rss")),
            TechnicalArticle.objects.create(name="Broken", feed_url=feed_server.url("/broken.rss")))


def test_ingest_feeds_logs_one_json_object_per_line(sources):
    blog, broken = sources
    proc = manage("ingest_feeds", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # stdout: only the command's JSON object
    records = json_lines(proc.stderr)
    by_event = {}
    for record in records:
        by_event.setdefault(record["event"], []).append(record)
    [failed] = by_event["source failed"]
    assert (failed["level"], failed["source_id"], failed["outcome"]) == ("warning", broken.pk, "failed")
    assert failed["error"].startswith("HTTP 500") and failed["url"] == broken.feed_url
    [done] = by_event["source done"]
    assert (done["level"], done["source_id"], done["outcome"], done["entries_created"]) == ("info", blog.pk, "created", 5)
    [finished] = by_event["ingest finished"]
    assert (finished["run_id"], finished["status"]) == (report["run_id"], "partial")
    assert failed["run_id"] == done["run_id"] == report["run_id"]  # every per-source record names its run
    assert Entry.objects.count() == 5


def test_recompute_counts_logs_one_json_object_per_line(transactional_db):
    proc = manage("recompute_counts")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Run ")  # the human summary stays on stdout, not in the log
    [finished] = [r for r in json_lines(proc.stderr) if r["event"] == "recount finished"]
    assert finished["level"] == "info" and finished["status"] == "succeeded" and finished["scanned"] == 0


def test_text_format_is_not_json(sources):
    """The same run with the default format: the check above can tell the difference."""
    proc = manage("ingest_feeds", "--verbosity", "0", log_format="text")
    assert proc.returncode == 0 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert any(" WARNING ingest.services: source failed " in line for line in lines), proc.stderr
    with pytest.raises(pytest.fail.Exception):
        json_lines(proc.stderr)
