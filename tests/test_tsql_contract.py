"""SQL Server readiness without a SQL Server: settings, and the T-SQL the pipeline really sends.

``tests/mssql/capture.py`` runs the real commands and services on mssql-django with a recording
connection in place of the ODBC driver (answers come from a SQLite copy of the schema, see
``tests/mssql/recorder.py``), as SQL Server 2019, 2022 and 2025 and as Azure SQL. Every batch, as
sent, is held to the contract of ``tests/mssql/contract.py``:

* it is T-SQL: sqlfluff's ``tsql`` grammar parses it, and it has none of the other dialects' syntax
  that grammar lets through (LIMIT, RETURNING, ON CONFLICT, TRUE/FALSE, UPDATE ... JOIN, OFFSET
  without ORDER BY ... ROWS, ...);
* at most 2,050 parameters (mssql-django's own bound under SQL Server's 2,100), exactly as many
  '?' as parameters bound, at most 1,000 rows in a VALUES list, CASE nested at most 10 deep, at
  most 1,000 WHEN branches, and no ``#Temp_params`` spill;
* an UPDATE or DELETE names its rows by primary key (read by sqlglot), at most 5,000 of them (lock
  escalation);
* every migration's ``sqlmigrate`` output passes the same checks, and every index key fits in
  1,700 bytes.

The checker is itself tested on a corpus (``tests/mssql/corpus``): statements SQL Server rejects,
each of which it must reject for the stated reason, and real mssql-django batches it must accept.

What this cannot show (a real server's plans, locking, error numbers, the ODBC driver itself) is
listed in docs/sqlserver.md.
"""

import json
import os
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.mssql import contract, corpus, require_pyodbc, tsql

pytestmark = pytest.mark.nodb
ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("sqlserver-2019", "sqlserver-2022", "sqlserver-2025", "azure-sql")
MAX_PARAMS = contract.MAX_PARAMS  # 2,050
MAX_ROWS_PER_WRITE = contract.MAX_ROWS_PER_WRITE
MAX_VALUES_ROWS = contract.MAX_VALUES_ROWS
MAX_IN_LIST_DELETE = 1000  # ingest.services.delete: ids per statement
ENTRIES = 2100  # > 2,000, so the existing-entries read splits its IN list


def _clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CONN_"))}
    return {**env, **extra}


@cache
def _capture() -> dict:
    result = subprocess.run([sys.executable, "-m", "tests.mssql.capture", "--entries", str(ENTRIES)], cwd=ROOT,
                            env=_clean_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-6000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def capture() -> dict:
    require_pyodbc()
    return _capture()


def batches(capture: dict, target: str, *, phases: tuple[str, ...] = ()):
    """(recorded execution, its SQL text, analysis) for every batch the target sent."""
    for statement in capture["targets"][target]["statements"]:
        if phases and statement["phase"] not in phases:
            continue
        index = statement["sql"]
        yield statement, capture["sql"][index], capture["analysis"][index]


def where(batch: tuple, *, kind: str, table: str, text: str = "") -> bool:
    """Whether the batch has a ``kind`` statement on ``table`` whose start contains ``text``."""
    return any(
        s["type"] == kind and (s.get("table") == table if kind != "Select" else f"[{table}]" in s["text"]) and text in s["text"]
        for s in batch[2]["statements"]
    )


# --- The capture is a real run --------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_the_pipeline_really_ran_on_the_mssql_backend(capture, target):
    result = capture["targets"][target]
    version, azure = {"sqlserver-2019": (2019, False), "sqlserver-2022": (2022, False), "sqlserver-2025": (2025, False),
                      "azure-sql": (2014, True)}[target]
    assert (result["sql_server_version"], result["to_azure_sql_db"]) == (version, azure)
    [connection_string] = result["connection_strings"]
    assert connection_string.startswith("DRIVER=ODBC Driver 18 for SQL Server;SERVER=sql.test.invalid,1433;")
    assert "Encrypt=yes;TrustServerCertificate=no" in connection_string and "PWD=***" in connection_string

    reports = result["reports"]
    first, changed = reports["ingest-first"], reports["ingest-changed"]
    assert first["status"] == "succeeded" and first["totals"]["created"] == ENTRIES + 3
    assert first["totals"]["pingbacks"] >= ENTRIES - 1  # every big post links to the one before it
    assert first["comments"]["created"] == 9  # three comment feeds: 2 + 3 + 4 comments
    big = next(s for s in changed["sources"] if s["id"] == result["big_source"])
    edited = len(range(0, ENTRIES, 8))
    assert (big["updated"], big["unchanged"], big["created"]) == (edited, ENTRIES - edited, 0)
    assert reports["ingest-fanout"]["sources"][0]["outcome"] == "updated"
    recounts = {name: r for name, r in reports.items() if name.startswith("recount")}
    assert len(recounts) >= 3
    for name, report in recounts.items():
        assert report["status"] == "succeeded", name
        if name == "recount-since":  # only entries with comments or pingbacks: a subset
            missed = result["entries"] - report["scanned"]
            assert result["drifted"] - missed <= report["changed"] <= result["drifted"], name
        else:
            assert report["changed"] == result["drifted"], f"{name} did not repair exactly the drifted counters"
    assert result["entries"] == ENTRIES + 3
    assert {status for _, status in result["runs"]} == {"succeeded"}


@pytest.mark.parametrize("target", TARGETS)
def test_the_capture_has_every_statement_the_pipeline_depends_on(capture, target):
    ingest = ("ingest-first", "ingest-changed", "ingest-fanout")
    found = list(batches(capture, target, phases=ingest))
    count = lambda **kw: sum(1 for batch in found if where(batch, **kw))  # noqa: E731
    assert count(kind="Select", table="ingest_entry", text="[guid_key] IN (") >= 2, "existing-entries read, split"
    assert count(kind="Insert", table="ingest_entry") >= 2, "bulk_create of entries, in batches"
    assert count(kind="Update", table="ingest_entry", text="SET [headline] = CASE") >= 2, "bulk_update, in batches"
    assert count(kind="Insert", table="ingest_entry_authors") >= 1, "author links"
    assert count(kind="Delete", table="ingest_entry_authors") >= 1, "stale author links removed"
    assert count(kind="Insert", table="ingest_author") >= 1
    assert count(kind="Update", table="ingest_technicalarticle", text="[lease_owner]") >= 1, "lease claim"
    assert count(kind="Insert", table="ingest_pingback") >= 1
    assert count(kind="Insert", table="ingest_comment") >= 1
    assert count(kind="Insert", table="ingest_enclosure") >= 2, "enclosures of new entries, in batches"
    assert count(kind="Select", table="ingest_enclosure", text="[entry_id] IN (") >= 1, "changed entries' enclosures read"
    assert count(kind="Delete", table="ingest_enclosure") >= 1, "replaced enclosures removed"
    recount = list(batches(capture, target, phases=tuple(p for p in capture["targets"][target]["reports"] if p.startswith("recount"))))
    assert sum(1 for b in recount if where(b, kind="Update", table="ingest_entry", text="[number_of_comments]")) >= 3, \
        "counter updates"


@pytest.mark.parametrize("target", TARGETS)
def test_a_first_ingest_writes_rows_in_multi_row_inserts_and_reads_nothing_of_its_new_entries(capture, target):
    """The cursor's rows (ingest.db.rows_insert) are multi-row VALUES on SQL Server, and the links and
    pingbacks of entries created in the same transaction are never read (they cannot exist yet)."""
    found = list(batches(capture, target, phases=("ingest-first",)))
    count = lambda **kw: sum(1 for batch in found if where(batch, **kw))  # noqa: E731
    for table in ("ingest_entry", "ingest_entrylink", "ingest_pingback", "ingest_entry_authors", "ingest_author"):
        inserts = [b for b in found if where(b, kind="Insert", table=table)]
        assert inserts, table
        assert not any(b[0].get("many") for b in inserts), f"{table}: an executemany is a round trip per row on pyodbc"
    assert max(part["rows"] for _, _, analysis in found for part in analysis["statements"]
               if part["type"] == "Insert" and part.get("table") == "ingest_entrylink") > 50
    assert count(kind="Select", table="ingest_entrylink", text="[entry_id] IN (") == 0, "links of new entries read"
    assert count(kind="Select", table="ingest_pingback", text="[target_id] IN (") == 0, "pingbacks of new entries read"


@pytest.mark.parametrize("target", TARGETS)
def test_a_metrics_scrape_is_six_selects_and_counts_what_the_runs_did(capture, target):
    found = list(batches(capture, target, phases=("metrics-scrape",)))
    kinds = [analysis["statements"][-1]["type"] for _, _, analysis in found]
    assert kinds == ["Select"] * 6, kinds  # whatever the number of sources: GROUP BYs and one aggregate
    assert any("DATEDIFF_BIG(microsecond" in sql for _, sql, _ in found), "run durations in T-SQL's own arithmetic"
    scrape = capture["targets"][target]["reports"]["metrics-scrape"]
    created = re.search(r'pipeline_entries_total\{change="created",command="ingest_feeds"\} (\S+)', scrape)
    assert created and float(created.group(1)) == ENTRIES + 3  # first ingest; the changed and fan-out runs add none
    assert 'pipeline_run_duration_seconds_bucket{command="ingest_feeds",le="+Inf"} 3.0' in scrape


@pytest.mark.parametrize("target", TARGETS)
def test_export_opml_reads_the_sources_in_one_select(capture, target):
    assert capture["targets"][target]["reports"]["export-opml"]["sources"] == 2
    found = list(batches(capture, target, phases=("export-opml",)))
    assert [where(b, kind="Select", table="ingest_technicalarticle") for b in found] == [True]


# --- The contract ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_batch_passes_the_contract(capture, target):
    problems = {}
    for statement, sql, _ in batches(capture, target):
        found = contract.check(sql, params=statement["params"])
        if found:
            problems[f"{statement['phase']}: {sql[:200]}"] = [str(p) for p in found]
    assert not problems, json.dumps(problems, indent=1)


@pytest.mark.parametrize("target", TARGETS)
def test_at_most_2050_parameters_and_the_largest_come_close(capture, target):
    worst = max(batches(capture, target), key=lambda b: b[0]["params"])
    assert worst[0]["params"] <= MAX_PARAMS, f"{worst[0]['params']} parameters ({worst[0]['phase']}): {worst[1][:200]}"
    for statement, sql, analysis in batches(capture, target):
        assert statement["params"] == analysis["placeholders"] == contract.placeholder_count(sql), sql[:200]
    # The largest statements come close, so the batching arithmetic is really exercised.
    assert worst[0]["params"] > 1500


@pytest.mark.parametrize("target", TARGETS[:1])
def test_bulk_update_branches_are_what_the_batch_arithmetic_predicts(capture, target):
    """The widest bulk_update (the changed entries: up to 10 fields) stays at mssql-django's batch
    size, and no statement comes near MAX_WHEN_PER_STATEMENT."""
    branches = {}
    for statement, sql, _ in batches(capture, target):
        if sql.startswith("SET NOCOUNT OFF; UPDATE") and " CASE WHEN " in sql:
            fields = sql.split(" WHERE ")[0].count(" = CASE ")
            whens = sum(1 for t in contract.tokens(sql) if t.word == "WHEN")
            branches[fields] = max(branches.get(fields, 0), whens)
            assert whens <= contract.bulk_update_when_bound(fields), (fields, whens)
    assert branches and max(branches.values()) <= contract.MAX_WHEN_PER_STATEMENT
    assert max(contract.bulk_update_when_bound(f) for f in range(1, 2049)) == contract.MAX_WHEN_PER_STATEMENT - 1
    assert contract.bulk_update_when_bound(10) == 850


@pytest.mark.parametrize("target", TARGETS)
def test_updates_and_deletes_touch_at_most_5000_rows_by_primary_key(capture, target):
    checked = 0
    for statement, sql, analysis in batches(capture, target):
        for part in analysis["statements"]:
            if part["type"] in ("Update", "Delete"):
                checked += 1
                bound = part["row_bound"]
                assert bound is not None, f"{part['type']} not bounded by primary key ({statement['phase']}): {part['text']}"
                assert bound <= MAX_ROWS_PER_WRITE, f"{bound} rows ({statement['phase']}): {part['text']}"
                assert statement["rowcount"] <= bound
    assert checked, "no UPDATE or DELETE was captured: nothing was checked"


@pytest.mark.parametrize("target", TARGETS)
def test_the_recount_is_one_set_based_update_per_chunk_bounded_by_its_top(capture, target):
    """``recompute_counts`` on mssql-django: per chunk a bounds read and one ``UPDATE [ingest_entry]
    ... FROM [ingest_entry] INNER JOIN (SELECT TOP 1000 ...)``, whose rows the TOP bounds."""
    report = capture["targets"][target]["reports"]["recount"]
    found = list(batches(capture, target, phases=("recount",)))
    updates = [(statement, sql, analysis) for statement, sql, analysis in found
               if where((statement, sql, analysis), kind="Update", table="ingest_entry")]
    assert len(updates) == report["chunks"] == 3  # 2,103 entries, chunks of 1,000: every chunk drifted
    for statement, sql, analysis in updates:
        assert "SET NOCOUNT OFF; UPDATE [ingest_entry] SET [number_of_comments] = " in sql
        assert "FROM [ingest_entry] INNER JOIN (SELECT " in sql and "TOP 1000 " in sql and " GROUP BY " in sql
        [update] = [part for part in analysis["statements"] if part["type"] == "Update"]
        assert update["row_bound"] == 1000 and 0 < statement["rowcount"] <= 1000
        assert statement["params"] <= 10
    assert sum(statement["rowcount"] for statement, _, _ in updates) == report["changed"]


def test_a_derived_table_bounds_an_update_only_through_its_top_and_key_joins():
    bounded = ("UPDATE [t] SET [a] = [s].[n] FROM [t] INNER JOIN (SELECT [e].[k] AS [id], [c].[n] AS [n] FROM "
               "(SELECT TOP 1000 [t].[id] AS [k] FROM [t] ORDER BY [t].[id] ASC) [e] LEFT JOIN "
               "(SELECT [u].[t_id] AS [k], COUNT_BIG(*) AS [n] FROM [u] GROUP BY [u].[t_id]) [c] ON [c].[k] = [e].[k]) [s] "
               "ON [t].[id] = [s].[id] WHERE [t].[a] <> [s].[n]")
    [update] = tsql.parse_batch(bounded)
    assert tsql.row_bound(update.tree, "id") == 1000
    # No TOP; joins that can repeat rows (grouped by another column, or met on another column than
    # the GROUP BY key); the target joined on another column than its primary key.
    for changed in (bounded.replace("TOP 1000 ", ""), bounded.replace("GROUP BY [u].[t_id]", "GROUP BY [u].[id]"),
                    bounded.replace("ON [c].[k] = [e].[k]", "ON [c].[n] = [e].[k]"),
                    bounded.replace("ON [t].[id] = [s].[id]", "ON [t].[a] = [s].[id]")):
        [update] = tsql.parse_batch(changed)
        assert tsql.row_bound(update.tree, "id") is None, changed


@pytest.mark.parametrize("target", TARGETS)
def test_inserts_carry_at_most_1000_rows(capture, target):
    largest = 0
    for statement, sql, analysis in batches(capture, target):
        for part in analysis["statements"]:
            if part["type"] == "Insert":
                assert part["rows"] <= MAX_VALUES_ROWS, f"{part['rows']} rows: {part['text']}"
                largest = max(largest, part["rows"])
    assert largest > 50  # bulk batches were captured, not only single-row inserts


# Above 2,048 ids in one IN list, mssql-django rewrites it into CREATE TABLE #Temp_params + INSERTs
# inside the transaction; the pipeline must keep every IN list below that.
@pytest.mark.parametrize("target", TARGETS)
def test_no_in_list_spills_into_a_temp_table(capture, target):
    spilled = [s["phase"] for s, sql, _ in batches(capture, target) if "#temp_params" in sql.lower()]
    assert not spilled


# --- Deleting sources of more than 2,048 entries (ingest.services.delete) -------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_duplicates_across_feeds_are_marked_repaired_and_deleted_in_bounded_statements(capture, target):
    dedup = capture["targets"][target]["dedup"]
    assert dedup["ingest"]["status"] == "succeeded" and dedup["marked"] == ENTRIES
    assert dedup["recount"]["duplicates_changed"] == 0  # the store marked them right
    assert dedup["delete"]["deleted"]["ingest.Entry"] == ENTRIES
    found = list(batches(capture, target, phases=("dedup-ingest", "dedup-recount", "dedup-delete")))
    assert any(where(batch, kind="Update", table="ingest_entry") and "duplicate_of_id" in batch[1] for batch in found)
    for statement, sql, _ in found:
        assert statement["params"] <= MAX_PARAMS, f"{statement['params']} parameters: {sql[:200]}"
        assert not contract.check(sql, params=statement["params"]), sql[:200]


@pytest.mark.parametrize("target", TARGETS)
def test_deleting_big_sources_in_the_admin_and_the_command_is_bounded(capture, target):
    result = capture["targets"][target]
    deletes = result["deletes"]
    assert deletes["big_entries"] > 2048 and deletes["copy_entries"] > 2048
    assert deletes["confirm_status"] == 200 and deletes["confirm_page_entries"]  # counted on the page
    assert deletes["admin_status"] == 302
    before, after_admin, after = deletes["before"], deletes["after_admin"], deletes["after"]
    assert after_admin["ingest_technicalarticle"] == before["ingest_technicalarticle"] - 1
    assert after_admin["ingest_entry"] == before["ingest_entry"] - deletes["big_entries"]
    report = deletes["report"]
    assert report["status"] == "deleted" and report["chunks"] == 3
    assert report["deleted"]["ingest.Entry"] == deletes["copy_entries"]
    assert report["deleted"]["ingest.Comment"] == 2 * deletes["copy_entries"]
    assert after["ingest_entry"] == 3 and after["ingest_technicalarticle"] == 1  # the small source stays
    assert before["ingest_enclosure"] > 2048 and after["ingest_enclosure"] == 0  # the small source has none
    phases = ("delete-admin-confirm", "delete-admin", "delete-source")
    found = list(batches(capture, target, phases=phases))
    assert {statement["phase"] for statement, _, _ in found} == set(phases)
    for statement, sql, _ in found:
        assert statement["params"] <= MAX_IN_LIST_DELETE + 1, f"{statement['params']} parameters: {sql[:200]}"
        assert not contract.check(sql, params=statement["params"]), sql[:200]
    writes = [(statement, part) for statement, _, analysis in found for part in analysis["statements"]
              if part["type"] in ("Update", "Delete")]
    assert max(statement["rowcount"] for statement, _ in writes) <= MAX_IN_LIST_DELETE
    assert max(statement["params"] for statement, _, _ in found) == MAX_IN_LIST_DELETE  # full chunks were sent


# --- Retention: prune_entries and its tombstones (ingest.services.retention) ---------------------

RETENTION_PHASES = ("prune-entries-dry-run", "prune-entries", "prune-entries-reingest", "prune-entries-feed-dropped",
                    "prune-entries-delete-source")


@pytest.mark.parametrize("target", TARGETS)
def test_pruning_a_big_source_and_its_tombstones_is_bounded(capture, target):
    retention = capture["targets"][target]["retention"]
    entries, kept = retention["entries"], 100
    assert entries > 2048
    assert retention["dry_run"]["entries"] == 0 and retention["dry_run"]["kept_discussed"] == entries - kept
    report = retention["report"]
    assert report["status"] == "succeeded" and report["entries"] == entries - kept == report["tombstones"]
    assert report["chunks"] == 2 and report["deleted"]["ingest.Entry"] == entries - kept
    assert report["deleted"]["ingest.Comment"] == 7  # the discussed ones went too (--include-discussed)
    assert retention["left"] == kept
    reingest = retention["reingest"]["totals"]
    assert (reingest["created"], reingest["unchanged"]) == (0, kept)  # tombstoned guids were not re-created
    assert retention["tombstones"] == entries - kept
    assert retention["tombstones_after_drop"] == 0  # the feed dropped every pruned guid
    assert retention["delete"]["status"] == "deleted" and retention["tombstones_after_delete"] == 0

    found = list(batches(capture, target, phases=RETENTION_PHASES))
    assert {statement["phase"] for statement, _, _ in found} == set(RETENTION_PHASES)
    count = lambda phase, **kw: sum(1 for b in found if b[0]["phase"] == phase and where(b, **kw))  # noqa: E731
    assert count("prune-entries", kind="Delete", table="ingest_entry") == 2, "one DELETE of entries per chunk"
    assert count("prune-entries", kind="Insert", table="ingest_entrytombstone") >= 2, "tombstones, per chunk"
    assert count("prune-entries-reingest", kind="Select", table="ingest_entrytombstone", text="SELECT [guid_key], [id]") == 1, \
        "one read per feed write"
    assert count("prune-entries-feed-dropped", kind="Delete", table="ingest_entrytombstone") >= 2, \
        "dropped tombstones, by primary key in batches"
    for statement, sql, _ in found:
        assert statement["params"] <= MAX_PARAMS, f"{statement['params']} parameters: {sql[:200]}"
        assert not contract.check(sql, params=statement["params"]), sql[:200]
    writes = [(statement, part) for statement, _, analysis in found for part in analysis["statements"]
              if part["type"] in ("Update", "Delete")]
    for statement, part in writes:
        assert part["row_bound"] is not None and part["row_bound"] <= MAX_IN_LIST_DELETE, part["text"]
        assert statement["rowcount"] <= MAX_IN_LIST_DELETE
    assert max(statement["rowcount"] for statement, _ in writes) == MAX_IN_LIST_DELETE  # full chunks were sent


# --- Migrations -----------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_every_migration_is_tsql_and_its_index_keys_fit(capture, target):
    migrations = capture["targets"][target]["migrations"]
    assert migrations and all(script.strip() for script in migrations.values())
    earlier = ""  # the scripts before this one: a key may cover columns an earlier migration created
    for name, script in migrations.items():
        for statement in tsql.script_statements(script):
            tsql.parse_batch(statement)  # raises NotTSQL with the statement
        assert not contract.check_script(script), f"{name}: {contract.check_script(script)}"
        for index, columns, width in tsql.index_keys(earlier + script)[len(tsql.index_keys(earlier)):]:
            assert width is not None, f"{name}: {index} has an (max) column in its key"
            assert width <= tsql.INDEX_KEY_LIMIT, f"{name}: {index} {columns} is {width} bytes"
        earlier += script + "\n"


@pytest.mark.parametrize("target", TARGETS)
def test_the_identity_keys_migration_ran_on_the_mssql_backend(capture, target):
    # 0003's data step, on rows its keys make equal (phase "migrate-data"); its statements are held
    # to the same contract as every other batch above.
    from tests import identity_migration

    state = capture["targets"][target]["migrate_data"]
    assert {name: [tuple(row) for row in state[name]] for name in identity_migration.EXPECTED} == identity_migration.EXPECTED
    assert identity_migration.keys_are_right(state["keys"])
    phase = [statement for statement, _, _ in batches(capture, target, phases=("migrate-data",))]
    assert sum(1 for s in phase if s["rowcount"] > 0) >= 10  # keys written, duplicates deleted, links moved


# --- The checks themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("case", corpus.load("invalid"), ids=lambda case: case.name)
def test_the_checker_rejects_each_invalid_statement_for_its_reason(case):
    found = contract.check(case.sql)
    assert case.rules, f"{case.name}: no '-- reject:' line"
    assert set(case.rules) <= {p.rule for p in found}, f"{case.name} ({case.note}): got {[str(p) for p in found]}"
    assert all(p.reason.strip() for p in found)


@pytest.mark.parametrize("case", corpus.load("valid"), ids=lambda case: case.name)
def test_the_checker_accepts_each_real_mssql_django_batch(case):
    assert not contract.check(case.sql), [str(p) for p in contract.check(case.sql)]


def test_the_corpus_covers_every_rule_and_the_brief():
    rules = {rule for case in corpus.load("invalid") for rule in case.rules}
    assert rules >= {"grammar", "parameters", "values-rows", "case-nesting", "case-branches", "lock-escalation",
                     "on-conflict", "returning", "update-join", "boolean-literal", "limit", "offset", "fetch",
                     "temp-params"}
    valid = corpus.load("valid")
    assert len(valid) >= 50 and max(contract.placeholder_count(case.sql) for case in valid) > 1500


# What the pinned sqlglot reads as T-SQL, or silently rewrites into T-SQL, although SQL Server
# rejects the original: the contract checks the text as sent, never a tool's rewrite of it.
@pytest.mark.parametrize("name", ["insert-on-conflict", "insert-returning", "insert-values-1001-rows",
                                  "select-in-2101-parameters", "update-join", "select-true-literal",
                                  "update-false-literal", "case-nested-11", "select-limit"])
def test_what_sqlglot_accepts_the_contract_rejects(name):
    [case] = [case for case in corpus.load("invalid") if case.name == name]
    tsql.parse_batch(case.sql)  # sqlglot: no error
    assert contract.check(case.sql)


def test_the_shape_keeps_the_grammar_and_makes_bulk_batches_one():
    rows = lambda n: "INSERT INTO [t] ([a], [b]) VALUES " + ", ".join(["(?, ?)"] * n)  # noqa: E731
    assert contract.shape(rows(3)) == contract.shape(rows(1000)) == "INSERT INTO [t] ([a], [b]) VALUES (@p, @p), (@p, @p)"
    update = lambda n: ("SET NOCOUNT OFF; UPDATE [t] SET [a] = CASE " + " ".join(["WHEN ([t].[id] = ?) THEN ?"] * n)  # noqa: E731
                        + " ELSE NULL END WHERE [t].[id] IN (" + ", ".join(["?"] * n) + ")")
    assert contract.shape(update(5)) == contract.shape(update(341))
    # Two items stay two: IDENTITY (1, 1) and decimal(10, 2) keep their arity.
    assert contract.shape("CREATE TABLE [t] ([id] bigint IDENTITY (1, 1), [p] decimal(10, 2))") == \
        "CREATE TABLE [t] ([id] bigint IDENTITY (0, 0), [p] decimal(0, 0))"
    assert contract.shape("SELECT 'it''s -- not a comment', N'x' -- a comment\nFROM [t]") == "SELECT 's', N's'  \nFROM [t]"


@pytest.mark.parametrize("sql", [
    "SELECT [limit], [true], 'LIMIT 1 RETURNING TRUE ON CONFLICT', \"false\" FROM [t] -- LIMIT in a comment",
    "SELECT TOP 21 [a] FROM [t] ORDER BY [a] OFFSET 20 ROWS FETCH NEXT 21 ROWS ONLY",
    "UPDATE [t] SET [a] = [u].[b] FROM [t] INNER JOIN [u] ON [u].[id] = [t].[u_id] WHERE [t].[id] = ?",
    "ALTER TABLE [t] ADD CONSTRAINT [t_u_fk] FOREIGN KEY ([u_id]) REFERENCES [u] ([id]) ON DELETE CASCADE ON UPDATE NO ACTION",
    "SELECT CASE WHEN EXISTS(SELECT 1 AS [a] FROM [u] WHERE [u].[t_id] = [t].[id]) THEN 1 ELSE 0 END AS [x] FROM [t]",
    "SELECT " + "CASE WHEN [a] > ? THEN " * 10 + "?" + " ELSE ? END" * 10 + " FROM [t]",
    "SET NOCOUNT OFF; DELETE FROM [t] WHERE [t].[id] IN (" + ", ".join(str(i) for i in range(5000)) + ")",
])
def test_what_sql_server_accepts_the_checker_accepts(sql):
    assert not contract.check(sql), [str(p) for p in contract.check(sql)]


def test_parameters_bound_must_match_the_placeholders():
    assert [p.rule for p in contract.check("SELECT [a] FROM [t] WHERE [a] = ? AND [b] = '?'", params=2)] == ["placeholders"]
    assert not contract.check("SELECT [a] FROM [t] WHERE [a] = ? AND [b] = '?'", params=1)


@pytest.mark.parametrize("sql, found", [
    ("SELECT [a] FROM [t] ORDER BY [a] LIMIT 21", ["LIMIT"]),
    ("INSERT INTO [t] ([a]) VALUES (?) ON CONFLICT DO NOTHING", ["ON CONFLICT"]),
    ("INSERT INTO [t] ([a]) VALUES (?) RETURNING [id]", ["RETURNING"]),
    ("SELECT TOP 21 [limit], 'no LIMIT here' FROM [t] ORDER BY 1 OFFSET 0 ROWS FETCH FIRST 5 ROWS ONLY", []),
])
def test_foreign_syntax_is_found_outside_names_and_strings(sql, found):
    assert tsql.foreign_syntax(sql) == found


def test_batches_are_split_the_way_sql_server_reads_them():
    kinds = lambda sql: [type(s.tree).__name__ for s in tsql.parse_batch(sql)]  # noqa: E731
    assert kinds("SET NOCOUNT ON INSERT INTO [t] ([a]) VALUES (?); SELECT CAST(SCOPE_IDENTITY() AS bigint)") == \
        ["Set", "Insert", "Select"]
    assert kinds("DECLARE @var0 INT = ? \nSELECT [a], COUNT_BIG(*) FROM [t] WHERE [b] > @var0 GROUP BY [a]") == \
        ["Declare", "Select"]
    assert kinds("SAVE TRANSACTION [s1_x2]") == ["NoneType"]
    with pytest.raises(tsql.NotTSQL):
        tsql.parse_batch("UPSERT INTO t VALUES (1)")


@pytest.mark.parametrize("sql, bound", [
    ("UPDATE [t] SET [a] = ? WHERE [t].[id] IN (?, ?, ?)", 3),
    ("UPDATE [t] SET [a] = ? WHERE ([t].[owner] = ? AND [t].[id] IN (?, ?))", 2),
    ("UPDATE [t] SET [a] = ? WHERE [t].[id] = ?", 1),
    ("UPDATE [t] SET [a] = ? WHERE [t].[owner] = ?", None),
    ("DELETE FROM [t] WHERE [t].[id] IN (SELECT [u].[id] FROM [u] WHERE [u].[id] IN (?, ?))", None),
])
def test_row_bound_reads_the_primary_key_filter(sql, bound):
    [_, statement] = tsql.parse_batch("SET NOCOUNT OFF; " + sql)
    assert tsql.row_bound(statement.tree, "id") == bound


def test_index_key_width_is_measured_in_bytes():
    script = ("CREATE TABLE [t] ([id] bigint NOT NULL PRIMARY KEY, [u] nvarchar(800) NOT NULL UNIQUE, [m] nvarchar(max));\n"
              "CREATE INDEX [t_m] ON [t] ([m]);\nCREATE UNIQUE INDEX [t_id_u] ON [t] ([id], [u]);")
    assert tsql.index_keys(script) == [("t.u UNIQUE", ["u"], 1600), ("t_m", ["m"], None), ("t_id_u", ["id", "u"], 1608)]


# --- Settings: what DATABASE_URL gives, and what reaches the ODBC driver --------------------------

FORMS = {
    "sql-login": "mssql://pipeline:p%40ss%3Bword@sql.example.com:1433/pipeline?Encrypt=yes&TrustServerCertificate=no",
    "system-assigned-identity": "mssql://@srv.database.windows.net:1433/pipeline?Authentication=ActiveDirectoryMsi"
                                "&Encrypt=yes&TrustServerCertificate=no&connection_retries=5&connection_retry_backoff_time=10",
    "user-assigned-identity": "mssql://11111111-2222-3333-4444-555555555555@srv.database.windows.net/pipeline"
                              "?Authentication=ActiveDirectoryMsi&Encrypt=yes",
    "service-principal": "mssql://app-id:s3cret@srv.database.windows.net/pipeline"
                         "?Authentication=ActiveDirectoryServicePrincipal&Encrypt=yes&TrustServerCertificate=no",
    "bundled-driver": "mssql://pipeline:pw@sql.example.com:1433/pipeline?python_driver=mssql_python&Encrypt=yes",
    "driver-17": "mssql://pipeline:pw@sql.example.com/pipeline?driver=ODBC+Driver+17+for+SQL+Server&Encrypt=yes",
}

SETTINGS_SCRIPT = r"""
import importlib, json, os, sys
forms = json.loads(sys.argv[1])
databases = {}
for name, url in forms.items():
    os.environ["DATABASE_URL"] = url
    sys.modules.pop("pipeline.settings", None)
    databases[name] = importlib.import_module("pipeline.settings").DATABASES["default"]
    assert "pyodbc" not in sys.modules, "settings must not import the driver"

from django.conf import settings
settings.configure(USE_TZ=True, TIME_ZONE="UTC")
import mssql_python, pyodbc
from django.db.utils import ConnectionHandler

class Connected(Exception):
    pass

def connect(connection_string, **kwargs):
    raise Connected(connection_string, sorted(kwargs))

pyodbc.connect = mssql_python.connect = connect
handler = ConnectionHandler({"default": databases["sql-login"], **json.loads(json.dumps(databases))})
result = {}
for name in forms:
    wrapper = handler[name]
    try:
        wrapper.get_new_connection(wrapper.get_connection_params())
    except Connected as sent:
        connection_string, keywords = sent.args
    result[name] = {"database": databases[name], "connection_string": connection_string, "keywords": keywords}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def forms() -> dict:
    require_pyodbc()
    env = _clean_env(DJANGO_DEBUG="1", CONN_MAX_AGE="60", CONN_HEALTH_CHECKS="true")
    result = subprocess.run([sys.executable, "-c", SETTINGS_SCRIPT, json.dumps(FORMS)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def _parts(connection_string: str) -> dict:
    """Keyword -> value of an ODBC connection string (values in braces may hold ';')."""
    parts, rest = {}, connection_string
    while rest:
        key, _, rest = rest.partition("=")
        if rest.startswith("{"):
            value, _, rest = rest[1:].partition("};")
            value = value.rstrip("}")
        else:
            value, _, rest = rest.partition(";")
        parts[key] = value
    return parts


def test_every_form_is_the_mssql_engine_with_persistent_checked_connections(forms):
    for name, form in forms.items():
        db = form["database"]
        assert db["ENGINE"] == "mssql", name
        assert (db["CONN_MAX_AGE"], db["CONN_HEALTH_CHECKS"]) == (60, True), name
        assert db["NAME"] == "pipeline", name


def test_sql_login(forms):
    db, parts = forms["sql-login"]["database"], _parts(forms["sql-login"]["connection_string"])
    assert db["OPTIONS"] == {"driver": "ODBC Driver 18 for SQL Server", "connection_timeout": 10,  # DB_CONNECT_TIMEOUT
                             "extra_params": "Encrypt=yes;TrustServerCertificate=no"}
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"]) == ("pipeline", "p@ss;word", "sql.example.com", "1433")
    assert parts["DRIVER"] == "ODBC Driver 18 for SQL Server" and parts["SERVER"] == "sql.example.com,1433"
    assert (parts["UID"], parts["PWD"], parts["DATABASE"]) == ("pipeline", "p@ss;word", "pipeline")
    assert (parts["Encrypt"], parts["TrustServerCertificate"]) == ("yes", "no")


def test_managed_identity_sends_no_password_and_keeps_the_retry_options(forms):
    system = forms["system-assigned-identity"]
    assert system["database"]["OPTIONS"] == {
        "driver": "ODBC Driver 18 for SQL Server", "connection_retries": 5, "connection_retry_backoff_time": 10,
        "connection_timeout": 10, "extra_params": "Authentication=ActiveDirectoryMsi;Encrypt=yes;TrustServerCertificate=no"}
    parts = _parts(system["connection_string"])
    assert parts["Authentication"] == "ActiveDirectoryMsi"
    assert not {"UID", "PWD", "Trusted_Connection"} & parts.keys()
    user = _parts(forms["user-assigned-identity"]["connection_string"])
    assert user["UID"] == "11111111-2222-3333-4444-555555555555" and "PWD" not in user


def test_service_principal_sends_client_id_and_secret(forms):
    parts = _parts(forms["service-principal"]["connection_string"])
    assert (parts["Authentication"], parts["UID"], parts["PWD"]) == ("ActiveDirectoryServicePrincipal", "app-id", "s3cret")


def test_bundled_driver_and_driver_override(forms):
    bundled = forms["bundled-driver"]
    assert bundled["database"]["OPTIONS"]["python_driver"] == "mssql_python"
    parts = _parts(bundled["connection_string"])
    assert "DRIVER" not in parts and parts["SERVER"] == "sql.example.com,1433"  # mssql-python brings its own driver
    assert _parts(forms["driver-17"]["connection_string"])["DRIVER"] == "ODBC Driver 17 for SQL Server"


@pytest.mark.parametrize("target", TARGETS)
def test_the_webhook_outbox_ran_on_the_mssql_backend(capture, target):
    """Every event fanned out into deliveries, one batch sent and refused (its failure written),
    every event replayed: the statements of these phases passed the contract above."""
    webhooks = capture["targets"][target]["webhooks"]
    assert webhooks["deliver"]["dispatched"] > 100 and webhooks["deliver"]["batches"] == 1
    assert webhooks["deliver"]["failed"] == 1 and webhooks["replay"] == webhooks["deliver"]["dispatched"]
    phases = {statement["phase"] for statement, _, _ in batches(capture, target)}
    assert {"webhooks-deliver", "webhooks-replay"} <= phases
