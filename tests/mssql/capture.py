"""Run the pipeline on mssql-django with the recorder in place of the driver; print what it sent.

    python -m tests.mssql.capture [--targets sqlserver-2019,sqlserver-2022,sqlserver-2025,azure-sql] [--entries 2100] > capture.json

The process's default database is ``mssql://`` (ENGINE ``mssql``, ODBC Driver 18), so the commands
and services run unchanged and every statement goes through mssql-django's compiler. A SQLite
database with the migrated schema answers (``tests.mssql.recorder``). Phases:

``sqlmigrate``        the T-SQL of every migration of the ingest app, each written against the
                      schema as it is before that migration (mssql-django reads the catalog to
                      find what an ALTER COLUMN must drop and restore);
``migrate-data``      the data step of migration 0003 (identity keys filled, rows they make equal
                      resolved) on rows written before it (``tests.identity_migration``), so
                      that its statements are held to the contract too;
``ingest-first``      ``ingest_feeds`` on a large synthetic feed (new entries, authors, links,
                      pingbacks, counters) and a small one with comment feeds;
``ingest-changed``    the same feeds with every eighth entry edited, half of those with new authors;
``ingest-fanout``     the Celery path: ``ingest_dispatch`` then ``source_ingest`` (small source);
``metrics-scrape``    the series of ``/metrics`` (``ingest.services.metrics``), read from the ledger so far;
``recount``           ``recompute_counts`` (default strategy) after counters were made wrong;
``recount-<name>``    each other reconciliation strategy (``bench/recount_strategies.py``), passed as
                      ``counts_recompute(reconcile=...)``, chunks of 2,000;
``recount-since``     ``recompute_counts --since``;
``delete-admin-confirm``, ``delete-admin``  the admin's delete of the large source (its confirmation
                      page, then the confirmed POST), more than 2,048 entries;
``delete-source``     ``delete_source --yes`` of a second large source (same feed, other URL) whose
                      entries also have comments (``ingest.services.delete``);
``prune-entries*``    ``prune_entries`` (dry run, then the prune) of a large source capped at 100
                      entries, some discussed; the same feed again (tombstones read), a feed that
                      dropped most guids (tombstones deleted), then ``delete_source`` of it.
``dedup-ingest``, ``dedup-recount``, ``dedup-delete``  duplicates across feeds: a third source with
                      the large feed's links (every entry a copy), ``recompute_counts --dedup``,
                      then deleting the large source (its copies promoted) and the third one.

Every target (SQL Server 2019, 2022, 2025, Azure SQL) runs the same phases on a fresh copy of the
schema. Prints one JSON object: per target the statements (phase, parameters, row count, and an
index into ``sql``), the reports, the migrations' SQL and the connection strings mssql-django
built; then each distinct batch text once, with its analysis (``tests.mssql.tsql.analyse``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from io import StringIO
from pathlib import Path

NOW = datetime.now(timezone.utc).replace(microsecond=0)
DATABASE_URL = ("mssql://pipeline:S3cret%3Bpw@sql.test.invalid:1433/pipeline"
                "?Encrypt=yes&TrustServerCertificate=no&connection_retries=3&connection_retry_backoff_time=2")


def big_feed(base: str, n: int, *, revision: int) -> bytes:
    """RSS with ``n`` items, every other one with an enclosure; revision 2 edits every eighth item (its
    enclosure too) and gives half of those new authors."""
    items = []
    for i in range(n):
        edited = revision > 1 and i % 8 == 0
        authors = [f"Author {i % 37}"] + ([f"Author {(i + 1) % 37}"] if i % 3 == 0 else [])
        if edited and i % 16 == 0:
            authors = [f"Guest {i % 11}"]
        body = (f"<p>Post {i}{' (revised)' if edited else ''}. See "
                f'<a href="{base}/posts/{max(i - 1, 0)}/">the previous post</a>.</p>')
        creators = "".join(f"<dc:creator>{a}</dc:creator>" for a in authors)
        # Every other post is an episode; an edited one's audio changes (its enclosures are replaced).
        audio = (f'<enclosure url="https://cdn.example/{i}{"-v2" if edited else ""}.mp3" type="audio/mpeg" '
                 f'length="{1000 + i}"/>' if i % 2 == 0 else "")
        items.append(
            f"<item><title>Post {i}</title><link>{base}/posts/{i}/</link><guid isPermaLink=\"false\">big-{i}</guid>"
            f"<pubDate>{format_datetime(NOW - timedelta(days=30, minutes=i))}</pubDate>{creators}"
            f"<slash:comments>{i % 5}</slash:comments>{audio}<description><![CDATA[{body}]]></description></item>"
        )
    return _rss("Big blog", base, items)


def small_feed(base: str, *, revision: int) -> bytes:
    items = []
    for i in range(3):
        items.append(
            f"<item><title>Small {i} r{revision if i == 0 else 1}</title><link>{base}/small/{i}/</link>"
            f"<guid isPermaLink=\"false\">small-{i}</guid><pubDate>{format_datetime(NOW - timedelta(hours=i + 1))}</pubDate>"
            f"<dc:creator>Ada Lovelace</dc:creator><wfw:commentRss>{base}/comments/{i}.rss</wfw:commentRss>"
            f"<description><![CDATA[<p>Links to <a href=\"{base}/posts/{i}/\">a big post</a>.</p>]]></description></item>"
        )
    return _rss("Small blog", base, items)


def comments_feed(i: int) -> bytes:
    items = [
        f"<item><title>Re</title><guid isPermaLink=\"false\">c-{i}-{j}</guid><dc:creator>Reader {j}</dc:creator>"
        f"<pubDate>{format_datetime(NOW - timedelta(minutes=j))}</pubDate><description>Comment {j}</description></item>"
        for j in range(i + 2)
    ]
    return _rss("Comments", "https://comments.example/", items)


def _rss(title: str, link: str, items: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:wfw="http://wellformedweb.org/CommentAPI/">'
        f"<channel><title>{title}</title><link>{link}</link><description>d</description>{''.join(items)}</channel></rss>"
    ).encode()


TARGETS = {
    # name: (SERVERPROPERTY('ProductVersion') major mapped to a release, EngineEdition is Azure SQL)
    "sqlserver-2019": (2019, False),
    "sqlserver-2022": (2022, False),
    "sqlserver-2025": (2025, False),  # ProductVersion 17
    # Azure SQL Database reports ProductVersion 12.x (2014) and EngineEdition 5; mssql-django
    # decides its features from the pair, exactly as it would after asking a real server.
    "azure-sql": (2014, True),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated: " + ", ".join(TARGETS))
    parser.add_argument("--entries", type=int, default=2100, help="entries in the large feed (>2,000 splits IN lists)")
    args = parser.parse_args()

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.setdefault("INGEST_WORKERS", "2")
    with tempfile.TemporaryDirectory(prefix="tsql-capture-") as tmp:
        json.dump(run(args, Path(tmp)), sys.stdout)


def run(args: argparse.Namespace, tmp: Path) -> dict:
    template = str(tmp / "template.sqlite3")

    import django
    from django.conf import settings

    settings.DATABASES["shadow"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": template}
    settings.DATABASES["before"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp / "before.sqlite3")}
    django.setup()

    from django.apps import apps
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", database="shadow", verbosity=0)
    connections["shadow"].close()
    before = schemas_before(tmp)
    identity_rows, identity_apps = identity_rows_before(tmp)

    from tests.mssql import tsql

    pk_columns = {model._meta.db_table: model._meta.pk.column for model in apps.get_models(include_auto_created=True)}
    out: dict = {"targets": {}, "pk_columns": pk_columns}
    texts: dict[str, int] = {}
    with FeedServerFixture(args.entries) as feeds:
        for name in args.targets.split(","):
            version, azure = TARGETS[name]
            shadow_path = str(tmp / f"{name}.sqlite3")
            shutil.copyfile(template, shadow_path)
            shutil.copyfile(identity_rows, tmp / f"{name}-identity.sqlite3")
            out["targets"][name] = capture(name, version=version, azure=azure, shadow_path=shadow_path, feeds=feeds,
                                           before=before, identity=(str(tmp / f"{name}-identity.sqlite3"), identity_apps))
            for statement in out["targets"][name]["statements"]:
                statement["sql"] = texts.setdefault(statement["sql"], len(texts))
    out["sql"] = list(texts)
    out["analysis"] = [tsql.analyse(text, pk_columns) for text in texts]
    return out


def schemas_before(tmp: Path) -> dict[str, str]:
    """Per migration of the ingest app, a SQLite database migrated up to the one before it."""
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    paths, previous = {}, "zero"
    for _, name in sorted(key for key in loader.disk_migrations if key[0] == "ingest"):
        call_command("migrate", "ingest", previous, database="before", verbosity=0)
        connections["before"].close()
        paths[name] = str(tmp / f"before-{name}.sqlite3")
        shutil.copyfile(connections["before"].settings_dict["NAME"], paths[name])
        previous = name
    return paths


def identity_rows_before(tmp: Path):
    """A SQLite database holding ``tests.identity_migration``'s rows as migration 0003's data step
    finds them (key columns there and NULL), and the apps that step is given."""
    from django.db import connections

    from tests import identity_migration

    apps = identity_migration.until_data_step("before")
    connections["before"].close()
    path = str(tmp / "identity-rows.sqlite3")
    shutil.copyfile(connections["before"].settings_dict["NAME"], path)
    return path, apps


class FeedServerFixture:
    """One loopback server for every target; feeds are generated once and switched by revision."""

    def __init__(self, entries: int):
        from samples.feedserver import FeedServer

        self.server = FeedServer()
        self.entries = entries

    def __enter__(self) -> FeedServerFixture:
        self.server.start()
        base = self.server.base_url
        self.big = {rev: big_feed(base, self.entries, revision=rev) for rev in (1, 2)}
        self.small = {rev: small_feed(base, revision=rev) for rev in (1, 2, 3)}
        for i in range(3):
            self.server.add(f"/comments/{i}.rss", comments_feed(i))
        return self

    def revision(self, big: int, small: int) -> None:
        self.server.add("/big.rss", self.big[big])
        self.server.add("/small.rss", self.small[small])

    def __exit__(self, *exc) -> None:
        self.server.stop()


def capture(name: str, *, version: int, azure: bool, shadow_path: str, feeds: FeedServerFixture,
            before: dict[str, str], identity: tuple) -> dict:
    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    from ingest.services import fanout, recount
    from ingest.models import TechnicalArticle
    from tests.mssql import recorder

    connections["default"].close()
    del connections["default"]  # a new wrapper: features and caches are per target
    shadow = recorder.install(shadow_path=shadow_path, alias="default", version=version, azure=azure)
    connection = connections["default"]
    assert connection.vendor == "microsoft"
    result: dict = {"reports": {}, "migrations": {}}

    def command(name: str, *options: str) -> dict:
        buffer = StringIO()
        call_command(name, "--json", *options, stdout=buffer, stderr=StringIO())
        return json.loads(buffer.getvalue())

    shadow.phase = "sqlmigrate"
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app_label, migration in sorted(key for key in loader.disk_migrations if key[0] == "ingest"):
        buffer = StringIO()
        shadow.describe(path=before[migration])
        call_command("sqlmigrate", app_label, migration, database="default", stdout=buffer)
        result["migrations"][f"{app_label}.{migration}"] = buffer.getvalue()
    shadow.describe()

    shadow.phase = "migrate-data"
    result["migrate_data"] = identity_migration_run(shadow, connection, *identity)

    shadow.phase = "setup"
    server = feeds.server
    feeds.revision(big=1, small=1)
    big = TechnicalArticle.objects.create(name="Big blog", feed_url=server.url("/big.rss"))
    small = TechnicalArticle.objects.create(name="Small blog", feed_url=server.url("/small.rss"), fetch_comments=True)

    shadow.phase = "ingest-first"
    result["reports"]["ingest-first"] = command("ingest_feeds", "--trigger", "cron")

    feeds.revision(big=2, small=2)
    shadow.phase = "ingest-changed"
    result["reports"]["ingest-changed"] = command("ingest_feeds", "--all", "--trigger", "cron")

    feeds.revision(big=2, small=3)
    shadow.phase = "ingest-fanout"
    run_id, owner, claimed = fanout.ingest_dispatch(source_ids=[small.pk])
    results = [fanout.source_ingest(source_id=pk, owner=owner, run_id=run_id) for pk in claimed]
    result["reports"]["ingest-fanout"] = {"run_id": run_id, "claimed": claimed,
                                          "sources": [r.as_dict() for r in results if r is not None]}

    shadow.phase = "metrics-scrape"
    from prometheus_client import generate_latest

    from ingest.services.metrics import metrics_registry

    result["reports"]["metrics-scrape"] = generate_latest(metrics_registry()).decode()

    def drift() -> int:
        """Make counters wrong behind the pipeline's back (straight into the answering database)."""
        with shadow.lock:
            db = shadow.db
            db.execute("UPDATE ingest_entry SET number_of_comments = number_of_comments + 3 WHERE id % 3 = 0")
            db.execute("UPDATE ingest_entry SET number_of_pingbacks = number_of_pingbacks + 1 WHERE id % 3 = 1")
            return db.execute("SELECT COUNT(*) FROM ingest_entry WHERE id % 3 IN (0, 1)").fetchone()[0]

    result["drifted"] = drift()
    shadow.phase = "recount"
    result["reports"]["recount"] = command("recompute_counts", "--trigger", "cron")
    from bench.recount_strategies import ALTERNATIVES

    # Every reconciliation strategy the benchmarks measure, not only the product's that the command uses.
    for strategy, reconcile in sorted(ALTERNATIVES.items()):
        drift()
        shadow.phase = f"recount-{strategy}"
        result["reports"][shadow.phase] = recount.counts_recompute(reconcile=reconcile, chunk_size=2000).as_dict()
    drift()
    shadow.phase = "recount-since"
    result["reports"]["recount-since"] = command("recompute_counts", "--since", "2020-01-01", "--chunk-size", "500")
    shadow.phase = "export-opml"
    result["reports"]["export-opml"] = command("export_opml", "--all", "--output",
                                               str(Path(shadow_path).with_name("sources.opml")))

    with shadow.lock:
        result["entries"] = shadow.db.execute("SELECT COUNT(*) FROM ingest_entry").fetchone()[0]
        result["runs"] = shadow.db.execute("SELECT command, status FROM ingest_ingestrun ORDER BY id").fetchall()
    result["dedup"] = dedup_phases(shadow, feeds, command=command)
    result["deletes"] = delete_sources(shadow, feeds, big=big, command=command)
    result["retention"] = prune_entries(shadow, feeds, command=command)
    result["webhooks"] = webhooks_phases(shadow, feeds)
    result.update(
        version=version, azure=azure, big_source=big.pk,
        sql_server_version=connection.sql_server_version, to_azure_sql_db=connection.to_azure_sql_db,
        connection_strings=sorted(set(shadow.connection_strings)),
        statements=[r.as_dict() for r in shadow.log],
    )
    connection.close()
    return result


def webhooks_phases(shadow, feeds: FeedServerFixture) -> dict:
    """The outbox fanned out to an endpoint, one batch sent (the feed server refuses a POST: the
    failure's writes), and a replay of every event."""
    from datetime import timedelta

    from django.utils import timezone

    from ingest.models import WebhookEndpoint
    from ingest.services import webhooks

    shadow.phase = "setup-webhooks"
    WebhookEndpoint.objects.create(url=feeds.server.url("/hook"))
    shadow.phase = "webhooks-deliver"
    delivered = webhooks.webhooks_deliver(budget=30).as_dict()
    shadow.phase = "webhooks-replay"
    replayed = webhooks.webhooks_replay(since=timezone.now() - timedelta(days=1))
    return {"deliver": delivered, "replay": replayed}


def dedup_phases(shadow, feeds: FeedServerFixture, *, command) -> dict:
    """A source carrying every entry of the large feed (same links, its own guids): marked as copies,
    repaired by ``recompute_counts --dedup``, then deleted (copies only: nothing to promote)."""
    from ingest.models import Entry, TechnicalArticle

    shadow.phase = "setup-dedup"
    feeds.server.add("/big-dup.rss", feeds.big[2].replace(b"big-", b"dup-"))
    dup = TechnicalArticle.objects.create(name="Big dup", feed_url=feeds.server.url("/big-dup.rss"))
    shadow.phase = "dedup-ingest"
    result = {"ingest": command("ingest_feeds", "--source", str(dup.pk))}
    result["marked"] = Entry.objects.filter(technical_article=dup, duplicate_of__isnull=False).count()
    shadow.phase = "dedup-recount"
    result["recount"] = command("recompute_counts", "--dedup")
    shadow.phase = "dedup-delete"
    result["delete"] = command("delete_source", str(dup.pk), "--yes")
    return result


def delete_sources(shadow, feeds: FeedServerFixture, *, big, command) -> dict:
    """Delete two sources of more than 2,048 entries: ``big`` through the admin (confirmation page,
    then the confirmed POST), a copy of it with comments through ``delete_source``."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client

    from ingest.models import Comment, Entry, TechnicalArticle

    shadow.phase = "setup-delete"
    feeds.server.add("/big-copy.rss", feeds.big[2].replace(b"/posts/", b"/copy/"))
    copy = TechnicalArticle.objects.create(name="Big copy", feed_url=feeds.server.url("/big-copy.rss"))
    command("ingest_feeds", "--source", str(copy.pk))
    ids = list(Entry.objects.filter(technical_article=copy).values_list("pk", flat=True))
    Comment.objects.bulk_create([Comment(entry_id=pk, guid=f"copy-{pk}-{n}", body="c") for pk in ids for n in range(2)],
                                batch_size=1000)
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()
    client.force_login(User.objects.create_superuser("capture", "capture@example.invalid", None))
    url = f"/admin/ingest/technicalarticle/{big.pk}/delete/"

    def rows() -> dict:
        with shadow.lock:
            return {table: shadow.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    for table in ("ingest_technicalarticle", "ingest_entry", "ingest_comment", "ingest_pingback",
                                  "ingest_entrylink", "ingest_commentfeed", "ingest_entry_authors", "ingest_enclosure")}

    big_entries = Entry.objects.filter(technical_article=big).count()
    result = {"copy": copy.pk, "copy_entries": len(ids), "big_entries": big_entries, "before": rows()}
    shadow.phase = "delete-admin-confirm"
    page = client.get(url)
    result["confirm_status"] = page.status_code
    result["confirm_page_entries"] = f"{big_entries:,} entries" in page.content.decode()
    shadow.phase = "delete-admin"
    result["admin_status"] = client.post(url, {"post": "yes"}).status_code
    result["after_admin"] = rows()
    shadow.phase = "delete-source"
    result["report"] = command("delete_source", str(copy.pk), "--yes")
    result["after"] = rows()
    return result


def prune_entries(shadow, feeds: FeedServerFixture, *, command) -> dict:
    """``prune_entries`` on a source of more than 2,048 entries (discussed ones too) capped at 100, then
    the tombstones at work: the same feed ingested again (read, nothing re-created), a feed that
    dropped most guids (tombstones deleted by primary key), and ``delete_source`` of the source."""
    from ingest.models import Comment, Entry, EntryTombstone, TechnicalArticle

    shadow.phase = "setup-retention"
    full = feeds.big[1].replace(b"/posts/", b"/kept/")
    feeds.server.add("/retention.rss", full)
    source = TechnicalArticle.objects.create(name="Retention", feed_url=feeds.server.url("/retention.rss"),
                                             retention_max_entries=100)
    command("ingest_feeds", "--source", str(source.pk))
    oldest = list(Entry.objects.filter(technical_article=source).order_by("published_at", "pk").values_list("pk", flat=True)[:7])
    Comment.objects.bulk_create([Comment(entry_id=pk, guid=f"keep-{pk}", body="c") for pk in oldest])
    result: dict = {"source": source.pk, "entries": Entry.objects.filter(technical_article=source).count()}
    shadow.phase = "prune-entries-dry-run"
    result["dry_run"] = command("prune_entries", "--dry-run", "--source", str(source.pk))
    shadow.phase = "prune-entries"
    # Every big post links to the one before it, so nearly all are discussed (a pingback targets them).
    result["report"] = command("prune_entries", "--source", str(source.pk), "--include-discussed", "--trigger", "cron")
    result["left"] = Entry.objects.filter(technical_article=source).count()
    shadow.phase = "prune-entries-reingest"
    feeds.server.add("/retention.rss", full.replace(b"<description>d</description>", b"<description>e</description>", 1))
    result["reingest"] = command("ingest_feeds", "--source", str(source.pk))
    result["tombstones"] = EntryTombstone.objects.filter(source=source).count()
    shadow.phase = "prune-entries-feed-dropped"
    feeds.server.add("/retention.rss", big_feed(feeds.server.base_url, 50, revision=1).replace(b"/posts/", b"/kept/"))
    result["dropped"] = command("ingest_feeds", "--source", str(source.pk))
    result["tombstones_after_drop"] = EntryTombstone.objects.filter(source=source).count()
    shadow.phase = "prune-entries-delete-source"
    result["delete"] = command("delete_source", str(source.pk), "--yes")
    result["tombstones_after_delete"] = EntryTombstone.objects.count()
    return result


def identity_migration_run(shadow, connection, path: str, apps) -> dict:
    """Migration 0003's data step through mssql-django, answered from the database at ``path``;
    returns what it left (``tests.identity_migration.read``)."""
    import sqlite3

    from tests import identity_migration

    with shadow.answering_from(path):
        with connection.schema_editor() as editor:
            identity_migration.data_step()(apps, editor)
    db = sqlite3.connect(path)
    try:
        return identity_migration.read(db.cursor())
    finally:
        db.close()


if __name__ == "__main__":
    main()
