"""Recount benchmark: ``recompute_counts`` strategies beside one hand-written set-based UPDATE.

    python -m bench.recount --database-url postgres://postgres@127.0.0.1:5432/bench_recount \
        --entries 1000000 --comments 3000000 --drift 0.1 --repeat 3 [--strategies set_based,range_aggregate]

Creates (drops first) the named PostgreSQL database, fills it with generate_series, then for each
repetition drifts the same counters (a fixed ``--drift`` fraction) and measures:

* each strategy of ``bench/recount_strategies.py`` (the product's ``set_based`` among them),
  passed to ``counts_recompute(reconcile=...)``, and those ``main(argv, extra=...)`` adds
  (``bench/experiments.py`` adds one); ``--strategies`` names the ones to measure (default: all);
* ``hand_sql``: one hand-written UPDATE ... FROM (GROUP BY) over the whole table, the floor
  (always measured); ``hand_sql_updated_at``: the same statement also setting ``updated_at`` as
  the product must (the API's ``updated_since``), which makes every write touch that index;
* ``no_drift``: the kept strategy on already-correct counters, which must write 0 rows (when the
  kept strategy is among those measured).

Each gets its wall time and ``cpu_s``, this process's CPU seconds (``time.process_time``): what
the client spends building, sending and reading statements. The database server's CPU runs in
other processes and is not in it; wall minus cpu_s is roughly the time spent waiting on the server.

Prints one JSON object; ``bench/run.py`` folds it into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import django_setup, migrate, postgres_create, summary

HAND_SQL = """
WITH c AS (SELECT entry_id, COUNT(*) AS n FROM ingest_comment GROUP BY entry_id),
     p AS (SELECT target_id, COUNT(*) AS n FROM ingest_pingback GROUP BY target_id),
     want AS (
        SELECT e.id, COALESCE(c.n, 0) AS nc, COALESCE(p.n, 0) AS np
        FROM ingest_entry e LEFT JOIN c ON c.entry_id = e.id LEFT JOIN p ON p.target_id = e.id)
UPDATE ingest_entry e SET number_of_comments = want.nc, number_of_pingbacks = want.np
FROM want WHERE want.id = e.id AND (e.number_of_comments <> want.nc OR e.number_of_pingbacks <> want.np)
"""
HAND_SQL_UPDATED_AT = HAND_SQL.replace("number_of_pingbacks = want.np\n", "number_of_pingbacks = want.np, updated_at = now()\n")
assert HAND_SQL_UPDATED_AT != HAND_SQL


def fill(entries: int, comments: int) -> None:
    from django.db import connection

    from ingest.models import TechnicalArticle

    # The source through the ORM (its defaults follow the model); identity keys as ingest.identity
    # computes them: sha256 hex of the (ASCII, already normal) text.
    article = TechnicalArticle.objects.create(name="bench", feed_url="https://bench.example/feed").pk
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO ingest_entry (technical_article_id, headline, body_text, pub_date, mod_date, number_of_comments, "
            "number_of_pingbacks, rating, guid, guid_key, link, link_key, published_at, content_hash, comments_feed_url, ingested_at, "
            "updated_at) "
            "SELECT %s, 'h' || g, '', current_date, current_date, 0, 0, 5, 'g' || g, "
            "encode(sha256(convert_to('g' || g, 'UTF8')), 'hex'), '', '', now(), '', '', now(), now() "
            "FROM generate_series(1, %s) g", [article, entries])
        cur.execute("SELECT min(id) FROM ingest_entry")
        first = cur.fetchone()[0]
        # Skewed: comments land on entries by a hash of g, so counts vary from 0 to several.
        cur.execute(
            "INSERT INTO ingest_comment (entry_id, guid, guid_key, author_name, author_email, body, published_at, created_at) "
            "SELECT %s + (hashint4(g) & 2147483647) %% %s, 'c' || g, encode(sha256(convert_to('c' || g, 'UTF8')), 'hex'), "
            "'r', '', '', now(), now() FROM generate_series(1, %s) g",
            [first, entries, comments])
        cur.execute(
            "INSERT INTO ingest_pingback (target_id, source_url, source_key, created_at) "
            "SELECT %s + (hashint4(-g) & 2147483647) %% %s, 'https://s.example/' || g, "
            "encode(sha256(convert_to('https://s.example/' || g, 'UTF8')), 'hex'), now() FROM generate_series(1, %s) g",
            [first, entries, entries // 3])
        cur.execute(HAND_SQL)  # start from correct counters
        cur.execute("VACUUM ANALYZE")


def drift(fraction: float) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("UPDATE ingest_entry SET number_of_comments = number_of_comments + 1 WHERE (hashint4(id::int) & 2147483647) %% 1000 < %s",
                    [int(fraction * 1000)])


def timed_cpu(fn, repeat: int, setup=None) -> dict:
    """``summary`` of the wall times, with ``cpu_s``: the median of this process's CPU seconds
    (the database server's CPU is not visible from here)."""
    walls, cpus = [], []
    for _ in range(repeat):
        if setup:
            setup()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return summary(walls) | {"cpu_s": round(statistics.median(cpus), 4)}


def main(argv=None, extra: dict | None = None) -> dict:
    """Measure ``recount_strategies.STRATEGIES`` and ``extra`` (name -> reconcile) beside the floor."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_recount")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--comments", type=int, default=3_000_000)
    parser.add_argument("--drift", type=float, default=0.1)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--strategies", default="", help="comma-separated strategies to measure (default: all)")
    args = parser.parse_args(argv)

    django_setup(postgres_create(args.database_url))
    from django.db import connection, transaction

    from bench import recount_strategies
    from ingest import counters
    from ingest.services.recount import counts_recompute

    strategies = {**recount_strategies.STRATEGIES, **(extra or {})}
    if args.strategies:
        wanted = [name.strip() for name in args.strategies.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(strategies))
        if unknown:
            raise SystemExit(f"unknown strategy(ies) {', '.join(unknown)}; choose among {', '.join(strategies)}")
        strategies = {name: strategies[name] for name in wanted}

    migrate()
    fill(args.entries, args.comments)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE")
    results: dict = {"entries": args.entries, "comments": args.comments, "drift": args.drift, "chunk_size": args.chunk_size}
    changed: dict[str, int] = {}

    def strategy(name):
        def run():
            changed[name] = counts_recompute(chunk_size=args.chunk_size, reconcile=strategies[name]).changed
        return run

    def hand(name, sql):
        def run():
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(sql)
                changed[name] = cur.rowcount
        return run

    setup = lambda: drift(args.drift)  # noqa: E731
    floors = [("hand_sql", hand("hand_sql", HAND_SQL)), ("hand_sql_updated_at", hand("hand_sql_updated_at", HAND_SQL_UPDATED_AT))]
    for name, fn in [(name, strategy(name)) for name in strategies] + floors:
        results[name] = timed_cpu(fn, args.repeat, setup) | {"changed": changed[name]}
    results["kept"] = counters.STRATEGY
    if counters.STRATEGY in strategies:
        results["no_drift"] = timed_cpu(strategy(counters.STRATEGY), args.repeat) | {"changed": changed[counters.STRATEGY]}
        results["ratio_kept_vs_hand_sql"] = round(results[counters.STRATEGY]["median_s"] / results["hand_sql"]["median_s"], 2)
        results["ratio_kept_vs_hand_sql_updated_at"] = round(
            results[counters.STRATEGY]["median_s"] / results["hand_sql_updated_at"]["median_s"], 2)
    results["ratios_vs_hand_sql"] = {
        name: round(results[name]["median_s"] / results["hand_sql"]["median_s"], 2) for name in strategies}
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
