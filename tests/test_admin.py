"""The admin: registrations load, IngestRun is read-only, and comment edits keep counters right."""

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from ingest.models import Comment, Entry, IngestRun, TechnicalArticle


@pytest.fixture
def staff(db, client):
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    return client


@pytest.fixture
def entry(db):
    article = TechnicalArticle.objects.create(name="A", feed_url="https://a.example/feed")
    return Entry.objects.create(technical_article=article, headline="H", body_text="", pub_date=timezone.now().date(),
                                published_at=timezone.now(), guid="g", content_hash="x")


@pytest.mark.parametrize("model", ["technicalarticle", "author", "entry", "comment", "pingback", "ingestrun"])
def test_changelists_render(staff, entry, model):
    assert staff.get(f"/admin/ingest/{model}/").status_code == 200


def test_ingest_runs_are_read_only(staff):
    run = IngestRun.objects.create(command="ingest_feeds")
    assert staff.get("/admin/ingest/ingestrun/add/").status_code == 403
    page = staff.get(f"/admin/ingest/ingestrun/{run.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


def test_comment_added_and_deleted_in_the_admin_keeps_the_counter_right(staff, entry):
    response = staff.post("/admin/ingest/comment/add/", {
        "entry": entry.pk, "guid": "admin-1", "author_name": "Ann", "author_email": "", "body": "Nice",
        "published_at_0": "2026-11-20", "published_at_1": "10:00:00", "created_at_0": "2026-11-20", "created_at_1": "10:00:00",
    })
    assert response.status_code == 302, response.content[:2000]
    assert Entry.objects.get(pk=entry.pk).number_of_comments == 1
    comment = Comment.objects.get()
    staff.post(f"/admin/ingest/comment/{comment.pk}/delete/", {"post": "yes"})
    assert Entry.objects.get(pk=entry.pk).number_of_comments == 0
