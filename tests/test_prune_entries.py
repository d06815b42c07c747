"""``manage.py prune_entries``: the entries past their source's retention go, in bounded chunks, with
everything that points at them; discussed entries stay unless asked; a tombstone keeps the feed
from bringing a pruned entry back until the feed stops carrying it. Also the task, beat entry,
Azure timer, the per-source fields in the API, and delete_source's removal of tombstones."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from azure.functions.timer import TimerRequest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from functions_app.runner import command_run
from ingest import tasks
from ingest.models import Comment, Entry, EntryLink, EntryTombstone, IngestRun, Pingback, TechnicalArticle
from ingest.services.retention import entries_prune
from ingest.services.tokens import token_issue
from tests.helpers import call, ingest, rss, rss_item

pytestmark = pytest.mark.django_db
_IN_LIST = re.compile(r"\bIN \(((?:[^()']|'(?:[^']|'')*')*)\)", re.I)


def source(name: str = "Blog", **fields) -> TechnicalArticle:
    return TechnicalArticle.objects.create(name=name, feed_url=f"https://{name.lower()}.example/feed", **fields)


def entries(article: TechnicalArticle, ages_days, prefix: str = "e") -> list[Entry]:
    """One entry per age (days before now), guid ``<prefix>-<i>``."""
    now = timezone.now()
    Entry.objects.bulk_create([
        Entry(technical_article=article, headline=f"{prefix} {i}", body_text="b", pub_date=now.date(),
              published_at=now - timedelta(days=age), guid=f"{prefix}-{i}", content_hash="h")
        for i, age in enumerate(ages_days)])
    return list(Entry.objects.filter(technical_article=article, guid__startswith=f"{prefix}-").order_by("pk"))


def guids(article: TechnicalArticle) -> set[str]:
    return set(Entry.objects.filter(technical_article=article).values_list("guid", flat=True))


def prune(*args) -> dict:
    return call("prune_entries", *args)


def test_by_days_the_old_entries_go_with_their_rows_and_leave_tombstones(settings):
    settings.INGEST_RETENTION_DAYS = 30
    blog = source()
    rows = entries(blog, [1, 10, 29, 31, 90])
    EntryLink.objects.create(entry=rows[4], link_key="k")
    report = prune()
    assert report["status"] == "succeeded" and report["entries"] == 2 and report["tombstones"] == 2
    assert guids(blog) == {"e-0", "e-1", "e-2"}
    assert report["deleted"]["ingest.Entry"] == 2 and report["deleted"]["ingest.EntryLink"] == 1
    assert set(EntryTombstone.objects.values_list("guid_key", flat=True)) == {rows[3].guid_key, rows[4].guid_key}
    run = IngestRun.objects.get(pk=report["run_id"])
    assert run.command == "prune_entries" and run.status == "succeeded" and run.stats["entries"] == 2
    assert prune()["entries"] == 0  # again: nothing left


def test_by_max_entries_the_newest_stay_ties_broken_by_id(settings):
    settings.INGEST_RETENTION_MAX_ENTRIES = 3
    blog = source()
    rows = entries(blog, [5, 1, 3, 4, 2])
    same = rows[0].published_at  # e-5 and e-6 tie with e-0; by id the later two are newer
    Entry.objects.bulk_create([Entry(technical_article=blog, headline="t", body_text="b", pub_date=same.date(),
                                     published_at=same, guid=f"e-{i}", content_hash="h") for i in (5, 6)])
    assert prune()["entries"] == 4
    assert guids(blog) == {"e-1", "e-4", "e-2"}
    settings.INGEST_RETENTION_MAX_ENTRIES = 1
    assert prune()["entries"] == 2 and guids(blog) == {"e-1"}


def test_days_and_max_entries_apply_together(settings):
    settings.INGEST_RETENTION_DAYS, settings.INGEST_RETENTION_MAX_ENTRIES = 30, 2
    blog = source()
    entries(blog, [1, 2, 3, 40])
    assert prune()["entries"] == 2 and guids(blog) == {"e-0", "e-1"}


def test_a_sources_own_values_override_the_settings_and_0_keeps_forever(settings):
    settings.INGEST_RETENTION_DAYS, settings.INGEST_RETENTION_MAX_ENTRIES = 30, 0
    default = source("Default")
    forever = source("Forever", retention_days=0)
    short = source("Short", retention_days=5)
    uncapped = source("Uncapped", retention_days=0, retention_max_entries=0)
    for article in (default, forever, short, uncapped):
        entries(article, [1, 10, 100])
    settings.INGEST_RETENTION_MAX_ENTRIES = 2  # the cap applies where the source has none of its own...
    report = prune()
    assert guids(default) == {"e-0", "e-1"}
    assert guids(forever) == {"e-0", "e-1"}  # ...but its days are 0: only the cap prunes
    assert guids(short) == {"e-0"}
    assert guids(uncapped) == {"e-0", "e-1", "e-2"}  # 0 and 0: everything stays
    by_id = {s["id"]: s for s in report["sources"]}
    assert by_id[short.pk]["retention_days"] == 5 and by_id[short.pk]["entries"] == 2
    assert uncapped.pk not in by_id


def test_discussed_entries_stay_unless_include_discussed_and_other_counters_stay_right(settings):
    settings.INGEST_RETENTION_DAYS = 30
    blog, other = source(), source("Other")
    old = entries(blog, [40, 41, 42, 43])
    kept = entries(other, [1], "k")[0]
    Comment.objects.create(entry=old[0], guid="c1", body="hi")  # a comment row, counter not yet recounted
    Entry.objects.filter(pk=old[1].pk).update(number_of_comments=2)  # the counter says discussed
    Pingback.objects.create(target=old[2], source_url="https://x.example/1")
    # old[3] links to the kept entry: pruning it keeps the kept entry's pingback (unlinked)
    Pingback.objects.create(target=kept, source_url="https://blog.example/3", source_entry=old[3])
    Entry.objects.filter(pk=kept.pk).update(number_of_pingbacks=1)

    dry = prune("--dry-run")
    assert dry["entries"] == 1 and dry["kept_discussed"] == 3
    report = prune()
    assert report["entries"] == 1 and report["kept_discussed"] == 3
    assert guids(blog) == {"e-0", "e-1", "e-2"}
    assert report["unlinked"] == {"ingest.Pingback": 1}
    pingback = Pingback.objects.get(target=kept)
    assert pingback.source_entry_id is None
    assert Entry.objects.get(pk=kept.pk).number_of_pingbacks == Pingback.objects.filter(target=kept).count() == 1
    out = StringIO()
    call_command("prune_entries", stdout=out, stderr=StringIO())
    assert "kept 3 discussed entries" in out.getvalue()

    report = prune("--include-discussed")
    assert report["entries"] == 3 and guids(blog) == set()
    assert report["deleted"]["ingest.Comment"] == 1 and report["deleted"]["ingest.Pingback"] == 1
    assert guids(other) == {"k-0"}


def test_dry_run_deletes_nothing_and_reports_counts(settings):
    settings.INGEST_RETENTION_DAYS = 7
    blog = source()
    entries(blog, [1, 8, 9])
    report = prune("--dry-run")
    assert report["dry_run"] is True and report["entries"] == 2 and report["run_id"] is None
    assert report["sources"] == [{"id": blog.pk, "name": "Blog", "retention_days": 7, "retention_max_entries": 0,
                                  "entries": 2, "kept_discussed": 0}]
    assert Entry.objects.count() == 3 and not EntryTombstone.objects.exists() and not IngestRun.objects.exists()
    out = StringIO()
    call_command("prune_entries", "--dry-run", stdout=out, stderr=StringIO())
    assert out.getvalue().startswith("Dry run (nothing deleted): 2 entries would be deleted")


def test_chunks_bound_every_statement(settings):
    settings.INGEST_RETENTION_DAYS = 1
    blog = source()
    rows = entries(blog, [10 + i for i in range(12)])
    for before, row in zip(rows, rows[1:]):  # each links to the one before it
        Pingback.objects.create(target=before, source_url=f"https://x.example/{row.pk}", source_entry=row)
        EntryLink.objects.create(entry=row, link_key=f"k{row.pk}")
    with CaptureQueriesContext(connection) as queries:
        report = prune("--chunk-size", "5", "--include-discussed", "--source", str(blog.pk))
    assert report["entries"] == 12 and report["chunks"] == 3 and report["tombstones"] == 12
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    entry_deletes = [sql for sql in deletes if re.match(r'DELETE FROM [`"]?ingest_entry[`"]? ', sql)]
    assert len(entry_deletes) == 3
    for sql in deletes:
        ids = [part for match in _IN_LIST.findall(sql) for part in match.split(",")]
        assert ids and len(ids) <= 5, sql  # by primary key, at most a chunk's rows
    assert len(queries.captured_queries) < 3 * 20  # statements grow with the chunks, not the rows


def test_a_crash_after_the_first_chunk_leaves_whole_chunks_and_the_next_run_finishes(settings):
    settings.INGEST_RETENTION_DAYS = 1
    blog = source()
    entries(blog, [10 + i for i in range(7)])

    def crash(done: int) -> None:
        raise RuntimeError(f"killed after {done} entries")

    with pytest.raises(RuntimeError):
        entries_prune(chunk_size=3, on_progress=crash)
    assert Entry.objects.count() == 4 and EntryTombstone.objects.count() == 3  # one whole chunk, with its tombstones
    failed = IngestRun.objects.get(command="prune_entries")
    assert failed.status == "failed" and "killed after 3 entries" in failed.error
    report = prune("--chunk-size", "3")
    assert report["entries"] == 4 and Entry.objects.count() == 0 and EntryTombstone.objects.count() == 7


def test_a_tombstone_stops_ingest_feeds_recreating_the_entry_until_the_feed_drops_it(settings, feed_server):
    old = timezone.now() - timedelta(days=60)
    items = [rss_item("old-1", "Old one", date=old), rss_item("old-2", "Old two", date=old),
             rss_item("new-1", "New", date=timezone.now() - timedelta(hours=1))]
    feed_server.add("/feed.xml", rss(items))
    blog = TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/feed.xml"), retention_days=30)
    assert ingest("--all")["totals"]["created"] == 3
    assert prune()["entries"] == 2 and guids(blog) == {"new-1"}

    feed_server.add("/feed.xml", rss([*items, rss_item("new-2", "Newer")]))
    with CaptureQueriesContext(connection) as queries:
        report = ingest("--all")
    assert report["totals"]["created"] == 1 and guids(blog) == {"new-1", "new-2"}  # the old two stay pruned
    tombstone_reads = [q for q in queries.captured_queries if "entrytombstone" in q["sql"].lower()]
    assert len(tombstone_reads) == 1  # one extra query for the feed's write, nothing deleted
    assert EntryTombstone.objects.filter(source=blog).count() == 2

    feed_server.add("/feed.xml", rss([items[1], items[2], rss_item("new-2", "Newer")]))  # old-1 left the feed
    ingest("--all")
    assert guids(blog) == {"new-1", "new-2"}
    keys = set(EntryTombstone.objects.filter(source=blog).values_list("guid_key", flat=True))
    assert keys == {Entry.keys_for(guid="old-2")["guid_key"]}  # old-1's tombstone is gone, old-2's stays

    feed_server.add("/feed.xml", rss([items[0], items[2]]))  # old-1 is back: nothing remembers it
    assert ingest("--all")["totals"]["created"] == 1 and "old-1" in guids(blog)
    assert not EntryTombstone.objects.filter(source=blog).exists()  # old-2 left the feed meanwhile


def test_delete_source_deletes_its_tombstones_too(settings):
    settings.INGEST_RETENTION_DAYS = 1
    blog, other = source(), source("Other")
    entries(blog, [5, 6, 7])
    entries(other, [5], "o")
    prune()
    assert EntryTombstone.objects.count() == 4
    report = call("delete_source", str(blog.pk), "--yes")
    assert report["deleted"]["ingest.EntryTombstone"] == 3
    assert set(EntryTombstone.objects.values_list("source_id", flat=True)) == {other.pk}


@pytest.mark.parametrize("args, message", [
    (["--chunk-size", "0"], "--chunk-size"),
    (["--chunk-size", "1001"], "--chunk-size"),
    (["--source", "999999"], "No source matches '999999'"),
    (["--source", "0"], "--source"),
])
def test_bad_arguments_are_one_sentence_and_exit_2(args, message):
    with pytest.raises(CommandError) as caught:
        call_command("prune_entries", *args, stdout=StringIO(), stderr=StringIO())
    assert caught.value.returncode == 2 and message in str(caught.value)
    assert "\n" not in str(caught.value).strip()
    assert not IngestRun.objects.exists()


@pytest.mark.django_db(transaction=True)  # the runner closes connections, as around a web request
def test_the_task_beat_entry_and_azure_timer_run_the_same_prune(settings):
    from django.conf import settings as live

    assert live.CELERY_BEAT_SCHEDULE["prune-entries"]["task"] == tasks.prune_entries.name == "ingest.tasks.prune_entries"
    assert live.CELERY_BEAT_SCHEDULE["prune-entries"]["schedule"] == float(live.PRUNE_ENTRIES_SCHEDULE_SECONDS) == 86400.0
    settings.INGEST_RETENTION_DAYS = 3
    blog = source()
    entries(blog, [1, 4, 5])
    result = tasks.prune_entries()
    assert result["entries"] == 2 and IngestRun.objects.get(pk=result["run_id"]).trigger == "celery"
    entries(blog, [6], "z")
    report = command_run("prune_entries", TimerRequest(past_due=False))
    assert report["entries"] == 1 and IngestRun.objects.get(pk=report["run_id"]).trigger == "azure"


def test_staff_set_a_sources_retention_through_the_api_and_bad_values_are_refused():
    blog = source()
    User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {token_issue(username='staff').key}")
    body = client.get(f"/api/articles/{blog.pk}/").json()
    assert body["retention_days"] is None and body["retention_max_entries"] is None
    done = client.patch(f"/api/articles/{blog.pk}/", {"retention_days": 0, "retention_max_entries": 500},
                        content_type="application/json")
    assert done.status_code == 200, done.content
    blog.refresh_from_db()
    assert (blog.retention_days, blog.retention_max_entries) == (0, 500)
    for bad in ({"retention_days": -1}, {"retention_max_entries": "many"}, {"retention_days": 10**9}):
        assert client.patch(f"/api/articles/{blog.pk}/", bad, content_type="application/json").status_code == 400
    assert client.patch(f"/api/articles/{blog.pk}/", {"retention_days": None},
                        content_type="application/json").json()["retention_days"] is None
    assert settings.INGEST_RETENTION_DAYS == 0 and settings.INGEST_RETENTION_MAX_ENTRIES == 0  # the defaults


def test_verbosity_0_1_2_and_nothing_on_stderr(settings):
    settings.INGEST_RETENTION_DAYS = 30
    blog = source()
    for verbosity in (0, 1, 2):
        entries(blog, [40], f"v{verbosity}")
        out, err = StringIO(), StringIO()
        call_command("prune_entries", verbosity=verbosity, stdout=out, stderr=err)
        assert err.getvalue() == "" and not Entry.objects.exists()
        lines = out.getvalue().splitlines()
        assert len(lines) == verbosity
        if verbosity:
            assert lines[-1].startswith("Run ") and "succeeded: deleted 1 entries (source " in lines[-1]
        if verbosity == 2:
            assert lines[0] == (f"source {blog.pk} Blog: deleted 1 entries, kept 0 discussed "
                                "(retention_days 30, retention_max_entries 0)")


def test_the_admin_edits_a_sources_retention():
    blog = source()
    client = Client()
    client.force_login(User.objects.create_superuser("admin", "admin@example.invalid", "pw"))
    url = f"/admin/ingest/technicalarticle/{blog.pk}/change/"
    page = client.get(url)
    assert page.status_code == 200 and b"Retention" in page.content and b'name="retention_max_entries"' in page.content
    form = {"name": blog.name, "tagline": "", "feed_url": blog.feed_url, "site_url": "", "active": "on",
            "honour_server_hints": "on", "fetch_interval": "", "retention_days": "0", "retention_max_entries": "250",
            "auth_scheme": "none", "auth_username": "", "auth_secret": "", "extra_headers": ""}
    saved = client.post(url, form)
    assert saved.status_code == 302, saved.content.decode()[:2000]
    blog.refresh_from_db()
    assert (blog.retention_days, blog.retention_max_entries) == (0, 250)
