"""``list_entries``: what a user sees of the stored entries and their counters."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.helpers import ingest, serve_wordpress


def run(*args) -> str:
    out = StringIO()
    call_command("list_entries", *args, stdout=out)
    return out.getvalue()


def test_lists_entries_with_their_counters(db, feed_server, settings):
    settings.INGEST_COMMENTS_DAYS = 36500
    source = serve_wordpress(feed_server)
    ingest()
    rows = json.loads(run("--json", "--source", str(source.pk)))["entries"]
    by_headline = {r["headline"]: r for r in rows}
    assert by_headline["Covering indexes"]["number_of_comments"] == 2
    assert by_headline["Covering indexes"]["reported_comments"] == 2
    assert by_headline["Filtered indexes"]["number_of_pingbacks"] == 1
    table = run("--with-activity")
    assert "Covering indexes" in table and "Filtered indexes" in table


def test_empty_and_bad_arguments(db):
    assert run() == "No entries.\n"
    with pytest.raises(CommandError, match="--limit"):
        run("--limit", "0")
