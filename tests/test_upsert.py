"""Upsert stage: existing-state read, change detection and bulk writes, on the real database."""

import hashlib
from datetime import datetime, timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ingest.db import MAX_ROWS_PER_STATEMENT, write_batch_size
from ingest.models import Author, Entry, TechnicalArticle
from ingest.types import ParsedAuthor, ParsedEntry, ParsedFeed
from ingest.decide import entries_decide
from ingest.upsert import existing_load, feed_upsert
from tests.helpers import statement_sql

FETCHED = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def entry(n: int, *, body: str = "body", authors=(("Ada", "ada@example.com"),), published=True) -> ParsedEntry:
    headline = f"Entry {n}"
    digest = hashlib.sha256(f"{n}|{headline}|{body}|{authors}|{published}".encode()).hexdigest()
    return ParsedEntry(
        guid=f"guid-{n}", headline=headline, body_text=body, link=f"https://example.com/{n}",
        published_at=datetime(2026, 1, 1 + n % 28, tzinfo=timezone.utc) if published else None,
        updated_at=None, authors=tuple(ParsedAuthor(a, e) for a, e in authors), content_hash=digest,
    )


def feed(*entries: ParsedEntry) -> ParsedFeed:
    return ParsedFeed(title="T", site_url="", tagline="", entries=tuple(entries))


@pytest.fixture
def article(db):
    return TechnicalArticle.objects.create(name="Example", feed_url="https://example.com/feed")


def snapshot():
    rows = Entry.objects.order_by("guid").values_list(
        "guid", "headline", "body_text", "link", "link_key", "published_at", "pub_date", "mod_date", "content_hash"
    )
    links = sorted(Entry.authors.through.objects.values_list("entry__guid", "author__name", "author__email"))
    return list(rows), links


def test_decide_is_pure_and_classifies_new_changed_unchanged():
    a, b, c = entry(1), entry(2), entry(3)
    from ingest.identity import guid_key
    from ingest.types import ExistingEntry

    existing = {guid_key("guid-1"): ExistingEntry(1, a.content_hash, FETCHED), guid_key("guid-2"): ExistingEntry(2, "old", FETCHED)}
    plan = entries_decide([a, b, c], existing)
    assert [e.guid for e in plan.new] == ["guid-3"]
    assert [e.guid for e, _ in plan.changed] == ["guid-2"]
    assert plan.unchanged == 1


def test_new_entries_are_created_with_authors(article):
    counts = feed_upsert(article_id=article.pk, feed=feed(entry(1), entry(2, authors=(("Ada", "ada@example.com"), ("Bob", "")))), fetched_at=FETCHED)
    assert (counts.created, counts.updated, counts.unchanged) == (2, 0, 0)
    second = Entry.objects.get(guid="guid-2")
    assert sorted(second.authors.values_list("name", flat=True)) == ["Ada", "Bob"]
    assert second.pub_date.isoformat() == "2026-01-03"
    assert second.number_of_comments == 0 and second.rating == 5
    assert Author.objects.count() == 2  # Ada is shared, not duplicated


def test_second_upsert_of_same_feed_writes_nothing(article):
    parsed = feed(*(entry(n) for n in range(20)))
    feed_upsert(article_id=article.pk, feed=parsed, fetched_at=FETCHED)
    before = snapshot()
    with CaptureQueriesContext(connection) as queries:
        counts = feed_upsert(article_id=article.pk, feed=parsed, fetched_at=FETCHED)
    assert (counts.created, counts.updated, counts.unchanged) == (0, 0, 20)
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert snapshot() == before


def test_changed_entry_updates_content_and_authors_but_not_counters(article):
    feed_upsert(article_id=article.pk, feed=feed(entry(1), entry(2)), fetched_at=FETCHED)
    Entry.objects.filter(guid="guid-1").update(number_of_comments=7, rating=9)
    edited = entry(1, body="new body", authors=(("Bob", "bob@example.com"),))
    counts = feed_upsert(article_id=article.pk, feed=feed(edited, entry(2)), fetched_at=FETCHED)
    assert (counts.created, counts.updated, counts.unchanged) == (0, 1, 1)
    row = Entry.objects.get(guid="guid-1")
    assert row.body_text == "new body"
    assert list(row.authors.values_list("name", flat=True)) == ["Bob"]
    assert (row.number_of_comments, row.rating) == (7, 9)


def test_missing_date_falls_back_to_fetch_time_and_is_then_kept(article):
    undated = entry(1, published=False)
    feed_upsert(article_id=article.pk, feed=feed(undated), fetched_at=FETCHED)
    assert Entry.objects.get().published_at == FETCHED
    later = datetime(2026, 11, 2, tzinfo=timezone.utc)
    feed_upsert(article_id=article.pk, feed=feed(entry(1, published=False, body="edited")), fetched_at=later)
    row = Entry.objects.get()
    assert row.body_text == "edited" and row.published_at == FETCHED


def test_same_guid_in_two_articles_are_two_entries(article):
    other = TechnicalArticle.objects.create(name="Other", feed_url="https://other.example.com/feed")
    feed_upsert(article_id=article.pk, feed=feed(entry(1)), fetched_at=FETCHED)
    feed_upsert(article_id=other.pk, feed=feed(entry(1)), fetched_at=FETCHED)
    assert Entry.objects.filter(guid="guid-1").count() == 2


def _write_statements(n_entries: int, article_id: int) -> int:
    parsed = feed(*(entry(n, authors=((f"Author {n % 7}", ""),)) for n in range(n_entries)))
    with CaptureQueriesContext(connection) as queries:
        feed_upsert(article_id=article_id, feed=parsed, fetched_at=FETCHED)
    return len(queries)


def test_query_count_grows_with_batches_not_entries(db):
    small = TechnicalArticle.objects.create(name="s", feed_url="https://s.example/feed")
    large = TechnicalArticle.objects.create(name="l", feed_url="https://l.example/feed")
    few = _write_statements(10, small.pk)
    n = MAX_ROWS_PER_STATEMENT + 200
    many = _write_statements(n, large.pk)
    # Batches of the widest statement (the entry INSERT) on this backend; SQLite's 999-parameter
    # limit makes them small, PostgreSQL's are MAX_ROWS_PER_STATEMENT.
    fields = [f.name for f in Entry._meta.concrete_fields]
    batches = -(-n // write_batch_size(fields, [Entry()] * n))
    # Each statement kind (existing read, insert, id read-back, author read, link insert) adds
    # at most one statement per batch: the count follows batches, never entries.
    assert few <= 10
    assert many <= few + 5 * batches, (few, many, batches)
    assert many < n / 10
    assert Entry.objects.filter(technical_article=large).count() == MAX_ROWS_PER_STATEMENT + 200


def test_existing_load_handles_more_guids_than_one_statement_may_carry(article):
    parsed = feed(*(entry(n) for n in range(2500)))
    feed_upsert(article_id=article.pk, feed=parsed, fetched_at=FETCHED)
    found = existing_load(article_id=article.pk, guids=[e.guid for e in parsed.entries])
    assert len(found) == 2500


def test_changed_entries_update_only_the_fields_that_changed(article):
    feed_upsert(article_id=article.pk, feed=feed(entry(1), entry(2)), fetched_at=FETCHED)
    with CaptureQueriesContext(connection) as queries:
        feed_upsert(article_id=article.pk, feed=feed(entry(1, body="edited"), entry(2)), fetched_at=FETCHED)
    updates = [statement_sql(q) for q in queries if statement_sql(q).lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1
    set_clause = updates[0].split(" WHERE ")[0]
    assert "body_text" in set_clause and "content_hash" in set_clause
    for untouched in ("headline", "link_key", "published_at", "comments_feed_url", "number_of_comments", "rating"):
        assert untouched not in set_clause
    assert Entry.objects.get(guid="guid-1").body_text == "edited"


def _podcast_entry(n: int, *, length: int = 1) -> ParsedEntry:
    from dataclasses import replace

    from ingest.types import ParsedEnclosure

    enclosures = (ParsedEnclosure(f"https://cdn.example/{n}.mp3", "audio/mpeg", length),
                  ParsedEnclosure(f"https://cdn.example/{n}.jpg", "image/jpeg", None, "thumbnail"))
    base = entry(n)
    return replace(base, enclosures=enclosures, content_hash=hashlib.sha256(f"{base.content_hash}{length}".encode()).hexdigest())


def test_enclosure_statements_grow_with_batches_not_entries(article):
    from ingest.models import Enclosure

    n = MAX_ROWS_PER_STATEMENT + 200
    table = Enclosure._meta.db_table

    def statements(parsed) -> tuple[int, dict[str, int]]:
        with CaptureQueriesContext(connection) as queries:
            counts = feed_upsert(article_id=article.pk, feed=parsed, fetched_at=FETCHED)
        kinds: dict[str, int] = {}
        for q in queries:
            if table in statement_sql(q):
                kind = statement_sql(q).lstrip().split()[0].upper()
                kinds[kind] = kinds.get(kind, 0) + 1
        return counts, kinds

    fields = [f.name for f in Enclosure._meta.concrete_fields]
    insert_batches = -(-2 * n // write_batch_size(fields, [Enclosure()] * (2 * n)))
    counts, kinds = statements(feed(*(_podcast_entry(i) for i in range(n))))
    assert counts.created == n and Enclosure.objects.count() == 2 * n
    assert set(kinds) == {"INSERT"} and kinds["INSERT"] <= insert_batches  # new entries: inserts only, nothing read or deleted

    # Every episode's audio changes: each entry's set is replaced, in batches.
    counts, kinds = statements(feed(*(_podcast_entry(i, length=2) for i in range(n))))
    assert counts.updated == n
    assert set(Enclosure.objects.values_list("length", flat=True)) == {2, None}
    assert Enclosure.objects.count() == 2 * n
    from ingest.db import in_batch_size

    reads = -(-n // in_batch_size())  # entry ids per read
    assert kinds["SELECT"] <= reads and kinds["INSERT"] <= insert_batches
    assert kinds["DELETE"] == -(-2 * n // in_batch_size())  # the stale rows, by primary key

    # The same feed again: no statement touches the enclosures at all.
    counts, kinds = statements(feed(*(_podcast_entry(i, length=2) for i in range(n))))
    assert counts.unchanged == n and kinds == {}
