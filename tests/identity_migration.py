"""Rows stored before the identity keys existed that the keys make equal, and what migration 0003
must leave of them. Shared by tests/test_identity.py (on SQLite, PostgreSQL and MariaDB) and the
T-SQL capture (tests/mssql/capture.py, through mssql-django).

The rows are valid under the old text keys on every backend, MariaDB's case- and accent-insensitive
collation included: they differ only where the new keys normalize (NFC, a URL's trailing slash),
never in case or accents, which the old keys there already refused.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

NFC, NFD = "caf\u00e9", "cafe\u0301"
JOSE_NFC, JOSE_NFD = "Jos\u00e9", "Jose\u0301"
MOMENT = datetime(2026, 11, 1, tzinfo=timezone.utc)


MIGRATION = ("ingest", "0003_identity_keys")


def write(apps, using: str) -> None:
    """Write the rows with the historical models of ``apps`` (before migration 0003, or within it
    before its data step: no key is set)."""
    model = {name: apps.get_model("ingest", name)._base_manager.db_manager(using)
             for name in ("TechnicalArticle", "Entry", "Author", "Comment", "Pingback", "EntryLink", "CommentFeed")}
    links = apps.get_model("ingest", "Entry")._meta.get_field("authors").remote_field.through._base_manager.db_manager(using)
    for pk, url in ((1, "https://dup.example/feed"), (2, "https://dup.example/feed/"), (3, "https://other.example/feed")):
        model["TechnicalArticle"].create(pk=pk, name=f"source {pk}", feed_url=url, created_at=MOMENT)
    for pk, source, guid in ((1, 1, NFC), (2, 2, NFC), (3, 1, NFD), (4, 3, "x"), (5, 2, "only-in-the-second")):
        model["Entry"].create(pk=pk, technical_article_id=source, guid=guid, headline=f"entry {pk}", body_text="",
                              pub_date=date(2026, 11, 1), mod_date=date(2026, 11, 1), published_at=MOMENT,
                              ingested_at=MOMENT, content_hash="h", number_of_comments=2 if pk == 4 else 0,
                              number_of_pingbacks=3 if pk == 4 else 0)
    for pk, name, email in ((1, JOSE_NFC, "jose@example.com"), (2, JOSE_NFD, "jose@example.com"), (3, "Ann", "")):
        model["Author"].create(pk=pk, name=name, email=email)
    for pk, (entry, author) in enumerate(((1, 1), (1, 2), (4, 2), (5, 3), (3, 3)), 1):
        links.create(pk=pk, entry_id=entry, author_id=author)
    for pk, entry, guid in ((1, 4, "c-" + NFC), (2, 4, "c-" + NFD), (3, 3, "gone")):
        model["Comment"].create(pk=pk, entry_id=entry, guid=guid, published_at=MOMENT, created_at=MOMENT)
    for pk, target, url, source_entry in ((1, 4, "https://a.example/p", 1), (2, 4, "https://a.example/p/", 3),
                                          (3, 4, "https://b.example/q", 3), (4, 3, "https://c.example/r", 4)):
        model["Pingback"].create(pk=pk, target_id=target, source_url=url, source_entry_id=source_entry, created_at=MOMENT)
    model["EntryLink"].create(pk=1, entry_id=3, link_key="k")
    model["CommentFeed"].create(entry_id=3)


def until_data_step(using: str):
    """Bring database ``using`` to migration 0003's predecessor, write the rows, then apply 0003's
    operations up to its data step; returns the apps of that point (what the data step gets)."""
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.operations import RunPython

    loader = MigrationLoader(None, ignore_no_migrations=True)
    migration = loader.get_migration(*MIGRATION)
    [previous] = [name for app, name in migration.dependencies if app == MIGRATION[0]]
    call_command("migrate", MIGRATION[0], previous, database=using, verbosity=0)
    state = loader.project_state((MIGRATION[0], previous))
    write(state.apps, using)
    with connections[using].schema_editor() as editor:
        for operation in migration.operations:
            if isinstance(operation, RunPython):
                break
            after = state.clone()
            operation.state_forwards(MIGRATION[0], after)
            operation.database_forwards(MIGRATION[0], editor, state, after)
            state = after
    return state.apps


def data_step():
    """Migration 0003's data step (its RunPython function)."""
    import importlib

    return importlib.import_module(".".join((MIGRATION[0], "migrations", MIGRATION[1]))).identity_keys_fill


# What 0003 leaves: the lowest id of each group of equal keys; the duplicate source's entries moved
# to the source kept; the duplicate entries gone with their comments, links and pingbacks to them,
# the pingbacks from them now from the entry kept; the duplicate author's entries linked to the
# author kept; the counters of entries that lost a duplicate comment or pingback recounted.
EXPECTED = {
    "sources": [(1, "https://dup.example/feed"), (3, "https://other.example/feed")],
    "entries": [(1, 1, NFC, 0, 0), (4, 3, "x", 1, 2), (5, 1, "only-in-the-second", 0, 0)],
    "authors": [(1, JOSE_NFC, "jose@example.com"), (3, "Ann", "")],
    "links": [(1, 1), (4, 1), (5, 3)],
    "comments": [(1, 4, "c-" + NFC)],
    "pingbacks": [(1, 4, "https://a.example/p", 1), (3, 4, "https://b.example/q", 1)],
    "entry_links": [],
    "comment_feeds": [],
}


def read(cursor) -> dict:
    """The rows as ``EXPECTED`` lists them, and the key columns (``keys``: table -> [(id, key)])."""
    def rows(sql: str) -> list[tuple]:
        cursor.execute(sql)
        return [tuple(row) for row in cursor.fetchall()]

    state = {
        "sources": rows("SELECT id, feed_url FROM ingest_technicalarticle ORDER BY id"),
        "entries": rows("SELECT id, technical_article_id, guid, number_of_comments, number_of_pingbacks "
                        "FROM ingest_entry ORDER BY id"),
        "authors": rows("SELECT id, name, email FROM ingest_author ORDER BY id"),
        "links": rows("SELECT entry_id, author_id FROM ingest_entry_authors ORDER BY entry_id, author_id"),
        "comments": rows("SELECT id, entry_id, guid FROM ingest_comment ORDER BY id"),
        "pingbacks": rows("SELECT id, target_id, source_url, source_entry_id FROM ingest_pingback ORDER BY id"),
        "entry_links": rows("SELECT entry_id, link_key FROM ingest_entrylink"),
        "comment_feeds": rows("SELECT entry_id FROM ingest_commentfeed"),
    }
    state["keys"] = {
        "sources": rows("SELECT feed_url, feed_url_key FROM ingest_technicalarticle ORDER BY id"),
        "entries": rows("SELECT guid, guid_key FROM ingest_entry ORDER BY id"),
        "authors": rows("SELECT name, email, identity_key FROM ingest_author ORDER BY id"),
        "comments": rows("SELECT guid, guid_key FROM ingest_comment ORDER BY id"),
        "pingbacks": rows("SELECT source_url, source_key FROM ingest_pingback ORDER BY id"),
    }
    return state


def keys_are_right(keys: dict) -> bool:
    """Every key column holds what ``ingest.identity`` computes from its row's text."""
    from ingest import identity

    return (
        all(key == identity.feed_url_key(url) for url, key in keys["sources"])
        and all(key == identity.guid_key(guid) for guid, key in keys["entries"] + keys["comments"])
        and all(key == identity.author_key(name, email) for name, email, key in keys["authors"])
        and all(key == identity.url_key(url) for url, key in keys["pingbacks"])
    )
