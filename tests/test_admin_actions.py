"""The actions of the source changelist, through the Django test client as a logged-in superuser:
"Fetch at the next run (clear backoff)" and the delete of selected sources (chunked, as
``delete_source``). What is checked is what the user sees after the action (its message, the
confirmation page) and which rows changed.
"""

from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone

from ingest.models import Entry, IngestRun, TechnicalArticle

FEEDS = Path(__file__).parent / "data" / "feeds"
CHANGELIST = "/admin/ingest/technicalarticle/"


@pytest.fixture
def backed_off(db, feed_server):
    """Three sources: two backed off after failures (one also switched off), one scheduled later."""
    feed_server.add("/blog.rss", (FEEDS / "blog.rss").read_bytes())
    feed_server.add("/news.atom", (FEEDS / "news.atom").read_bytes(), content_type="application/atom+xml")
    later = timezone.now() + timedelta(days=1)
    blog = TechnicalArticle.objects.create(name="Blog", feed_url=feed_server.url("/blog.rss"), next_fetch_at=later,
                                           consecutive_failures=3, last_error="HTTP 503 Service Unavailable.")
    news = TechnicalArticle.objects.create(name="News", feed_url=feed_server.url("/news.atom"), next_fetch_at=later,
                                           consecutive_failures=7, active=False)
    other = TechnicalArticle.objects.create(name="Other", feed_url=feed_server.url("/other.rss"), next_fetch_at=later)
    return blog, news, other


def messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_fetch_now_clears_the_backoff_of_the_selected_sources_only(admin_client, backed_off):
    blog, news, other = backed_off
    response = admin_client.post(CHANGELIST, {"action": "fetch_now", "_selected_action": [blog.pk, news.pk]}, follow=True)
    assert response.status_code == 200
    assert messages(response) == ["2 source(s) will be fetched by the next run."]
    assert b"2 source(s) will be fetched by the next run." in response.content
    rows = {s.name: (s.next_fetch_at, s.active) for s in TechnicalArticle.objects.all()}
    assert rows["Blog"] == (None, True) and rows["News"] == (None, True)  # switched back on, too
    assert rows["Other"] == (other.next_fetch_at, True)


def test_the_next_run_fetches_exactly_the_sources_the_action_selected(admin_client, backed_off, feed_server):
    blog, news, _ = backed_off
    admin_client.post(CHANGELIST, {"action": "fetch_now", "_selected_action": [blog.pk, news.pk]})
    call_command("ingest_feeds", "--verbosity", "0", stdout=StringIO(), stderr=StringIO())
    assert {r.path for r in feed_server.requests} == {"/blog.rss", "/news.atom"}
    assert Entry.objects.count() == 8 and IngestRun.objects.get().status == "succeeded"
    blog.refresh_from_db()
    assert (blog.consecutive_failures, blog.last_error) == (0, "")


def test_the_action_list_offers_fetch_now(admin_client, backed_off):
    page = admin_client.get(CHANGELIST)
    assert b'<option value="fetch_now">Fetch at the next run (clear backoff)</option>' in page.content


def test_deleting_selected_sources_confirms_with_counts_then_deletes_everything_under_them(admin_client, backed_off):
    blog, news, other = backed_off
    TechnicalArticle.objects.filter(pk=news.pk).update(active=True)
    call_command("ingest_feeds", "--all", "--verbosity", "0", stdout=StringIO(), stderr=StringIO())
    assert Entry.objects.filter(technical_article=blog).count() == 5
    confirm = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [blog.pk]})
    assert confirm.status_code == 200
    assert b"5 entries" in confirm.content and b"Are you sure" in confirm.content
    assert TechnicalArticle.objects.filter(pk=blog.pk).exists()  # nothing deleted before confirming
    done = admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [blog.pk], "post": "yes"},
                             follow=True)
    assert messages(done) == ["Successfully deleted 1 technical article."]
    assert set(TechnicalArticle.objects.values_list("name", flat=True)) == {"News", "Other"}
    assert not Entry.objects.filter(technical_article_id=blog.pk).exists()
    assert Entry.objects.filter(technical_article=news).count() == 3  # other sources' entries stay
