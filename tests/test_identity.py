"""Identity means the same on every backend: the corpus of tests/data/identity/ through the commands.

The database's collation must not decide what is "the same" (SQL Server and MariaDB ignore case
and trailing spaces, MariaDB also accents; SQLite and PostgreSQL compare bytes): feeds whose guids,
authors, comment guids, pingback sources and feed URLs differ only where collations disagree are
registered with ``add_source`` and ingested with ``ingest_feeds``, twice, and what is stored must
be exactly what ``ingest.identity``'s semantics say, the same fingerprint on every backend:

* a guid (entry, comment) is compared byte for byte after NFC and trimming;
* a feed or pingback source URL after ``normalize_url`` (scheme and host case, default port,
  fragment, trailing slash aside; path byte for byte);
* an author by exact name (NFC, trimmed) and case-insensitive email.

Of several values with one identity the first in feed order is stored (the first URL registered).
Plus: the admin refuses a feed URL that is already a source, and migration 0003 resolves rows
stored before the keys that the keys make equal (``tests.identity_migration``).
"""

import hashlib
import json
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from ingest.models import Author, Entry, Pingback, TechnicalArticle
from ingest.services.sources import sources_resolve
from tests import identity_migration

DATA = Path(__file__).parent / "data" / "identity"

NFC, NFD = "r\u00e9sum\u00e9", "re\u0301sume\u0301"  # résumé composed, and decomposed (e + U+0301)
LONG_FEED = "/identity/" + "f" * 600

# (feed URL as registered, {base} for the test server, whether it is a new source, file served)
REGISTERED = [
    ("{base}/identity/feed.rss", True, "entries.rss"),
    ("{base}/identity/Feed.rss", True, "small.rss"),  # path case matters
    ("HTTP://{host}/identity/feed.rss", False, None),  # scheme case does not
    ("{base}/identity/feed.rss/", False, None),  # nor a trailing slash
    ("{base}/identity/feed.rss#latest", False, None),  # nor a fragment
    ("  {base}/identity/feed.rss  ", False, None),  # nor surrounding spaces
    ("{base}/identity/caf\u00e9.rss", True, "small.rss"),
    ("{base}/identity/cafe\u0301.rss", True, "small.rss"),  # decomposed: another path
    ("{base}/identity/cafe.rss", True, "small.rss"),  # accents matter
    ("{base}" + LONG_FEED + "A.rss", True, "small.rss"),
    ("{base}" + LONG_FEED + "a.rss", True, "small.rss"),  # 620 characters, differing at the end
    ("{base}/identity/authors.atom", True, "authors.atom"),
]
ROUTES = {  # path as requested (httpx percent-encodes the path) -> file
    "/identity/feed.rss": "entries.rss", "/identity/Feed.rss": "small.rss", "/identity/caf%C3%A9.rss": "small.rss",
    "/identity/cafe%CC%81.rss": "small.rss", "/identity/cafe.rss": "small.rss", LONG_FEED + "A.rss": "small.rss",
    LONG_FEED + "a.rss": "small.rss", "/identity/authors.atom": "authors.atom",
    "/identity/comments/upper.rss": "comments/upper.rss", "/identity/comments/lower.rss": "comments/lower.rss",
}


def _digest_guid(guid: str) -> str:  # parse.py's form of a guid over 255 characters
    return "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


COMMENTS_UPPER = (("C-1", "Reader A"), ("c-1", "Reader B"), ("caf\u00e9", "Reader C"), ("cafe", "Reader D"),
                  ("c-" + NFC, "Reader E"), ("pad", "Reader G"), ("c" * 250 + "X", "Reader I"),
                  ("c" * 250 + "x", "Reader J"))
ENTRIES = [  # (guid, headline, authors, comments, number_of_comments, number_of_pingbacks) of entries.rss
    ("POST-ABC", "Upper case guid", (), COMMENTS_UPPER, 8, 0),
    ("post-abc", "Lower case guid", (), (("C-1", "Reader K"),), 1, 0),
    ("caf\u00e9", "Accented guid", (), (), 0, 0),
    ("cafe", "Plain guid", (), (), 0, 0),
    (NFC, "Composed guid", (), (), 0, 0),  # "Decomposed guid" is the same entry: the first counts
    ("spaces", "Trimmed guid", (), (), 0, 0),  # "  spaces  " too
    ("g" * 250 + "-END", "Long guid, upper end", (), (), 0, 0),
    ("g" * 250 + "-end", "Long guid, lower end", (), (), 0, 0),
    ("n" * 254 + "\u00e9", "Longest guid, composed", (), (), 0, 0),  # 256 characters decomposed: same
    (_digest_guid("v" * 300 + "A"), "Over-long guid, upper end", (), (), 0, 0),
    (_digest_guid("v" * 300 + "a"), "Over-long guid, lower end", (), (), 0, 0),
    ("ping-target", "Pingback target", (), (), 0, 8),
    ("ping-1", "Source, capital path", (), (), 0, 0),
    ("ping-2", "Source, lower path", (), (), 0, 0),
    ("ping-3", "Source, capital host and slash", (), (), 0, 0),
    ("ping-4", "Source, accented", (), (), 0, 0),
    ("ping-5", "Source, plain", (), (), 0, 0),
    ("ping-6", "Source, composed", (), (), 0, 0),
    ("ping-7", "Source, decomposed", (), (), 0, 0),
    ("ping-8", "Source, long upper end", (), (), 0, 0),
    ("ping-9", "Source, long lower end", (), (), 0, 0),
]
ADA, ADA_LOWER = ("Ada Lovelace", "ada@example.com"), ("ada lovelace", "ada@example.com")
JOSE, GRACE, DESIREE = ("Jos\u00e9", "jose@example.com"), ("Grace Hopper", ""), ("D\u00e9sir\u00e9e", "")
LONG_UPPER, LONG_LOWER = ("N" * 195 + "-LONG", ""), ("N" * 195 + "-long", "")
AUTHOR_ENTRIES = [  # (guid, headline, authors) of authors.atom
    ("a-1", "By Ada", (ADA,)),
    ("a-2", "By ada, lower case", (ADA_LOWER,)),  # a name differing in case: another author
    ("a-3", "By Ada, email in capitals", (ADA,)),  # ADA@Example.COM: the same author, as first written
    ("a-4", "By Jos\u00e9, composed", (JOSE,)),
    ("a-5", "By Jose\u0301, decomposed", (JOSE,)),  # the same author, as first written
    ("a-6", "By caf\u00e9", (("caf\u00e9", ""),)),
    ("a-7", "By cafe", (("cafe", ""),)),  # no accent: another author
    ("a-8", "By Grace, padded", (GRACE,)),
    ("a-9", "By Grace", (GRACE,)),
    ("a-10", "Long name, upper end", (LONG_UPPER,)),
    ("a-11", "Long name, lower end", (LONG_LOWER,)),
    ("a-12", "Two spellings of one author", (DESIREE,)),  # linked once
]
# Pingbacks to "ping-target": one per target and normalized source URL; of ping-1 and ping-3
# (https://pings.example/Source and https://PINGS.example/Source/) the URL that sorts first.
PINGBACKS = [
    ("https://PINGS.example/Source/", "ping-target", "ping-3"),
    ("https://pings.example/source", "ping-target", "ping-2"),
    ("https://pings.example/caf\u00e9", "ping-target", "ping-4"),
    ("https://pings.example/cafe", "ping-target", "ping-5"),
    ("https://pings.example/" + NFC, "ping-target", "ping-6"),
    ("https://pings.example/" + NFD, "ping-target", "ping-7"),
    ("https://pings.example/" + "p" * 640 + "A", "ping-target", "ping-8"),
    ("https://pings.example/" + "p" * 640 + "a", "ping-target", "ping-9"),
]


def expected() -> dict:
    sources = [url.strip() for url, new, _ in REGISTERED if new]
    entries = [("{base}/identity/feed.rss", guid, headline, tuple(sorted(authors)), tuple(sorted(comments)), n_comments,
                n_pingbacks) for guid, headline, authors, comments, n_comments, n_pingbacks in ENTRIES]
    entries += [("{base}/identity/authors.atom", guid, headline, tuple(sorted(authors)), (), 0, 0)
                for guid, headline, authors in AUTHOR_ENTRIES]
    entries += [(url, "small-1", "Small", (), (), 0, 0) for url, new, served in REGISTERED if served == "small.rss"]
    return {
        "sources": sorted(sources),
        "entries": sorted(entries),
        "authors": sorted({author for _, _, authors in AUTHOR_ENTRIES for author in authors}),
        "pingbacks": sorted(PINGBACKS),
    }


def fingerprint(base: str) -> dict:
    """What is stored, without ids and timestamps; the server's address written as {base}."""
    def url(value: str) -> str:
        return value.replace(base, "{base}")

    entries = Entry.objects.select_related("technical_article").prefetch_related("authors", "comments")
    return {
        "sources": sorted(url(u) for u in TechnicalArticle.objects.values_list("feed_url", flat=True)),
        "entries": sorted(
            (url(e.technical_article.feed_url), e.guid, e.headline, tuple(sorted((a.name, a.email) for a in e.authors.all())),
             tuple(sorted((c.guid, c.author_name) for c in e.comments.all())), e.number_of_comments, e.number_of_pingbacks)
            for e in entries
        ),
        "authors": sorted(Author.objects.values_list("name", "email")),
        "pingbacks": sorted(Pingback.objects.values_list("source_url", "target__guid", "source_entry__guid")),
    }


def command(*args) -> dict:
    out = StringIO()
    call_command(*args, "--json", stdout=out, stderr=StringIO())
    return json.loads(out.getvalue())


@pytest.fixture
def corpus(db, feed_server):
    for path, name in ROUTES.items():  # no validators: a second run parses and matches everything again
        feed_server.add(path, file=DATA / name)
    base, host = feed_server.base_url, feed_server.base_url.removeprefix("http://")
    created = []
    for url, _, served in REGISTERED:
        url = url.format(base=base, host=host)
        created.append(command("add_source", url, *(["--fetch-comments"] if served == "entries.rss" else []))["created"])
    assert created == [new for _, new, _ in REGISTERED]
    return feed_server


def test_the_corpus_is_stored_as_the_identity_rules_say_on_every_backend(corpus, settings):
    settings.INGEST_COMMENTS_DAYS = 36500
    base = corpus.base_url
    first = command("ingest_feeds")
    assert first["status"] == "succeeded", first["sources"]
    assert {s["outcome"] for s in first["sources"]} == {"created"}
    assert first["comments"]["failed"] == 0 and first["comments"]["created"] == 9
    want = expected()
    got = fingerprint(base)
    for part in want:  # one part at a time, so that a failure shows which
        assert got[part] == want[part], part

    # Everything is found again by its key: nothing new, nothing changed, no error.
    again = command("ingest_feeds", "--all")
    assert again["status"] == "succeeded", again["sources"]
    assert {s["outcome"] for s in again["sources"]} == {"unchanged"}
    assert again["comments"]["created"] == again["comments"]["updated"] == again["comments"]["failed"] == 0
    assert fingerprint(base) == got


def test_a_source_is_found_by_any_spelling_of_its_feed_url(corpus):
    base, host = corpus.base_url, corpus.base_url.removeprefix("http://")
    # Compared in Python: a filter on feed_url would compare by the collation (both, on MariaDB).
    ids = {url: pk for pk, url in TechnicalArticle.objects.values_list("pk", "feed_url")}
    feed, other = ids[f"{base}/identity/feed.rss"], ids[f"{base}/identity/Feed.rss"]
    assert sources_resolve([f"HTTP://{host}/identity/feed.rss/", f"{base}/identity/feed.rss#x"]) == [feed]
    assert sources_resolve([f"{base}/identity/Feed.rss"]) == [other]


def test_the_admin_refuses_a_feed_url_that_is_already_a_source(db, client):
    TechnicalArticle.objects.create(name="a", feed_url="https://a.example/feed")
    User.objects.create_superuser("admin", "admin@example.com", "pw")
    client.login(username="admin", password="pw")
    form = {"name": "again", "tagline": "", "site_url": "", "active": "on", "fetch_interval": "",
            "next_fetch_at_0": "", "next_fetch_at_1": "", "auth_scheme": "none", "extra_headers": ""}
    refused = client.post("/admin/ingest/technicalarticle/add/", {**form, "feed_url": "HTTPS://A.example/feed/"})
    assert refused.status_code == 200 and b"already exists" in refused.content
    accepted = client.post("/admin/ingest/technicalarticle/add/", {**form, "feed_url": "https://a.example/Feed"})
    assert accepted.status_code == 302
    assert sorted(TechnicalArticle.objects.values_list("feed_url", flat=True)) == ["https://a.example/Feed",
                                                                                  "https://a.example/feed"]


@pytest.mark.django_db(transaction=True)
def test_the_migration_resolves_rows_stored_before_the_keys_that_the_keys_make_equal():
    app, name = identity_migration.MIGRATION
    executor = MigrationExecutor(connection)
    leaves = executor.loader.graph.leaf_nodes()
    [previous] = [dep for dep in executor.loader.get_migration(app, name).dependencies if dep[0] == app]
    try:
        executor.migrate([previous])
        identity_migration.write(MigrationExecutor(connection).loader.project_state(previous).apps, connection.alias)
        MigrationExecutor(connection).migrate([identity_migration.MIGRATION])
        with connection.cursor() as cursor:
            state = identity_migration.read(cursor)
    finally:
        MigrationExecutor(connection).migrate(leaves)
    assert {part: state[part] for part in identity_migration.EXPECTED} == identity_migration.EXPECTED
    assert identity_migration.keys_are_right(state["keys"])


@pytest.mark.skipif(connection.vendor != "mysql", reason="MariaDB's collation")
def test_the_mariadb_test_database_has_the_collation_users_have(db):
    # tests/settings.py: utf8mb4 and the server's default collation, case- and accent-insensitive,
    # so that the corpus above meets the comparisons it is about.
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@character_set_database, @@collation_database")
        assert cursor.fetchone() == ("utf8mb4", "utf8mb4_general_ci")
        cursor.execute("SELECT TABLE_COLLATION FROM information_schema.TABLES "
                       "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'ingest_entry'")
        assert cursor.fetchone() == ("utf8mb4_general_ci",)
        cursor.execute("SELECT 'POST-ABC' = 'post-abc', 'caf\u00e9' = 'cafe', 'spaces ' = 'spaces'")
        assert cursor.fetchone() == (1, 1, 1)
