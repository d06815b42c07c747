"""Bench-only experiments: proposed product changes, measured before anyone makes them.

Nothing in the product imports this module, and nothing here changes the product: each experiment
is a function of its own, built from the product's public pieces, that a benchmark runs beside the
product as a separate, clearly labelled contender. Each keeps the product's contract (same rows,
same ids, same counts, same transaction), so the benchmark's checks still hold; only the way rows
reach the database changes.

The upsert's proposals measured here before (the lean existing-entries read, the ``executemany``
writes) are in the product now (``ingest.upsert``, ``ingest.db.rows_insert``).

``chunk_range_sql`` is a ``reconcile`` for ``counts_recompute(reconcile=...)``: the hand-written
UPDATE run per keyset chunk; ``python -m bench.experiments recount`` measures it beside the
strategies of ``bench/recount_strategies.py``.
"""

from __future__ import annotations

# --- recount: one set-based UPDATE per chunk (PostgreSQL) ----------------------------------------

RANGE_SQL = """
WITH c AS (SELECT entry_id, COUNT(*) AS n FROM ingest_comment WHERE entry_id > %(lo)s AND entry_id <= %(hi)s GROUP BY entry_id),
     p AS (SELECT target_id, COUNT(*) AS n FROM ingest_pingback WHERE target_id > %(lo)s AND target_id <= %(hi)s GROUP BY target_id),
     want AS (
        SELECT e.id, COALESCE(c.n, 0) AS nc, COALESCE(p.n, 0) AS np
        FROM ingest_entry e LEFT JOIN c ON c.entry_id = e.id LEFT JOIN p ON p.target_id = e.id
        WHERE e.id > %(lo)s AND e.id <= %(hi)s)
UPDATE ingest_entry e SET number_of_comments = want.nc, number_of_pingbacks = want.np
FROM want WHERE want.id = e.id AND (e.number_of_comments <> want.nc OR e.number_of_pingbacks <> want.np)
"""


def chunk_range_sql(base, *, after, size, dry_run=False):
    """The hand-written UPDATE restricted to one keyset chunk: what chunking itself costs.
    (PostgreSQL SQL, whole table only: it ignores the scope filters of ``base``.)"""
    from django.db import connection

    from ingest.counters import ChunkResult
    from ingest.db import commit_asynchronously

    if not dry_run:
        commit_asynchronously()  # as every strategy does
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*), MAX(id) FROM (SELECT id FROM ingest_entry WHERE id > %s ORDER BY id LIMIT %s) s", [after, size])
        scanned, hi = cursor.fetchone()
        if not scanned:
            return None
        if dry_run:
            return ChunkResult(scanned, 0, hi)
        cursor.execute(RANGE_SQL, {"lo": after, "hi": hi})
        return ChunkResult(scanned, cursor.rowcount, hi)


def recount_main(argv=None):
    """``bench.recount`` with the experimental strategy measured beside the product's and its alternatives."""
    from bench import recount

    return recount.main(argv, extra={"range_sql_experiment": chunk_range_sql})


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["recount"]:
        recount_main(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m bench.experiments recount [bench.recount arguments]")
