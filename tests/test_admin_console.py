"""The admin as an operator's console, through the Django test client as a logged-in superuser:
periodic tasks only under the database scheduler, a run's details laid out, the counters
read-only, authors by autocomplete, feed URLs checked by the fetch guard as ``add_source`` checks
them, "View site" on a real page, and the source actions re-activate and reset backoff.
"""

from __future__ import annotations

import html
import importlib
import json
import re
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import clear_url_caches
from django.utils import timezone

from ingest.admin import periodic_tasks_admin
from ingest.errors import BlockedURL
from ingest.models import Author, Entry, IngestRun, TechnicalArticle
from ingest.services.sources import source_url_check
from tests.helpers import ingest, serve_wordpress

FEEDS = Path(__file__).parent / "data" / "feeds"
SOURCES = "/admin/ingest/technicalarticle/"
PRIVATE_REFUSAL = ("Refused to fetch from 10.0.0.1: it is a private address. "
                   "To fetch from it on purpose, add 10.0.0.1/32 to INGEST_ALLOWED_NETWORKS.")


def messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def text(response) -> str:
    """The page as a reader sees its words: tags dropped, entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


# --- django-celery-beat's tables ------------------------------------------------------------------


@pytest.fixture
def scheduler():
    """Re-register the admin (and reload the URLconf, which took the admin's URLs once) as a
    process started with PIPELINE_BEAT_SCHEDULER set would; the default again afterwards."""

    def use(value: str) -> bool:
        with override_settings(PIPELINE_BEAT_SCHEDULER=value):
            shown = periodic_tasks_admin()
        importlib.reload(importlib.import_module("pipeline.urls"))
        clear_url_caches()
        return shown

    yield use
    use("settings")


def test_periodic_tasks_are_hidden_under_the_default_scheduler(admin_client, scheduler):
    assert scheduler("settings") is False
    index = admin_client.get("/admin/")
    assert index.status_code == 200 and b"Periodic tasks" not in index.content
    assert b"/admin/django_celery_beat/" not in index.content
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 404
    assert admin_client.get("/admin/django_celery_beat/intervalschedule/").status_code == 404


def test_periodic_tasks_are_shown_under_the_database_scheduler(admin_client, scheduler):
    assert scheduler("database") is True
    index = admin_client.get("/admin/")
    assert b"Periodic tasks" in index.content and b"Crontabs" in index.content
    for model in ("periodictask", "intervalschedule", "crontabschedule", "solarschedule", "clockedschedule"):
        assert admin_client.get(f"/admin/django_celery_beat/{model}/").status_code == 200, model


def test_the_suite_runs_under_the_default_scheduler_so_the_tables_are_hidden(admin_client):
    # What every other admin test sees: the registration made at import from the test settings.
    assert admin_client.get("/admin/django_celery_beat/periodictask/").status_code == 404


# --- IngestRun: read-only, its stats laid out -----------------------------------------------------


def test_an_ingest_run_shows_totals_comment_feeds_and_a_table_of_sources(admin_client, feed_server):
    wp = serve_wordpress(feed_server)
    gone = TechnicalArticle.objects.create(name="Gone", feed_url=feed_server.url("/gone.rss"))
    report = ingest("--all")
    run = IngestRun.objects.get(pk=report["run_id"])
    totals, comments = report["totals"], report["comments"]

    page = admin_client.get(f"/admin/ingest/ingestrun/{run.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    words = text(page)
    assert (f"2 source(s): {totals['created']} new, 0 updated, 0 unchanged, 0 not modified, 1 failed; "
            f"{totals['pingbacks']} pingbacks recorded") in words
    assert "0 transaction retries (transient database errors); 0 due source(s) skipped, leased by another run" in words
    assert (f"Comment feeds: {comments['feeds']} polled, {comments['created']} new comments, 0 updated, "
            "0 not modified, 0 failed") in words and comments["feeds"] > 0
    # One row per source, the failed one first, each linked to its source.
    row = r"<tr><td>(\d+)</td><td><a href=\"([^\"]+)\">([^<]+)</a></td><td>(\w+)</td>"
    rows = re.findall(row, page.content.decode())
    assert rows == [(str(gone.pk), f"{SOURCES}{gone.pk}/change/", "Gone", "failed"),
                    (str(wp.pk), f"{SOURCES}{wp.pk}/change/", "wp", "created")]
    assert "404" in words.split("Gone failed", 1)[1]  # its reason, in the row
    assert b'"skipped_leased"' not in page.content and b"&quot;sources&quot;" not in page.content  # no raw JSON


def test_a_recount_run_shows_its_summary(admin_client, feed_server):
    serve_wordpress(feed_server)
    ingest("--all")
    out = StringIO()
    call_command("recompute_counts", "--json", stdout=out, stderr=StringIO())
    report = json.loads(out.getvalue())

    words = text(admin_client.get(f"/admin/ingest/ingestrun/{report['run_id']}/change/"))
    assert f"{report['scanned']} entries scanned, 0 changed, {report['chunks']} chunks, 0 retries in " in words
    assert report["scanned"] > 0


def test_a_run_of_another_command_shows_each_of_its_keys(admin_client):
    run = IngestRun.objects.create(command="prune_runs", stats={"deleted": 288, "older_than_s": 2592000})
    page = admin_client.get(f"/admin/ingest/ingestrun/{run.pk}/change/")
    assert "deleted 288 older_than_s 2592000" in text(page)


def test_runs_cannot_be_added_changed_or_deleted(admin_client):
    run = IngestRun.objects.create(command="ingest_feeds", stats={"retries": 1, "skipped_leased": 0, "sources": []})
    assert admin_client.get("/admin/ingest/ingestrun/add/").status_code == 403
    assert admin_client.post(f"/admin/ingest/ingestrun/{run.pk}/change/", {"command": "x"}).status_code == 403
    assert admin_client.post(f"/admin/ingest/ingestrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert IngestRun.objects.get(pk=run.pk).command == "ingest_feeds"
    assert admin_client.get("/admin/ingest/ingestrun/").status_code == 200


# --- Entries: counters read-only, authors by autocomplete -----------------------------------------


@pytest.fixture
def entry(db):
    source = TechnicalArticle.objects.create(name="A", feed_url="https://a.example/feed")
    entry = Entry.objects.create(technical_article=source, headline="H", body_text="b", pub_date=timezone.now().date(),
                                 published_at=timezone.now(), guid="g", content_hash="x", number_of_comments=0)
    Author.objects.bulk_create(Author(name=f"Writer {i:02}", email=f"w{i}@example.com") for i in range(40))
    entry.authors.add(Author.objects.get(name="Writer 07"))
    return entry


def test_the_counters_are_shown_but_cannot_be_edited(admin_client, entry):
    url = f"/admin/ingest/entry/{entry.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200
    assert b'name="number_of_comments"' not in page.content and b'name="number_of_pingbacks"' not in page.content
    assert "Number of comments: 0" in text(page)
    now = timezone.now()
    saved = admin_client.post(url, {
        "technical_article": entry.technical_article_id, "headline": "Edited", "body_text": "b",
        "pub_date": now.date().isoformat(), "mod_date": now.date().isoformat(),
        "authors": list(entry.authors.values_list("pk", flat=True)),
        "number_of_comments": 99, "number_of_pingbacks": 42, "rating": 5, "link": "", "comments_feed_url": "",
        "published_at_0": now.date().isoformat(), "published_at_1": "10:00:00",
        "comments-TOTAL_FORMS": 0, "comments-INITIAL_FORMS": 0, "comments-MIN_NUM_FORMS": 0,
        "comments-MAX_NUM_FORMS": 1000,
        "enclosures-TOTAL_FORMS": 0, "enclosures-INITIAL_FORMS": 0, "enclosures-MIN_NUM_FORMS": 0,
        "enclosures-MAX_NUM_FORMS": 1000,
    })
    assert saved.status_code == 302, saved.content[:3000]
    entry.refresh_from_db()
    assert (entry.headline, entry.number_of_comments, entry.number_of_pingbacks) == ("Edited", 0, 0)


def test_authors_are_chosen_by_autocomplete_not_from_a_list_of_all(admin_client, entry):
    page = admin_client.get(f"/admin/ingest/entry/{entry.pk}/change/").content.decode()
    widget = re.search(r'<select name="authors"[^>]*>(.*?)</select>', page, re.S)
    assert widget and "admin-autocomplete" in widget.group(0)
    assert re.findall(r"<option[^>]*>([^<]*)</option>", widget.group(1)) == ["Writer 07"]  # the chosen one only
    found = admin_client.get("/admin/autocomplete/", {"app_label": "ingest", "model_name": "entry",
                                                      "field_name": "authors", "term": "writer 03"}).json()
    assert [r["text"] for r in found["results"]] == ["Writer 03"]  # searched in the database, one of 40


# --- Feed URLs: the guard of add_source -----------------------------------------------------------


def source_form(feed_url: str, name: str = "Feed") -> dict:
    return {"name": name, "tagline": "", "feed_url": feed_url, "site_url": "", "active": "on",
            "fetch_interval": "", "next_fetch_at_0": "", "next_fetch_at_1": "",
            "auth_scheme": "none", "auth_username": "", "auth_secret": "", "extra_headers": ""}


def test_adding_a_feed_in_a_private_network_is_refused_with_the_sentence_of_add_source(admin_client):
    page = admin_client.post(f"{SOURCES}add/", source_form("http://10.0.0.1/feed.xml"))
    assert page.status_code == 200
    assert page.context["adminform"].form.errors["feed_url"] == [PRIVATE_REFUSAL]
    assert PRIVATE_REFUSAL in text(page)
    assert not TechnicalArticle.objects.exists()
    with pytest.raises(CommandError) as refused:
        call_command("add_source", "http://10.0.0.1/feed.xml", stdout=StringIO(), stderr=StringIO())
    assert str(refused.value) == PRIVATE_REFUSAL  # one guard, one sentence


def test_the_network_the_sentence_names_lets_the_feed_in(admin_client):
    with override_settings(INGEST_ALLOWED_NETWORKS=["10.0.0.1/32"]):
        saved = admin_client.post(f"{SOURCES}add/", source_form("http://10.0.0.1/feed.xml"))
    assert saved.status_code == 302
    assert TechnicalArticle.objects.get().feed_url == "http://10.0.0.1/feed.xml"


def test_a_public_feed_whose_host_does_not_resolve_now_is_accepted_as_add_source_accepts_it(admin_client, monkeypatch):
    import socket

    def unresolvable(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    saved = admin_client.post(f"{SOURCES}add/", source_form("https://feeds.later.example/rss"))
    assert saved.status_code == 302
    assert TechnicalArticle.objects.filter(feed_url="https://feeds.later.example/rss").exists()


def test_changing_a_feed_url_to_a_refused_one_is_refused_and_other_edits_pass(admin_client, feed_server):
    source = TechnicalArticle.objects.create(name="Local", feed_url=feed_server.url("/feed.rss"))
    change = f"{SOURCES}{source.pk}/change/"
    with override_settings(INGEST_ALLOWED_NETWORKS=[]):
        # The URL as it was is not judged again (every fetch is); a new one is.
        renamed = admin_client.post(change, source_form(source.feed_url, name="Renamed"))
        moved = admin_client.post(change, source_form(f"http://localhost:{feed_server.port}/other.rss"))
    assert renamed.status_code == 302
    assert moved.status_code == 200
    assert moved.context["adminform"].form.errors["feed_url"] == [
        "Refused to fetch from localhost: it resolves to 127.0.0.1, a loopback address. "
        "To fetch from it on purpose, add 127.0.0.1/32 to INGEST_ALLOWED_NETWORKS."]
    source.refresh_from_db()
    assert (source.name, source.feed_url) == ("Renamed", feed_server.url("/feed.rss"))


@pytest.mark.parametrize("url, network", [("http://[::1]/feed", "::1/128"),
                                          ("http://[::ffff:10.0.0.1]/feed", "10.0.0.1/32"),
                                          ("http://169.254.169.254/latest/meta-data/", "169.254.169.254/32")])
def test_the_refusal_names_the_network_that_allows_exactly_that_address(db, url, network):
    with override_settings(INGEST_ALLOWED_NETWORKS=[]), pytest.raises(BlockedURL) as refused:
        source_url_check(url)
    assert str(refused.value).endswith(f" To fetch from it on purpose, add {network} to INGEST_ALLOWED_NETWORKS.")
    with override_settings(INGEST_ALLOWED_NETWORKS=[network]):
        source_url_check(url)  # the advice works


# --- "View site" ----------------------------------------------------------------------------------


def test_view_site_leads_to_the_health_endpoint(admin_client):
    index = admin_client.get("/admin/")
    link = re.search(r'<a href="([^"]+)">View site</a>', index.content.decode())
    assert link and link.group(1) == "/healthz"
    health = admin_client.get(link.group(1))
    assert health.status_code == 200 and health.json()["database"] == "ok"


# --- Source actions: re-activate, reset backoff ---------------------------------------------------


@pytest.fixture
def failing(db, feed_server):
    """Sources after failures: one backed off, one backed off and switched off, one switched off on schedule."""
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    later = timezone.now() + timedelta(hours=6)
    blog = TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/blog.rss"), next_fetch_at=later,
                                           consecutive_failures=5, last_error="HTTP 503 Service Unavailable.")
    gone = TechnicalArticle.objects.create(name="Gone", feed_url=feed_server.url("/gone.rss"), next_fetch_at=later,
                                           consecutive_failures=7, active=False, last_error="HTTP 404 Not Found.")
    idle = TechnicalArticle.objects.create(name="Idle", feed_url=feed_server.url("/idle.rss"), next_fetch_at=later,
                                           active=False)
    return blog, gone, idle


def test_the_action_list_offers_reactivate_and_reset_backoff(admin_client, failing):
    page = admin_client.get(SOURCES).content
    assert b'<option value="reactivate">Re-activate (keep the schedule)</option>' in page
    assert b'<option value="reset_backoff">Reset backoff (forget failures, fetch at the next run)</option>' in page


def test_reactivate_switches_sources_back_on_and_keeps_their_schedule(admin_client, failing):
    blog, gone, idle = failing
    done = admin_client.post(SOURCES, {"action": "reactivate", "_selected_action": [blog.pk, gone.pk, idle.pk]},
                             follow=True)
    assert messages(done) == ["2 source(s) re-activated (1 already active); each is fetched when it is due."]
    rows = {s.name: (s.active, s.next_fetch_at, s.consecutive_failures) for s in TechnicalArticle.objects.all()}
    assert rows == {"Blog": (True, blog.next_fetch_at, 5), "Gone": (True, gone.next_fetch_at, 7),
                    "Idle": (True, idle.next_fetch_at, 0)}


def test_reset_backoff_forgets_failures_keeps_the_last_error_and_says_which_are_off(admin_client, failing):
    blog, gone, idle = failing
    done = admin_client.post(SOURCES, {"action": "reset_backoff", "_selected_action": [blog.pk, gone.pk]}, follow=True)
    assert messages(done) == ["2 source(s): failures forgotten, due at the next run. "
                              "1 of them inactive: re-activate them to fetch them."]
    rows = {s.name: (s.consecutive_failures, s.next_fetch_at, s.active, s.last_error)
            for s in TechnicalArticle.objects.all()}
    assert rows == {"Blog": (0, None, True, "HTTP 503 Service Unavailable."),
                    "Gone": (0, None, False, "HTTP 404 Not Found."), "Idle": (0, idle.next_fetch_at, False, "")}


def test_after_a_reset_the_next_run_fetches_and_a_new_failure_backs_off_from_the_first_step(admin_client, failing):
    blog, gone, _ = failing
    TechnicalArticle.objects.filter(pk=gone.pk).update(active=True)
    admin_client.post(SOURCES, {"action": "reset_backoff", "_selected_action": [blog.pk, gone.pk]})
    report = ingest()
    assert sorted((s["name"], s["outcome"]) for s in report["sources"]) == [("Blog", "created"), ("Gone", "failed")]
    rows = {s.name: (s.consecutive_failures, s.last_error) for s in TechnicalArticle.objects.all()}
    assert rows["Blog"] == (0, "")
    assert rows["Gone"][0] == 1 and "404" in rows["Gone"][1]  # one failure in a row, not eight


def test_idle_ticks_are_listed_read_only(admin_client):
    from ingest.services.fanout import ingest_dispatch

    for _ in range(3):
        assert ingest_dispatch()[0] is None  # nothing due: counted, not recorded
    page = admin_client.get("/admin/ingest/idletick/")
    assert page.status_code == 200
    cells = [html.unescape(c) for c in re.findall(r"<td class=\"field-idle_ticks\">(.*?)</td>", page.content.decode())]
    assert cells == ["3"]
    assert admin_client.get("/admin/ingest/idletick/add/").status_code == 403
