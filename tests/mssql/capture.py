"""Run the pipeline on mssql-django with the recorder in place of the driver; print what it sent.

    python -m tests.mssql.capture --version 2022 [--azure] [--entries 2100] > capture.json

The process's default database is ``mssql://`` (ENGINE ``mssql``, ODBC Driver 18), so the commands
and services run unchanged and every statement goes through mssql-django's compiler. A SQLite
database with the migrated schema answers (``tests.mssql.recorder``). Phases:

``sqlmigrate``        the T-SQL of every migration of the ingest app;
``ingest-first``      ``ingest_feeds`` on a large synthetic feed (new entries, authors, links,
                      pingbacks, counters) and a small one with comment feeds;
``ingest-changed``    the same feeds with half the entries edited and some authors changed;
``ingest-fanout``     the Celery path: ``ingest_dispatch`` then ``source_ingest`` per source;
``recount``           ``recompute_counts`` after counters were made wrong behind its back;
``recount-subquery``  the other reconciliation strategy (one UPDATE with correlated subqueries);
``recount-since``     ``recompute_counts --since``.

Prints one JSON object: the statements with their phase, the reports, the migrations' SQL, the
connection strings mssql-django built, and each table's primary-key column.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATABASE_URL = ("mssql://pipeline:S3cret%3Bpw@sql.test.invalid:1433/pipeline"
                "?Encrypt=yes&TrustServerCertificate=no&connection_retries=3&connection_retry_backoff_time=2")


def big_feed(base: str, n: int, *, revision: int) -> bytes:
    """RSS with ``n`` items; revision 2 edits every other item and moves some to other authors."""
    now = datetime.now(timezone.utc)
    items = []
    for i in range(n):
        edited = revision > 1 and i % 2 == 0
        authors = [f"Author {i % 37}"] + ([f"Author {(i + 1) % 37}"] if i % 3 == 0 else [])
        if edited and i % 4 == 0:
            authors = [f"Guest {i % 11}"]
        body = (f"<p>Post {i}{' (revised)' if edited else ''}. See "
                f'<a href="{base}/posts/{max(i - 1, 0)}/">the previous post</a>.</p>')
        creators = "".join(f"<dc:creator>{a}</dc:creator>" for a in authors)
        items.append(
            f"<item><title>Post {i}</title><link>{base}/posts/{i}/</link><guid isPermaLink=\"false\">big-{i}</guid>"
            f"<pubDate>{format_datetime(now - timedelta(days=30, minutes=i))}</pubDate>{creators}"
            f"<slash:comments>{i % 5}</slash:comments><description><![CDATA[{body}]]></description></item>"
        )
    return _rss("Big blog", base, items)


def small_feed(base: str, *, revision: int) -> bytes:
    now = datetime.now(timezone.utc)
    items = []
    for i in range(3):
        items.append(
            f"<item><title>Small {i} r{revision if i == 0 else 1}</title><link>{base}/small/{i}/</link>"
            f"<guid isPermaLink=\"false\">small-{i}</guid><pubDate>{format_datetime(now - timedelta(hours=i + 1))}</pubDate>"
            f"<dc:creator>Ada Lovelace</dc:creator><wfw:commentRss>{base}/comments/{i}.rss</wfw:commentRss>"
            f"<description><![CDATA[<p>Links to <a href=\"{base}/posts/{i}/\">a big post</a>.</p>]]></description></item>"
        )
    return _rss("Small blog", base, items)


def comments_feed(i: int) -> bytes:
    now = datetime.now(timezone.utc)
    items = [
        f"<item><title>Re</title><guid isPermaLink=\"false\">c-{i}-{j}</guid><dc:creator>Reader {j}</dc:creator>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=j))}</pubDate><description>Comment {j}</description></item>"
        for j in range(i + 2)
    ]
    return _rss("Comments", "https://comments.example/", items)


def _rss(title: str, link: str, items: list[str]) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:slash="http://purl.org/rss/1.0/modules/slash/" xmlns:wfw="http://wellformedweb.org/CommentAPI/">'
        f"<channel><title>{title}</title><link>{link}</link><description>d</description>{''.join(items)}</channel></rss>"
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", type=int, required=True, help="SQL Server version (2019, 2022; 2014 with --azure)")
    parser.add_argument("--azure", action="store_true", help="Azure SQL Database (EngineEdition 5)")
    parser.add_argument("--entries", type=int, default=2100)
    args = parser.parse_args()

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    os.environ["DATABASE_URL"] = DATABASE_URL
    os.environ.setdefault("INGEST_WORKERS", "2")
    tmp = tempfile.mkdtemp(prefix="tsql-capture-")
    shadow_path = str(Path(tmp) / "shadow.sqlite3")

    import django
    from django.conf import settings

    settings.DATABASES["shadow"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": shadow_path}
    django.setup()

    from django.core.management import call_command
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    call_command("migrate", database="shadow", verbosity=0)
    connections["shadow"].close()

    from tests.mssql import recorder

    shadow = recorder.install(shadow_path=shadow_path, alias="default", version=args.version, azure=args.azure)
    assert connections["default"].vendor == "microsoft"

    out: dict = {"target": {"version": args.version, "azure": args.azure}, "reports": {}, "migrations": {}}

    shadow.phase = "sqlmigrate"
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for app_label, name in sorted(key for key in loader.disk_migrations if key[0] == "ingest"):
        buffer = StringIO()
        call_command("sqlmigrate", app_label, name, database="default", stdout=buffer)
        out["migrations"][f"{app_label}.{name}"] = buffer.getvalue()

    from ingest import services
    from ingest.models import TechnicalArticle
    from tests.httpserver import FeedServer

    def command(name: str, *options: str) -> dict:
        buffer = StringIO()
        call_command(name, "--json", *options, stdout=buffer, stderr=StringIO())
        return json.loads(buffer.getvalue())

    with FeedServer() as server:
        base = server.base_url
        server.add("/big.rss", big_feed(base, args.entries, revision=1))
        server.add("/small.rss", small_feed(base, revision=1))
        for i in range(3):
            server.add(f"/comments/{i}.rss", comments_feed(i))
        shadow.phase = "setup"
        TechnicalArticle.objects.create(name="Big blog", feed_url=server.url("/big.rss"))
        TechnicalArticle.objects.create(name="Small blog", feed_url=server.url("/small.rss"), fetch_comments=True)

        shadow.phase = "ingest-first"
        out["reports"]["ingest-first"] = command("ingest_feeds", "--trigger", "cron")

        server.add("/big.rss", big_feed(base, args.entries, revision=2))
        server.add("/small.rss", small_feed(base, revision=2))
        shadow.phase = "ingest-changed"
        out["reports"]["ingest-changed"] = command("ingest_feeds", "--all", "--trigger", "cron")

        server.add("/small.rss", small_feed(base, revision=3))
        shadow.phase = "ingest-fanout"
        run_id, owner, claimed = services.ingest_dispatch(force=True)
        results = [services.source_ingest(source_id=pk, owner=owner, run_id=run_id) for pk in claimed]
        out["reports"]["ingest-fanout"] = {"run_id": run_id, "claimed": len(claimed),
                                           "sources": [r.as_dict() for r in results if r is not None]}

    def drift() -> int:
        """Make counters wrong behind the pipeline's back (straight into the answering database)."""
        with shadow.lock:
            db = shadow.db
            db.execute("UPDATE ingest_entry SET number_of_comments = number_of_comments + 3 WHERE id % 3 = 0")
            db.execute("UPDATE ingest_entry SET number_of_pingbacks = 0 WHERE id % 3 = 1")
            return db.execute("SELECT COUNT(*) FROM ingest_entry WHERE id % 3 IN (0, 1)").fetchone()[0]

    out["drifted"] = drift()
    shadow.phase = "recount"
    out["reports"]["recount"] = command("recompute_counts", "--trigger", "cron")
    drift()
    shadow.phase = "recount-subquery"
    out["reports"]["recount-subquery"] = services.counts_recompute(strategy="update_subquery", chunk_size=2000).as_dict()
    drift()
    shadow.phase = "recount-since"
    out["reports"]["recount-since"] = command("recompute_counts", "--since", "2020-01-01", "--chunk-size", "500")

    from django.apps import apps

    out["pk_columns"] = {m._meta.db_table: m._meta.pk.column for m in apps.get_models()}
    out["connection_strings"] = sorted(set(shadow.connection_strings))
    out["statements"] = [r.as_dict() for r in shadow.log]
    out["sql_server_version"] = connections["default"].sql_server_version
    out["to_azure_sql_db"] = connections["default"].to_azure_sql_db
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
