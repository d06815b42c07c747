"""Upsert benchmark: ``ingest.upsert.feed_upsert`` beside the naive ORM loop and the raw DB-API floor.

    python -m bench.upsert --sources 1000 --entries-per-source 100 --repeat 2 \
        --postgres-url postgres://postgres@127.0.0.1:5432/bench

Entries are built in memory as ``ParsedFeed`` values (no HTTP, no parsing): ``--sources`` feeds of
``--entries-per-source`` entries with ~1 KB HTML bodies and no authors (so that every contender
writes exactly the same rows). Three cases, in this order on one database:

* ``new``: every entry is new (empty database);
* ``unchanged``: the same feeds again: nothing to write;
* ``changed``: 10 % of the entries have a new body (new content hash).

Contenders, each in its own child process on a fresh copy of a migrated database with the sources
already registered:

* ``product``: ``feed_upsert`` per source inside ``ingest.retry.run_atomic`` (how the product writes:
  one transaction per source; the raw contenders do the same);
* ``naive``: ``Entry.objects.update_or_create(technical_article=..., guid=..., defaults=...)`` per
  entry, as such a loop is usually written: in autocommit, so each entry is its own transaction;
* ``naive_tx``: the same loop inside one ``transaction.atomic()`` per source (a kinder baseline).
  Both are slow, so they run on ``--naive-sample`` of the sources and their time is scaled to the
  full size (per-entry cost is flat: every entry costs the same two or three statements);
* ``executemany``: the raw floor through the DB-API cursor, committing as the product does
  (asynchronously on PostgreSQL when the product does, ``commit_asynchronously``): ``executemany`` INSERT of the same
  columns (new); a SELECT of the source's (guid, id, hash) (unchanged); that SELECT plus an
  ``executemany`` UPDATE of the changed rows (changed);
* ``copy`` (PostgreSQL, new only): psycopg 3 ``cursor.copy`` of the same rows.

Every full-size contender's final rows are fingerprinted: ``same_rows`` says they are identical.

Prints one JSON object; ``bench.run`` folds it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
from datetime import UTC, datetime, timedelta

from bench.harness import (
    child_run,
    clone,
    drop_database,
    emit,
    fresh_database,
    ratio,
    spread,
)

MODULE = "bench.upsert"
FETCHED = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CASES = ("new", "unchanged", "changed")
COLUMNS = ("technical_article_id", "guid", "headline", "body_text", "link", "link_key", "published_at", "pub_date",
           "mod_date", "content_hash", "comments_feed_url", "reported_comments", "ingested_at",
           "number_of_comments", "number_of_pingbacks", "rating", "guid_key", "updated_at")
UPDATE_COLUMNS = ("headline", "body_text", "link", "link_key", "published_at", "pub_date", "mod_date", "content_hash",
                  "comments_feed_url", "reported_comments", "updated_at")
WORDS = ["index", "query", "plan", "latency", "replica", "shard", "cache", "vacuum", "lock", "commit", "rollback", "snapshot", "cursor", "batch", "stream"]


# --- data ---------------------------------------------------------------------------------------


def make_feeds(article_ids: list[int], per_source: int, *, version: int = 0):
    """One ParsedFeed per article; with ``version`` > 0, every tenth entry has an edited body."""
    from ingest.types import ParsedEntry, ParsedFeed

    feeds = []
    for article_id in article_ids:
        rng = random.Random(article_id)
        entries = []
        for n in range(per_source):
            words = " ".join(rng.choice(WORDS) for _ in range(20))
            body = "".join(f'<p>{words} <a href="https://s{article_id}.example/p/{n - k}">earlier</a> {words}.</p>' for k in range(4))
            if version and n % 10 == 0:
                body += f"<p>Edited (v{version}).</p>"
            link = f"https://s{article_id}.example/p/{n}"
            published = FETCHED - timedelta(hours=n, minutes=article_id % 60)
            headline = f"Entry {n} of source {article_id}: {words[:60]}"
            digest = hashlib.sha256(f"{link}|{headline}|{body}|{published.isoformat()}".encode()).hexdigest()
            entries.append(ParsedEntry(guid=link, headline=headline, body_text=body, link=link, published_at=published,
                                       updated_at=None, comments_feed_url=link + "/feed/", reported_comments=n % 7,
                                       content_hash=digest))
        feeds.append((article_id, ParsedFeed(title=f"Source {article_id}", site_url="", tagline="", entries=tuple(entries))))
    return feeds


def _row_values(article_id, entry, ops, link_key, local_date):
    """The values ``ingest.upsert._entry_values`` stores, adapted for the driver as the ORM would."""
    from ingest.identity import guid_key

    published = entry.published_at or FETCHED
    return (article_id, entry.guid, entry.headline, entry.body_text, entry.link, link_key(entry.link),
            ops.adapt_datetimefield_value(published), ops.adapt_datefield_value(local_date(published)),
            ops.adapt_datefield_value(local_date(entry.updated_at or FETCHED)), entry.content_hash,
            entry.comments_feed_url, entry.reported_comments, ops.adapt_datetimefield_value(FETCHED), 0, 0, 5,
            guid_key(entry.guid), ops.adapt_datetimefield_value(FETCHED))


# --- contenders (each: one call per source, inside one transaction) ----------------------------


def run_product(feeds, case):
    """``feed_upsert`` per source in ``run_atomic``."""
    from ingest.retry import run_atomic
    from ingest.upsert import feed_upsert

    counts = [0, 0, 0]
    for article_id, feed in feeds:
        result = run_atomic(lambda a=article_id, f=feed: feed_upsert(article_id=a, feed=f, fetched_at=FETCHED), label="bench")
        counts[0] += result.created
        counts[1] += result.updated
        counts[2] += result.unchanged
    return counts


def run_naive(feeds, case, *, per_source_transaction=False):
    from contextlib import nullcontext

    from django.db import transaction
    from django.utils import timezone as djtz

    from ingest.models import Entry
    from ingest.links import link_key

    counts = [0, 0, 0]
    for article_id, feed in feeds:
        with transaction.atomic() if per_source_transaction else nullcontext():
            for e in feed.entries:
                published = e.published_at or FETCHED
                _, created = Entry.objects.update_or_create(
                    technical_article_id=article_id, guid=e.guid,
                    defaults={"headline": e.headline, "body_text": e.body_text, "link": e.link, "link_key": link_key(e.link),
                              "published_at": published, "pub_date": djtz.localtime(published).date(),
                              "mod_date": djtz.localtime(e.updated_at or FETCHED).date(), "content_hash": e.content_hash,
                              "comments_feed_url": e.comments_feed_url, "reported_comments": e.reported_comments,
                              "ingested_at": FETCHED, "updated_at": FETCHED})
                counts[0 if created else 1] += 1
    return counts


def _same_commit_mode() -> None:
    """The floor commits as the product does (asynchronously on PostgreSQL, when the product does)."""
    from ingest.db import commit_asynchronously

    commit_asynchronously()


def _raw_cursor():
    from django.db import connection

    connection.ensure_connection()
    placeholder = "?" if connection.vendor == "sqlite" else "%s"
    return connection.connection.cursor(), placeholder, connection.ops


def run_executemany(feeds, case):
    from django.db import transaction
    from django.utils import timezone as djtz

    from ingest.links import link_key

    cur, p, ops = _raw_cursor()
    local_date = lambda moment: djtz.localtime(moment).date()
    insert = f"INSERT INTO ingest_entry ({', '.join(COLUMNS)}) VALUES ({', '.join([p] * len(COLUMNS))})"
    update = f"UPDATE ingest_entry SET {', '.join(f'{c} = {p}' for c in UPDATE_COLUMNS)} WHERE id = {p}"
    select = f"SELECT guid, id, content_hash FROM ingest_entry WHERE technical_article_id = {p}"
    counts = [0, 0, 0]
    for article_id, feed in feeds:
        with transaction.atomic():
            _same_commit_mode()
            if case == "new":
                cur.executemany(insert, [_row_values(article_id, e, ops, link_key, local_date) for e in feed.entries])
                counts[0] += len(feed.entries)
                continue
            cur.execute(select, (article_id,))
            existing = {guid: (pk, digest) for guid, pk, digest in cur.fetchall()}
            rows = []
            for e in feed.entries:
                pk, digest = existing[e.guid]
                if digest != e.content_hash:
                    values = _row_values(article_id, e, ops, link_key, local_date)
                    rows.append((*values[2:12], values[-1], pk))
            if rows:
                cur.executemany(update, rows)
            counts[1] += len(rows)
            counts[2] += len(feed.entries) - len(rows)
    return counts


def run_copy(feeds, case):
    from django.db import transaction
    from django.utils import timezone as djtz

    from ingest.links import link_key

    if case != "new":
        return None
    cur, _, ops = _raw_cursor()
    local_date = lambda moment: djtz.localtime(moment).date()
    sql = f"COPY ingest_entry ({', '.join(COLUMNS)}) FROM STDIN"
    for article_id, feed in feeds:
        with transaction.atomic():
            _same_commit_mode()
            with cur.copy(sql) as copy:
                for e in feed.entries:
                    copy.write_row(_row_values(article_id, e, ops, link_key, local_date))
    return [sum(len(f.entries) for _, f in feeds), 0, 0]


def run_naive_tx(feeds, case):
    return run_naive(feeds, case, per_source_transaction=True)


CONTENDERS = {"product": run_product, "naive": run_naive, "naive_tx": run_naive_tx, "executemany": run_executemany,
              "copy": run_copy}


# --- children -----------------------------------------------------------------------------------


def child_prepare(args) -> dict:
    from bench.common import django_setup, migrate

    django_setup(args.db)
    from ingest.models import TechnicalArticle

    migrate()
    TechnicalArticle.objects.bulk_create(
        [TechnicalArticle(name=f"Source {n}", feed_url=f"https://s{n}.example/feed") for n in range(args.sources)], batch_size=500)
    return {"sources": TechnicalArticle.objects.count()}


def child_measure(args) -> dict:
    from bench.common import django_setup

    django_setup(args.db)
    from django.db import connection

    from ingest.models import Entry, TechnicalArticle

    ids = sorted(TechnicalArticle.objects.values_list("pk", flat=True))
    if args.fraction < 1:
        ids = ids[: max(1, round(len(ids) * args.fraction))]
    feeds = {"new": make_feeds(ids, args.entries_per_source), "changed": make_feeds(ids, args.entries_per_source, version=1)}
    feeds["unchanged"] = feeds["new"]
    run = CONTENDERS[args.contender]
    connection.ensure_connection()
    out: dict = {"entries": len(ids) * args.entries_per_source, "sources": len(ids), "fraction": args.fraction}
    for case in CASES:
        start = time.perf_counter()
        counts = run(feeds[case], case)
        wall = time.perf_counter() - start
        if counts is None:
            continue  # this contender does not do this case (COPY only inserts)
        out[case] = {"wall_s": round(wall, 4), "created": counts[0], "updated": counts[1], "unchanged": counts[2],
                     "rows": Entry.objects.count()}
    out["fingerprint"] = fingerprint()
    return out


def fingerprint() -> str:
    """A hash of every stored entry value the contenders write: equal fingerprints, same rows."""
    from ingest.models import Entry

    digest = hashlib.sha256()
    fields = ("technical_article_id", "guid", "headline", "body_text", "link", "link_key", "published_at", "pub_date", "mod_date",
              "content_hash", "comments_feed_url", "reported_comments", "ingested_at", "number_of_comments", "number_of_pingbacks", "rating")
    for row in Entry.objects.order_by("technical_article_id", "guid").values_list(*fields).iterator(chunk_size=2000):
        digest.update(repr(row).encode())
    return digest.hexdigest()[:16]


# --- parent -------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--entries-per-source", type=int, default=100)
    parser.add_argument("--naive-sample", type=float, default=0.1, help="fraction of the sources the naive loop runs on")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also profile the product contender with py-spy")
    parser.add_argument("--child", choices=("prepare", "measure"))
    parser.add_argument("--db")
    parser.add_argument("--contender", choices=sorted(CONTENDERS))
    parser.add_argument("--fraction", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.child == "prepare":
        return emit(child_prepare(args))
    if args.child == "measure":
        return emit(child_measure(args))

    backends = ([] if args.no_sqlite else ["sqlite"]) + (["postgres"] if args.postgres_url else [])
    size = ["--sources", str(args.sources), "--entries-per-source", str(args.entries_per_source)]
    results: dict = {"sources": args.sources, "entries_per_source": args.entries_per_source,
                     "entries": args.sources * args.entries_per_source, "naive_sample": args.naive_sample,
                     "repeat": args.repeat, "backends": {}}
    for backend in backends:
        template = fresh_database(backend, "bench_upsert_template", args.postgres_url)
        child_run(MODULE, ["--child", "prepare", "--db", template, *size], log="upsert")
        contenders = ["product", "executemany", "naive", "naive_tx"] + (["copy"] if backend == "postgres" else [])
        runs: dict[str, list[dict]] = {}
        for _ in range(args.repeat):
            for contender in contenders:  # interleaved: a noisy minute hurts every contender alike
                db = clone(template, backend, f"bench_upsert_{backend}")
                fraction = args.naive_sample if contender.startswith("naive") else 1.0
                runs.setdefault(contender, []).append(child_run(
                    MODULE, ["--child", "measure", "--db", db, "--contender", contender, "--fraction", str(fraction), *size],
                    log="upsert"))
                drop_database(db)
        if args.profile:
            from bench.profile import profile_child

            db = clone(template, backend, f"bench_upsert_{backend}")
            _, profile = profile_child(MODULE, ["--child", "measure", "--db", db, "--contender", "product", *size], anchor="feed_upsert")
            results.setdefault("profile", {})[backend] = profile
            drop_database(db)
        drop_database(template)
        table: dict = {}
        for contender, reps in runs.items():
            scale = results["entries"] / reps[0]["entries"]
            table[contender] = {"measured_entries": reps[0]["entries"], "scaled_by": round(scale, 2),
                                "fingerprint": reps[-1]["fingerprint"]}
            for case in CASES:
                if case in reps[0]:
                    walls = [r[case]["wall_s"] * scale for r in reps]
                    table[contender][case] = {"wall_s": spread(walls), "rows_per_s": round(results["entries"] / spread(walls)["median"]),
                                              **{k: reps[-1][case][k] for k in ("created", "updated", "unchanged", "rows")}}
        for case in CASES:
            floors = {name: table[name][case]["wall_s"]["median"] for name in ("executemany", "copy") if case in table.get(name, {})}
            for name in ("product",):
                mine = table[name][case]["wall_s"]["median"]
                table[name][case]["speedup_vs_naive"] = ratio(table["naive"][case]["wall_s"]["median"], mine)
                table[name][case]["speedup_vs_naive_tx"] = ratio(table["naive_tx"][case]["wall_s"]["median"], mine)
                table[name][case]["vs_executemany"] = ratio(mine, floors.get("executemany"))
                if "copy" in floors:
                    table[name][case]["vs_copy"] = ratio(mine, floors["copy"])
                table[name][case]["vs_floor"] = ratio(mine, min(floors.values()))
            table["executemany"][case]["speedup_vs_naive"] = ratio(table["naive"][case]["wall_s"]["median"], floors["executemany"])
            table["executemany"][case]["speedup_vs_naive_tx"] = ratio(table["naive_tx"][case]["wall_s"]["median"], floors["executemany"])
        full = {name: v["fingerprint"] for name, v in table.items() if v["scaled_by"] == 1 and "changed" in v}
        table["same_rows"] = len(set(full.values())) == 1  # every full-size contender stored identical rows
        results["backends"][backend] = table
    return emit(results)


if __name__ == "__main__":
    main()
