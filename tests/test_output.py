"""What a person sees from each management command: ``--verbosity`` 0, 1 and 2, and the human
(non-JSON) reports of ``ingest_feeds``, ``ingest_feeds --dry-run`` and ``recompute_counts``
(``--dry-run`` too).

The README's promise: every command honours ``--verbosity`` (0 silent but for errors, 1 the
summary, 2 one line per item), writes results to stdout and logs to stderr. ``import_opml`` is
covered the same way in tests/test_import_opml.py, ``list_sources`` and ``prune_runs`` in their own
test modules.
"""

import io
import json
import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django.utils import timezone

from ingest.models import Comment, Entry, IngestRun, TechnicalArticle

FEEDS = Path(__file__).parent / "data" / "feeds"
SECONDS = r"\d+\.\d\ds"
COMMANDS = {"add_source", "delete_source", "import_opml", "ingest_feeds", "list_entries", "pipeline_status",
            "recompute_counts",
            # these: in tests/test_list_sources.py, tests/test_prune_runs.py and tests/test_api.py
            "list_sources", "prune_runs", "api_token",
            # in tests/test_prune_entries.py
            "prune_entries",
            # in tests/test_export_opml.py
            "export_opml",
            # and this one in tests/test_webhooks.py
            "webhooks"}


def run(command: str, *args) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(command, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def lines(text: str) -> list[str]:
    return text.rstrip("\n").splitlines() if text else []


def test_every_command_of_the_app_is_covered_here_or_in_test_import_opml():
    ours = {name for name, app in get_commands().items() if app == "ingest"}
    assert ours == COMMANDS, "a new command needs its --verbosity test"


# --- ingest_feeds -------------------------------------------------------------------------------


@pytest.fixture
def feeds(db, feed_server):
    """One feed that works (5 entries) and one that answers 500."""
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    feed_server.add("/broken.rss", b"oops", status=500, content_type="text/plain")
    blog = TechnicalArticle.objects.create(name="", feed_url=feed_server.url("/blog.rss"))
    broken = TechnicalArticle.objects.create(name="Broken", feed_url=feed_server.url("/broken.rss"))
    return blog, broken


def _table_rows(out: str) -> dict[str, list[str]]:
    """The per-source table: the row of each source by its id, split on runs of two spaces or more."""
    rows = {}
    for line in lines(out):
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0].isdigit():
            rows[cells[0]] = cells
    return rows


def test_ingest_feeds_verbosity_0_prints_nothing_even_when_a_feed_fails(feeds):
    out, err = run("ingest_feeds", "--verbosity", "0")
    assert (out, err) == ("", "")
    assert Entry.objects.count() == 5  # it did run
    assert IngestRun.objects.get().status == "partial"


def test_ingest_feeds_verbosity_1_prints_a_table_and_the_summary(feeds):
    blog, broken = feeds
    out, err = run("ingest_feeds")
    run_id = IngestRun.objects.get().pk
    text = lines(out)
    assert text[0].split() == ["id", "source", "new", "updated", "unchanged", "not", "modified", "outcome", "reason"]
    assert set(text[1]) <= {"-", " "}
    rows = _table_rows(out)
    # The first run names the source by its URL: the feed's title is learnt during the run.
    assert rows[str(blog.pk)] == [str(blog.pk), blog.feed_url, "5", "0", "0", "created"]
    assert rows[str(broken.pk)][:6] == [str(broken.pk), "Broken", "0", "0", "0", "failed"]
    assert rows[str(broken.pk)][6].startswith("HTTP 500")
    assert re.fullmatch(rf"Run {run_id} partial: 2 sources, 5 new, 0 updated, 0 unchanged, 0 not modified, "
                        rf"1 failed in {SECONDS}", text[-1]), text[-1]
    assert len(text) == 5 and err == ""


def test_ingest_feeds_verbosity_2_adds_a_line_per_source_as_it_finishes(feeds):
    blog, broken = feeds
    out, _ = run("ingest_feeds", "--verbosity", "2")
    text = lines(out)
    progress = sorted(text[:2])
    assert progress[0] == f"created      {blog.feed_url} "
    assert progress[1].startswith(f"failed       {broken.feed_url} HTTP 500")
    # Then what verbosity 1 prints: the table (header, rule, a row per source) and the summary.
    assert text[2].split()[:3] == ["id", "source", "new"] and set(text[3]) <= {"-", " "}
    assert set(_table_rows("\n".join(text[4:6]))) == {str(blog.pk), str(broken.pk)}
    assert text[6].startswith("Run ") and " partial: 2 sources, 5 new," in text[6] and len(text) == 7


def test_ingest_feeds_with_nothing_due_says_how_to_fetch_anyway(feeds):
    run("ingest_feeds", "--verbosity", "0")
    TechnicalArticle.objects.filter(pk=feeds[1].pk).update(next_fetch_at=timezone.now() + timedelta(hours=1))
    out, _ = run("ingest_feeds")
    run_id = IngestRun.objects.latest("pk").pk
    assert lines(out) == [f"Run {run_id} succeeded: no source is due. Use --all to fetch every active source now."]


def test_ingest_feeds_dry_run_reports_what_would_change_and_writes_nothing(feeds, feed_server):
    blog, broken = feeds
    out, _ = run("ingest_feeds", "--dry-run")
    text = lines(out)
    rows = _table_rows(out)
    assert rows[str(blog.pk)][2:6] == ["5", "0", "0", "created"]
    assert rows[str(broken.pk)][5] == "failed" and rows[str(broken.pk)][6].startswith("HTTP 500")
    assert re.fullmatch(rf"Dry run \(nothing written\): 2 sources, 5 new, 0 updated, 0 unchanged, 0 not modified, "
                        rf"1 failed in {SECONDS}", text[-1]), text[-1]
    assert Entry.objects.count() == 0 and IngestRun.objects.count() == 0
    blog.refresh_from_db()
    broken.refresh_from_db()
    assert (blog.last_fetched_at, blog.next_fetch_at, broken.consecutive_failures, broken.last_error) == (None, None, 0, "")
    assert {r.path for r in feed_server.requests} == {"/blog.rss", "/broken.rss"}  # it did fetch


def test_ingest_feeds_dry_run_after_a_real_run_reports_unchanged(feeds, feed_server):
    run("ingest_feeds", "--verbosity", "0")
    out, _ = run("ingest_feeds", "--dry-run", "--all", "--source", str(feeds[0].pk))
    assert re.fullmatch(rf"Dry run \(nothing written\): 1 sources, 0 new, 0 updated, 5 unchanged, 0 not modified, "
                        rf"0 failed in {SECONDS}", lines(out)[-1]), out
    assert _table_rows(out)[str(feeds[0].pk)][2:6] == ["0", "0", "5", "unchanged"]
    assert IngestRun.objects.count() == 1


def test_ingest_feeds_dry_run_verbosity_0_prints_nothing(feeds):
    assert run("ingest_feeds", "--dry-run", "--verbosity", "0") == ("", "")
    assert Entry.objects.count() == 0


# --- recompute_counts ---------------------------------------------------------------------------


@pytest.fixture
def drift(db):
    """Three entries: one right, one counting a comment that is not there, one missing its comment."""
    source = TechnicalArticle.objects.create(name="S", feed_url="http://127.0.0.1:9/s.rss")
    now = timezone.now()
    entries = [Entry.objects.create(technical_article=source, headline=f"E{i}", body_text="", pub_date=now.date(),
                                    published_at=now, guid=f"g{i}", content_hash="x") for i in range(3)]
    Entry.objects.filter(pk=entries[1].pk).update(number_of_comments=4)
    Comment.objects.create(entry=entries[2], guid="c1", author_name="A", body="hi")
    return entries


def counters() -> list[int]:
    return list(Entry.objects.order_by("pk").values_list("number_of_comments", flat=True))


def test_recompute_counts_prints_its_summary_and_fixes_the_counters(drift):
    out, err = run("recompute_counts")
    run_id = IngestRun.objects.get(command="recompute_counts").pk
    assert re.fullmatch(rf"Run {run_id} succeeded: 3 entries scanned, 2 changed, 1 chunks, 0 retries in {SECONDS}",
                        out.strip()), out
    assert err == "" and counters() == [0, 0, 1]
    again, _ = run("recompute_counts")
    assert re.search(r": 3 entries scanned, 0 changed, 1 chunks", again)


def test_recompute_counts_dry_run_says_what_would_change_and_writes_nothing(drift):
    out, _ = run("recompute_counts", "--dry-run")
    assert re.fullmatch(rf"Dry run \(nothing written\): 3 entries scanned, 2 would change, 1 chunks, 0 retries in {SECONDS}",
                        out.strip()), out
    assert counters() == [0, 4, 0] and IngestRun.objects.count() == 0


def test_recompute_counts_verbosity_0_prints_nothing(drift):
    assert run("recompute_counts", "--verbosity", "0") == ("", "")
    assert counters() == [0, 0, 1]
    assert run("recompute_counts", "--dry-run", "--verbosity", "0") == ("", "")


def test_recompute_counts_verbosity_2_prints_a_line_per_chunk_then_the_summary(drift):
    out, _ = run("recompute_counts", "--verbosity", "2", "--chunk-size", "2")
    text = lines(out)
    assert text[:2] == ["chunk 1: 2/3 entries scanned", "chunk 2: 3/3 entries scanned"]
    assert re.fullmatch(r"Run \d+ succeeded: 3 entries scanned, 2 changed, 2 chunks, .*", text[2]) and len(text) == 3


# --- add_source, delete_source, list_entries, pipeline_status -------------------------------------


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_add_source_says_added_or_already_registered(db, verbosity):
    url = "http://127.0.0.1:9/feed.xml"
    out, _ = run("add_source", url, "--verbosity", verbosity)
    pk = TechnicalArticle.objects.get().pk
    assert lines(out) == [f"Added source {pk} {url}"]
    out, _ = run("add_source", url, "--verbosity", verbosity)
    assert lines(out) == [f"Already registered: source {pk} {url}"]


def test_add_source_verbosity_0_prints_nothing_but_a_refusal_is_still_an_error(db):
    assert run("add_source", "http://127.0.0.1:9/feed.xml", "--verbosity", "0") == ("", "")
    assert TechnicalArticle.objects.count() == 1
    with pytest.raises(CommandError) as info:
        run("add_source", "ftp://127.0.0.1/feed", "--verbosity", "0")
    assert info.value.returncode == 2 and "ftp" in str(info.value)


@pytest.fixture
def stored(db, feed_server):
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    source = TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/blog.rss"))
    run("ingest_feeds", "--verbosity", "0")
    assert Entry.objects.count() == 5
    return source


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_delete_source_says_what_it_deleted(stored, verbosity):
    out, _ = run("delete_source", str(stored.pk), "--yes", "--verbosity", verbosity, "--chunk-size", "2")
    text = lines(out)
    assert re.fullmatch(rf"Deleted source {stored.pk} {re.escape(stored.feed_url)}: .*5 entries.* in 3 chunks, "
                        rf"0 retries, {SECONDS}\.", text[-1]), out
    # Verbosity 2 adds a line per chunk before the summary.
    chunks = ["chunk 1: 2/5 entries deleted", "chunk 2: 4/5 entries deleted", "chunk 3: 5/5 entries deleted"]
    assert text[:-1] == (chunks if verbosity == "2" else [])
    assert not TechnicalArticle.objects.exists()


def test_delete_source_verbosity_0_prints_nothing(stored):
    assert run("delete_source", str(stored.pk), "--yes", "--verbosity", "0") == ("", "")
    assert not Entry.objects.exists()


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_list_entries_prints_a_row_per_entry(stored, verbosity):
    out, _ = run("list_entries", "--verbosity", verbosity)
    text = lines(out)
    assert text[0].split() == ["id", "source", "published", "headline", "comments", "feed", "says", "pingbacks"]
    assert [row.split("  ")[0].strip() for row in text[2:]] == [
        str(pk) for pk in Entry.objects.order_by("-published_at", "-pk").values_list("pk", flat=True)]
    assert "Query plans, part 5" in text[2]


def test_list_entries_verbosity_0_prints_nothing(stored):
    assert run("list_entries", "--verbosity", "0") == ("", "")


def test_list_entries_without_entries_says_so_unless_silenced(db):
    assert run("list_entries") == ("No entries.\n", "")
    assert run("list_entries", "--verbosity", "0") == ("", "")


def _finished_ingest_run() -> None:
    IngestRun.objects.create(command="ingest_feeds", status="succeeded", finished_at=timezone.now())


@pytest.mark.parametrize("verbosity", ["1", "2"])
def test_pipeline_status_healthy_prints_the_report(db, verbosity):
    _finished_ingest_run()
    out, err = run("pipeline_status", "--no-celery", "--verbosity", verbosity)
    text = lines(out)
    assert text[0].startswith("Pipeline healthy (")
    assert "Last runs" in text and any(line.startswith("Sources: 0 active of 0") for line in text)
    assert "Entries ingested in the last 24 hours: 0" in text and err == ""


def test_pipeline_status_verbosity_0_is_silent_when_healthy_and_only_the_error_when_not(db):
    with pytest.raises(CommandError) as info:
        run("pipeline_status", "--no-celery", "--verbosity", "0")
    assert info.value.returncode == 3
    assert str(info.value) == "The pipeline is unhealthy: no ingest_feeds run has ever completed."
    _finished_ingest_run()
    assert run("pipeline_status", "--no-celery", "--verbosity", "0") == ("", "")


def test_pipeline_status_unhealthy_lists_the_problems(db):
    with pytest.raises(CommandError):
        out = StringIO()
        call_command("pipeline_status", "--no-celery", stdout=out, stderr=StringIO())
    text = lines(out.getvalue())
    assert text[0].startswith("Pipeline UNHEALTHY (")
    assert text[1] == "  - no ingest_feeds run has ever completed"


class _Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_delete_source_declined_on_a_terminal_says_nothing_was_deleted(stored, monkeypatch):
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    out, err = run("delete_source", str(stored.pk))
    assert out == f"Nothing deleted: source {stored.pk} is still there.\n"
    assert err.startswith(f"Delete source {stored.pk} 'Blog' ({stored.feed_url}) with 5 entries")
    assert err.endswith("This cannot be undone. [y/N] ")
    monkeypatch.setattr("sys.stdin", _Terminal("n\n"))
    out, err = run("delete_source", str(stored.pk), "--verbosity", "0")
    assert out == "" and "[y/N]" in err  # the question is asked at every verbosity
    assert Entry.objects.count() == 5


def test_delete_source_without_a_terminal_or_yes_refuses_in_one_sentence(stored, monkeypatch):
    monkeypatch.setattr("sys.stdin", StringIO("y\n"))
    with pytest.raises(CommandError) as info:
        run("delete_source", str(stored.pk), "--verbosity", "0")
    assert info.value.returncode == 2
    assert str(info.value) == f"Refusing to delete source {stored.pk} without --yes: there is no terminal to ask on."
    assert Entry.objects.count() == 5


@pytest.mark.parametrize(("command", "args"), [
    ("ingest_feeds", ()), ("ingest_feeds", ("--dry-run",)), ("recompute_counts", ("--chunk-size", "1")),
    ("recompute_counts", ("--dry-run", "--chunk-size", "1")), ("list_entries", ()), ("import_opml", ("-",)),
    ("add_source", ("http://127.0.0.1:9/new.rss",)), ("pipeline_status", ("--no-celery",)),
])
def test_json_output_is_one_object_at_every_verbosity(stored, monkeypatch, command, args):
    """--json wins over --verbosity 2: a script reading stdout gets exactly one JSON object."""
    IngestRun.objects.update(finished_at=timezone.now())
    opml = b'<opml><body><outline xmlUrl="http://127.0.0.1:9/o.rss"/><outline xmlUrl="file:///x"/></body></opml>'
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(opml)))
    out, err = run(command, *args, "--json", "--verbosity", "2")
    assert len(lines(out)) == 1 and isinstance(json.loads(out), dict) and err == ""


@pytest.mark.parametrize(("command", "label"), [("ingest_feeds", "ingest"), ("recompute_counts", "recount")])
def test_a_progress_bar_only_on_a_terminal_and_not_at_verbosity_0_or_with_json(feeds, command, label):
    def stderr_of(*args) -> str:
        out, err = StringIO(), _Terminal()
        call_command(command, "--all" if command == "ingest_feeds" else "--dry-run", *args, stdout=out, stderr=err)
        return err.getvalue()

    drawn = stderr_of()
    # The bar (rich, drawn in place) shows every item done, then is erased: the last thing written
    # clears its line (tests/test_terminal.py renders a real terminal's screen).
    assert re.search(rf"{label} \[#+\] (\d+)/\1 ", drawn), repr(drawn)
    assert drawn.endswith("\x1b[2K"), repr(drawn)
    assert stderr_of("--verbosity", "0") == ""
    assert stderr_of("--json") == ""
    assert run(command, "--all" if command == "ingest_feeds" else "--dry-run")[1] == ""  # piped: no bar


def test_a_coloured_cell_is_measured_without_its_escape_codes():
    from ingest import cli

    headers, rows = ["id", "outcome", "reason"], [[1, cli.Styled("failed", "error"), "HTTP 500"], [22, "created", ""]]
    coloured, plain = cli.table(headers, rows, colour=True), cli.table(headers, rows)
    assert "\x1b[31mfailed" in coloured and "\x1b" not in plain
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain
    assert plain.splitlines()[2].index("HTTP 500") == plain.splitlines()[0].index("reason")


def test_colour_on_a_terminal_only_for_meaning_and_not_with_no_color(feeds):
    def stdout_of(*args) -> str:
        out = _Terminal()
        call_command("ingest_feeds", "--all", *args, stdout=out, stderr=StringIO())
        return out.getvalue()

    coloured = stdout_of()
    assert "\x1b[31mfailed" in coloured and "\x1b[32mcreated" in coloured  # red failed, green created
    assert re.search(r"\x1b\[33mRun \d+ partial: ", coloured)  # the summary of a run with failures: yellow
    header = coloured.splitlines()[0]
    assert "\x1b" not in header  # nothing coloured without a meaning
    assert "\x1b" not in stdout_of("--no-color")
