"""Deleting a big source: ``manage.py delete_source`` and the admin, both through ingest.services.delete.

A source of 2,500 entries (more than mssql-django's 2,048-id IN-list limit, past which Django's own
delete spills into #Temp_params) with comments, pingbacks, links, comment feeds and author links;
beside it another source whose rows point at it and are pointed at by it. Every statement is
captured and its IN lists counted: none carries more than 1,000 ids, whatever the backend. The
same delete as SQL Server receives it is checked in tests/test_tsql_contract.py.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ingest.models import Author, Comment, CommentFeed, Enclosure, Entry, EntryLink, Pingback, TechnicalArticle
from ingest.services.delete import MAX_CHUNK, entry_relations, source_delete
from tests.helpers import ROOT, database_url

ENTRIES = 2500
COMMENTS_PER_ENTRY = 2
_IN_LIST = re.compile(r"\bIN \(((?:[^()']|'(?:[^']|'')*')*)\)", re.I)


def _entries(source: TechnicalArticle, n: int, prefix: str) -> list[int]:
    now = timezone.now()
    Entry.objects.bulk_create(
        [Entry(technical_article=source, headline=f"{prefix} {i}", body_text="b", pub_date=now.date(),
               published_at=now - timedelta(minutes=i), guid=f"{prefix}-{i}", content_hash="h", link_key=f"{prefix}{i}")
         for i in range(n)], batch_size=500)
    return list(Entry.objects.filter(technical_article=source).order_by("pk").values_list("pk", flat=True))


def build(name: str = "Big", entries: int = ENTRIES) -> dict:
    """A big source with everything that can point at its entries, and a small one beside it."""
    big = TechnicalArticle.objects.create(name=name, feed_url=f"https://{name.lower()}.example/feed")
    other = TechnicalArticle.objects.create(name=f"{name} neighbour", feed_url=f"https://{name.lower()}-other.example/feed")
    ids = _entries(big, entries, name)
    others = _entries(other, 3, f"{name}-other")
    authors = Author.objects.bulk_create([Author(name=f"{name} author {i}") for i in range(37)])
    authors = list(Author.objects.filter(name__startswith=f"{name} author ").order_by("pk"))
    now = timezone.now()
    Comment.objects.bulk_create([Comment(entry_id=pk, guid=f"c{j}", author_name="r", published_at=now)
                                 for pk in ids + others for j in range(COMMENTS_PER_ENTRY)], batch_size=500)
    # Each post links to the one before it; the neighbour links into the big source and back.
    url = f"https://{name.lower()}-"
    pingbacks = [Pingback(target_id=ids[i - 1], source_entry_id=ids[i], source_url=f"{url}big/{i}") for i in range(1, len(ids))]
    pingbacks += [Pingback(target_id=ids[0], source_entry_id=others[0], source_url=f"{url}other/0"),
                  Pingback(target_id=others[1], source_entry_id=ids[-1], source_url=f"{url}big/last"),
                  Pingback(target_id=others[2], source_entry_id=others[0], source_url=f"{url}other/0-2")]
    Pingback.objects.bulk_create(pingbacks, batch_size=500)
    EntryLink.objects.bulk_create([EntryLink(entry_id=pk, link_key=f"k{pk}") for pk in ids + others], batch_size=500)
    CommentFeed.objects.bulk_create([CommentFeed(entry_id=pk) for pk in ids[::10] + others], batch_size=500)
    Enclosure.objects.bulk_create([Enclosure(entry_id=pk, url=f"https://cdn.example/{pk}.mp3", type="audio/mpeg")
                                   for pk in ids[::2] + others], batch_size=500)
    through = Entry.authors.through
    through.objects.bulk_create([through(entry_id=pk, author_id=authors[i % 37].pk) for i, pk in enumerate(ids + others)]
                                + [through(entry_id=pk, author_id=authors[(i + 1) % 37].pk) for i, pk in enumerate(ids) if i % 3 == 0],
                                batch_size=500)
    return {"big": big, "other": other, "ids": ids, "others": others, "url": url}


def neighbour_intact(world: dict) -> None:
    """The other source lost only what pointed into the deleted one."""
    others = world["others"]
    assert TechnicalArticle.objects.filter(pk=world["other"].pk).exists()
    assert list(Entry.objects.filter(technical_article=world["other"]).order_by("pk").values_list("pk", flat=True)) == others
    assert Comment.objects.filter(entry_id__in=others).count() == 3 * COMMENTS_PER_ENTRY
    assert EntryLink.objects.filter(entry_id__in=others).count() == 3
    assert CommentFeed.objects.filter(entry_id__in=others).count() == 3
    assert Entry.authors.through.objects.filter(entry_id__in=others).count() == 3
    assert Enclosure.objects.filter(entry_id__in=others).count() == 3
    # other[0] -> big[0] went with its target; big[-1] -> other[1] stays, unlinked; other -> other stays.
    url = world["url"]
    assert set(Pingback.objects.filter(source_url__startswith=url).values_list("source_url", "source_entry_id")) == {
        (f"{url}big/last", None), (f"{url}other/0-2", others[0])}


def all_gone(world: dict) -> None:
    ids = world["ids"]
    assert not TechnicalArticle.objects.filter(pk=world["big"].pk).exists()
    assert not Entry.objects.filter(pk__in=ids[:900]).exists() and not Entry.objects.filter(technical_article_id=world["big"].pk).exists()
    assert not Comment.objects.exclude(entry_id__in=world["others"]).exists()
    assert not EntryLink.objects.exclude(entry_id__in=world["others"]).exists()
    assert not CommentFeed.objects.exclude(entry_id__in=world["others"]).exists()
    assert not Entry.authors.through.objects.exclude(entry_id__in=world["others"]).exists()
    assert not Enclosure.objects.exclude(entry_id__in=world["others"]).exists()
    assert Author.objects.count() == 37  # shared rows stay


def largest_in_list(queries) -> int:
    """The most values any captured statement's IN (...) carries (subqueries are not lists)."""
    largest = 0
    for query in queries:
        for match in _IN_LIST.finditer(query["sql"]):
            body = match.group(1).strip()
            if body and not body.upper().startswith("SELECT"):
                largest = max(largest, body.count(",") + 1)
    return largest


def test_every_relation_to_an_entry_is_handled():
    labels = {(r.label, r.field, r.on_delete) for r in entry_relations()}
    assert entry_relations()[-1].on_delete == "set_null"
    assert labels == {("ingest.Comment", "entry", "cascade"), ("ingest.Pingback", "target", "cascade"),
                      ("ingest.EntryLink", "entry", "cascade"), ("ingest.CommentFeed", "entry", "cascade"),
                      ("ingest.Entry_authors", "entry", "cascade"), ("ingest.Pingback", "source_entry", "set_null"),
                      ("ingest.Enclosure", "entry", "cascade"),
                      ("ingest.Entry", "duplicate_of", "set_null")}


@pytest.mark.django_db
def test_delete_source_removes_a_big_source_in_bounded_statements():
    world = build()
    out = io.StringIO()
    with CaptureQueriesContext(connection) as queries:
        call_command("delete_source", str(world["big"].pk), "--yes", "--json", stdout=out)
    report = json.loads(out.getvalue())
    all_gone(world)
    neighbour_intact(world)
    assert report["status"] == "deleted" and report["chunks"] == 3
    assert report["deleted"] == {
        "ingest.Entry_authors": ENTRIES + len(range(0, ENTRIES, 3)), "ingest.Comment": ENTRIES * COMMENTS_PER_ENTRY,
        "ingest.Pingback": ENTRIES - 1 + 1, "ingest.EntryLink": ENTRIES, "ingest.CommentFeed": ENTRIES // 10,
        "ingest.Enclosure": ENTRIES // 2, "ingest.Entry": ENTRIES, "ingest.TechnicalArticle": 1}
    assert report["unlinked"] == {"ingest.Pingback": 1}
    assert 900 <= largest_in_list(queries.captured_queries) <= MAX_CHUNK
    # Statements grow with chunks (3, each about 17 with its savepoint) and with 1,000-row batches of
    # dependents, not with rows: 2,500 entries and 13,000 rows under them take under 100.
    assert len(queries.captured_queries) < 100, len(queries.captured_queries)


@pytest.mark.django_db
def test_small_chunks_give_small_statements_and_the_same_result():
    world = build(entries=250)
    with CaptureQueriesContext(connection) as queries:
        result = source_delete(source_id=world["big"].pk, chunk_size=100)
    assert result.chunks == 3 and result.deleted["ingest.Entry"] == 250
    all_gone(world)
    neighbour_intact(world)
    assert largest_in_list(queries.captured_queries) <= 2 * 100  # a chunk's comments: two per entry


@pytest.mark.django_db
@pytest.mark.parametrize("args, message", [
    (("0",), "delete_source takes a source id from 1 to"),
    (("99999999999999999999",), "delete_source takes a source id from 1 to"),
    (("   ",), "not an empty string"),
    (("12345", "--yes"), "No source matches '12345'"),
    (("https://nowhere.example/feed", "--yes"), "No source matches 'https://nowhere.example/feed'"),
    (("1", "--chunk-size", "0"), "--chunk-size must be between 1 and 1000, not 0."),
    (("1", "--chunk-size", "1001"), "--chunk-size must be between 1 and 1000, not 1001."),
])
def test_bad_arguments_are_one_sentence_and_exit_2(args, message):
    with pytest.raises(CommandError) as caught:
        call_command("delete_source", *args, stdout=io.StringIO())
    assert caught.value.returncode == 2 and message in str(caught.value)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.django_db
def test_without_yes_it_asks_on_a_terminal_and_refuses_elsewhere(monkeypatch):
    world = build(entries=20)
    pk = world["big"].pk
    with pytest.raises(CommandError) as caught:  # pytest's stdin is no terminal
        call_command("delete_source", str(pk), stdout=io.StringIO())
    assert caught.value.returncode == 2
    assert str(caught.value) == f"Refusing to delete source {pk} without --yes: there is no terminal to ask on."

    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    out, err = io.StringIO(), io.StringIO()
    call_command("delete_source", str(pk), stdout=out, stderr=err)
    assert "with 20 entries, 40 comments, 20 pingbacks, 20 entry links, 2 comment feeds" in err.getvalue() and "[y/N]" in err.getvalue()
    assert out.getvalue().strip() == f"Nothing deleted: source {pk} is still there."
    assert Entry.objects.filter(technical_article_id=pk).count() == 20

    monkeypatch.setattr(sys, "stdin", _Terminal("yes\n"))
    out = io.StringIO()
    call_command("delete_source", world["big"].feed_url, stdout=out, stderr=io.StringIO())
    assert out.getvalue().startswith(f"Deleted source {pk} https://big.example/feed: ")
    assert "20 entries" in out.getvalue() and not TechnicalArticle.objects.filter(pk=pk).exists()


def _manage(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(DJANGO_SETTINGS_MODULE="tests.settings", DATABASE_URL=database_url())
    return subprocess.run([sys.executable, "manage.py", "delete_source", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.mark.django_db(transaction=True)
def test_through_manage_py_refusals_are_one_line_and_exit_2():
    world = build(entries=30)
    pk = world["big"].pk
    unknown = _manage("987654321")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2, "CommandError: No source matches '987654321'; list them with the admin or `manage.py pipeline_status`.")
    refused = _manage(str(pk))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "without --yes" in refused.stderr and Entry.objects.filter(technical_article_id=pk).count() == 30
    done = _manage(str(pk), "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["deleted"]["ingest.Entry"] == 30
    all_gone(world)
    neighbour_intact(world)


# --- The admin ------------------------------------------------------------------------------------


@pytest.fixture
def staff(db, client):
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    return client


def test_admin_delete_confirms_with_counts_and_deletes_in_bounded_statements(staff):
    world = build()
    url = f"/admin/ingest/technicalarticle/{world['big'].pk}/delete/"
    with CaptureQueriesContext(connection) as page_queries:
        page = staff.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "2,500 entries" in text and "5,000 comments" in text and "2,500 pingbacks" in text
    assert largest_in_list(page_queries.captured_queries) <= 1  # counted by joins, no id lists
    with CaptureQueriesContext(connection) as queries:
        response = staff.post(url, {"post": "yes"})
    assert response.status_code == 302, response.content[:2000]
    all_gone(world)
    neighbour_intact(world)
    assert 900 <= largest_in_list(queries.captured_queries) <= MAX_CHUNK


def test_admin_bulk_delete_action_uses_the_chunked_delete(staff):
    first, second = build("First", entries=1200), build("Second", entries=30)
    selected = [first["big"].pk, second["big"].pk]
    page = staff.post("/admin/ingest/technicalarticle/", {"action": "delete_selected", "_selected_action": selected})
    assert page.status_code == 200 and "1,200 entries" in page.content.decode()
    with CaptureQueriesContext(connection) as queries:
        response = staff.post("/admin/ingest/technicalarticle/",
                              {"action": "delete_selected", "_selected_action": selected, "post": "yes"})
    assert response.status_code == 302
    for world in (first, second):
        assert not TechnicalArticle.objects.filter(pk=world["big"].pk).exists()
        assert not Entry.objects.filter(technical_article_id=world["big"].pk).exists()
        neighbour_intact(world)
    assert largest_in_list(queries.captured_queries) <= MAX_CHUNK


def test_admin_delete_needs_the_csrf_token_and_the_delete_permissions(db):
    world = build(entries=5)
    url = f"/admin/ingest/technicalarticle/{world['big'].pk}/delete/"
    user = User.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_technicalarticle", "delete_technicalarticle"]))
    client = Client(enforce_csrf_checks=True)
    client.login(username="editor", password="pw")
    assert client.post(url, {"post": "yes"}).status_code == 403  # no CSRF token
    page = client.get(url)
    assert page.status_code == 200 and "Cannot delete" in page.content.decode()  # may not delete entries
    token = client.cookies["csrftoken"].value
    assert client.post(url, {"post": "yes", "csrfmiddlewaretoken": token}).status_code == 403
    assert Entry.objects.filter(technical_article_id=world["big"].pk).count() == 5
