"""The scenario table of docs/reliability.md, filled with what the last run observed.

    python -m tests.reliability.report                         # print the table
    python -m tests.reliability.report --write docs/reliability.md   # replace it between the markers

Each test records what it saw with ``runner.observe(scenario, text)`` into
``var/reliability/observed.jsonl``; the newest observation per scenario and backend is shown.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OBSERVED = ROOT / "var" / "reliability" / "observed.jsonl"
START, END = "<!-- scenarios:start -->", "<!-- scenarios:end -->"
LOAD_START, LOAD_END = "<!-- load:start -->", "<!-- load:end -->"
REASONS_START, REASONS_END = "<!-- reasons:start -->", "<!-- reasons:end -->"
R = "tests/reliability/"


@dataclass(frozen=True)
class Scenario:
    group: str
    name: str
    done: str
    must_hold: str
    tests: tuple[str, ...]
    observed: tuple[str, ...]  # observation keys (runner.observe)
    where: str = "every backend"


SCENARIOS = [
    Scenario("Faults", "Connection killed mid-upsert",
             "`pg_terminate_backend` on the ingest's connection twice in one run: between two INSERT batches of a "
             "2,500-entry source, and at another source's bookkeeping UPDATE (its entries, authors and pingbacks written)",
             "each source's transaction is redone by the retry helper; the final rows (sources, entries, authors, "
             "links, pingbacks, runs) equal an undisturbed run's",
             (R + "test_db_faults.py::test_connection_killed_mid_upsert_is_redone_and_the_rows_equal_an_undisturbed_run",),
             ("db-kill-mid-upsert",), "PostgreSQL"),
    Scenario("Faults", "Ingest and recount deadlock",
             "`ingest_feeds` updates source S's entries and then (new pingbacks) the counters of T's entries, while "
             "`recompute_counts` updates T's entries and then S's: a lock-order cycle, forced with a barrier",
             "the database picks a victim, the retry helper redoes its transaction, both commands succeed, every "
             "counter equals its rows",
             (R + "test_db_faults.py::test_ingest_and_recount_deadlock_one_is_retried_both_finish_and_counters_are_right",),
             ("deadlock-ingest-recount",), "PostgreSQL, MariaDB (SQLite serializes writers)"),
    Scenario("Faults", "Database unreachable for the whole run",
             "`manage.py ingest_feeds` with DATABASE_URL at a closed port (a directory for SQLite), then a normal run",
             "exit 1, one sentence on stderr, no traceback; no request sent, nothing written; the next run stores everything",
             (R + "test_db_faults.py::test_database_unreachable_for_the_whole_run_one_sentence_nothing_written_next_run_catches_up",),
             ("db-unreachable-whole-run",)),
    Scenario("Faults", "Database lost in the middle of a run",
             "after two of six sources are stored, the test database stops accepting connections and every backend "
             "is terminated; it comes back after the run died",
             "exit 1 with one sentence; every source completely stored or untouched; the next run (after the 3 s lease) "
             "stores the rest",
             (R + "test_db_faults.py::test_database_lost_mid_run_one_sentence_no_half_written_source_next_run_catches_up",),
             ("db-lost-mid-run",), "PostgreSQL"),
    Scenario("Faults", "Every command without its database",
             "each of the six commands (and their `--source`/`--dry-run`/`--json` forms) against PostgreSQL's and "
             "MariaDB's closed port and an unusable SQLite path",
             "non-zero exit (1; `pipeline_status`: 3 unhealthy) with one sentence, never a traceback",
             (R + "test_commands.py::test_every_command_without_its_database_exits_non_zero_with_one_sentence",),
             ("db-unreachable-every-command-postgresql", "db-unreachable-every-command-mariadb",
              "db-unreachable-every-command-sqlite"), "once (drivers of all three)"),
    Scenario("Faults", "Redis stopped while a worker and beat run",
             "a `redis-server` of the test's own (append-only file, or no persistence) is stopped while source tasks "
             "are queued and running, a source is registered during the outage, Redis is started again on the same port",
             "worker and beat survive; every due source is ingested after Redis returns, each entry once. With AOF "
             "every run completes; without persistence the vanished tasks' sources are taken by a later run once "
             "their lease expires",
             (R + "test_celery_faults.py::test_redis_stopped_while_worker_and_beat_run_then_back_everything_due_is_ingested",),
             ("redis-outage-aof", "redis-outage-volatile"), "PostgreSQL, slow"),
    Scenario("Faults", "Worker SIGKILLed mid-task",
             "SIGKILL to the pool process while it inserts a 20,000-entry feed (its transaction open); "
             "tests/test_celery.py kills pool and whole worker while a task fetches",
             "PostgreSQL rolls the transaction back, the message is redelivered, the run succeeds; the database equals "
             "an undisturbed run's",
             (R + "test_celery_faults.py::test_worker_killed_inside_its_transaction_redelivers_and_ends_like_an_undisturbed_run",
              "tests/test_celery.py::test_worker_killed_mid_task_redelivers_and_ends_like_an_undisturbed_run"),
             ("sigkill-mid-transaction",), "PostgreSQL, slow"),
    Scenario("Faults", "By hand and from Celery at the same moment",
             "`manage.py ingest_feeds` and the Celery task released on one barrier, 30 slow sources; then again with "
             "`--all` / `force=True`",
             "no source fetched by two runs at once (server-side in-flight count ≤ 1), each due source fetched once, "
             "no duplicate entry, both IngestRuns recorded and succeeded, no lease left",
             (R + "test_celery_faults.py::test_manual_run_and_celery_run_at_the_same_moment_never_share_a_source",),
             ("manual-and-celery",)),
    Scenario("Hostile input", "Two conformance corpora as feeds",
             "every file of `feedparser-tests` and `feedvalidator-testcases` registered as a source and served with its "
             "corpus HTTP headers; one `ingest_feeds --workers 16` run, then `--all` again",
             "exit 0; each source ingested or failed with a recorded reason; no source partly written; no traceback; "
             "the second run creates and updates nothing",
             (R + "test_corpus.py::test_every_corpus_file_served_as_a_feed_ingests_or_fails_with_a_reason",),
             ("corpus",), "PostgreSQL, slow"),
    Scenario("Hostile input", "Hostile feeds in one run",
             "billion laughs, quadratic blowup, XXE (`file:`, http to 169.254.169.254 and 10.0.0.1, parameter entity), "
             "external DTD, endless body, 1 GiB gzip bomb, one byte per second, wrong/missing/bogus encodings, NUL and "
             "control characters, script and event handlers in titles and bodies, invalid and far-future dates, "
             "duplicate guids, a redirect loop and a 9-hop chain, redirects and sources aimed at 169.254.169.254, "
             "10.0.0.1, localhost, ::1, 0.0.0.0, decimal and IPv4-mapped forms, `file:`, `ftp:`, `gopher:`",
             "exit 0; each source ingested safely or failed with the expected reason, with no entry; no entity "
             "expanded, no file read, no unsafe markup stored, headlines without tags; text decoded as meant "
             "(4-byte characters too); bad dates become the fetch time; one entry per guid; peak memory < 600 MB; "
             "0 connection attempts beyond loopback and 0 requests to localhost (tripwire + canary server); a second "
             "run changes nothing",
             (R + "test_hostile_input.py::test_every_hostile_source_ingests_safely_or_fails_with_a_reason_and_nothing_gets_in",),
             ("hostile-batch",)),
    Scenario("Hostile input", "10 MB entry bodies",
             "a 10.0 MB body, and a 9.9 MB body of quote characters (they double when a driver escapes them), beside a "
             "small feed",
             "stored whole, or that source alone fails with a reason; the other sources are stored; the run completes",
             (R + "test_hostile_input.py::test_ten_megabyte_entry_bodies_are_stored_whole_or_the_source_fails_alone",),
             ("ten-mb-bodies",)),
    Scenario("Hostile input", "100,000-entry feed",
             "one 5 MiB feed of 100,000 items, ingested, then fetched again with `--all`",
             "all 100,000 stored; the second run finds them unchanged and writes none",
             (R + "test_hostile_input.py::test_a_feed_of_100000_entries_is_stored_completely_and_a_second_run_writes_nothing",),
             ("hundred-thousand-entries",), "PostgreSQL, slow"),
    Scenario("Hostile input", "Entry identity vs. the fetch URL",
             "the same feed (guids that are not absolute URLs) reached through a 302 to mirror A, a 302 to mirror B, "
             "then a 301 move",
             "each entry stored once: identity must not depend on where the bytes were fetched from",
             (R + "test_hostile_input.py::test_entry_identity_does_not_depend_on_the_url_the_feed_was_fetched_from",),
             ("identity-vs-fetch-url",)),
    Scenario("Hostile input", "Bad arguments to every command",
             "41 bad invocations of the six commands (out-of-range and malformed numbers, unknown options and choices, "
             "`file:`/`ftp:`/`gopher:`/`javascript:` and private, link-local, loopback URLs, hostile and broken OPML "
             "files), with DATABASE_URL at a closed port; unknown `--source` values on the real database",
             "exit 2 and one sentence naming the problem; no traceback; no database touched; no connection",
             (R + "test_commands.py::test_bad_arguments_to_every_command_exit_non_zero_with_one_sentence",
              R + "test_commands.py::test_unknown_sources_are_refused_with_one_sentence"),
             ("bad-arguments",), "once; unknown sources on every backend"),
    Scenario("Hostile input", "OPML with hostile XML and URLs",
             "`import_opml` of entity-bomb, XXE, external-DTD and parameter-entity OPML; of an OPML listing one safe "
             "feed among `file:`, `ftp:`, `gopher:`, `javascript:`, metadata, private, loopback and overlong URLs",
             "hostile XML refused (exit 2, one sentence, nothing registered); only the safe feed registered, every "
             "other URL rejected with its reason; no connection attempt",
             (R + "test_commands.py::test_opml_listing_hostile_urls_registers_only_the_safe_feed_and_never_connects",),
             ("opml-hostile",)),
    Scenario("Load", "1,000 × 50 through the command",
             "1,000 sources × 50 entries (plus a repeated item each; shared guids across some sources), 0–500 ms "
             "latency, 5 % HTTP 500, `ingest_feeds --workers 16`; then `--all` without errors",
             "completes; stored entries = exactly the unique entries served; failed sources = the 500s, backed off "
             "and due again after the backoff; second pass: all 50,000 unique entries, no duplicate",
             (R + "test_load.py::test_load_through_the_command_with_16_workers",), ("load-command",), "PostgreSQL, slow"),
    Scenario("Load", "1,000 × 50 through two Celery workers",
             "the same load dispatched by the `ingest_feeds` task to two worker processes (prefork, 8 each); then a "
             "forced run without errors",
             "as above, and the run's counters equal the rows",
             (R + "test_load.py::test_load_through_two_celery_workers",), ("load-celery",), "PostgreSQL, slow"),
    Scenario("Containment", "An unexpected exception in one source",
             "a fault injected into one source's parse and into another's store (after its entries were written), "
             "beside a control feed; `pipeline_status`; then a run without the faults",
             "exit 0; both sources failed as `internal error: <Type>: …`, counted apart (`totals.internal_errors`, "
             "`IngestRun.sources_internal_errors`), traceback logged at ERROR with the source id, the store fault's "
             "rows rolled back, both backed off; `pipeline_status` unhealthy (3) while they are; the next run stores "
             "them and the pipeline is healthy",
             (R + "test_containment.py::test_an_unexpected_exception_fails_its_source_alone_counted_as_an_internal_error",),
             ("containment-internal-error",)),
    Scenario("Containment", "Redirects to URLs that cannot be followed",
             "302s whose `Location` is `mailto:`, `javascript:`, `data:`, `https://[::1`, port 99999, a host with a "
             "space, `ftp:`, the metadata address",
             "exit 0; each source failed with a sentence (not an internal error); the control feed stored; the next "
             "run completes",
             (R + "test_containment.py::test_redirects_to_unusable_urls_fail_their_source_with_a_reason",),
             ("containment-redirects",)),
    Scenario("Containment", "Validators that cannot be sent back",
             "`ETag` / `Last-Modified` with non-ASCII bytes or whitespace; a source whose stored ETag is non-ASCII "
             "(an older row)",
             "both runs exit 0; the unsendable validators are not stored, nor sent; a good ETag still gives a 304",
             (R + "test_containment.py::test_validators_that_cannot_be_sent_back_are_not_stored_and_never_break_a_later_run",),
             ("containment-validators",)),
    Scenario("Containment", "A unique-key collision that repeats",
             "one feed with guids `POST-ABC` and `post-abc` under a case-insensitive unique index over the guid text "
             "(MariaDB's default collation; `COLLATE NOCASE` on SQLite, `lower()` on PostgreSQL), beside the product's "
             "own digest keys, which keep them apart",
             "exit 0 after one retry; that source failed with the constraint named (never \"database unreachable\"); "
             "the control feed stored",
             (R + "test_containment.py::test_a_collision_that_repeats_fails_that_source_with_the_constraint_named",),
             ("containment-collision",)),
    Scenario("Containment", "A killed run",
             "`manage.py ingest_feeds` SIGKILLed after storing a comment-fetching source, while its comment feeds "
             "hang; `pipeline_status` after the lease TTL; then a manual run",
             "the dead run is unhealthy in `pipeline_status` once past the lease TTL; the next run, whatever its "
             "trigger, closes it as failed and polls the comment feeds the dead run never finished",
             (R + "test_containment.py::test_a_killed_run_is_closed_by_the_next_run_which_also_polls_its_comment_feeds",),
             ("containment-killed-run",)),
    Scenario("Containment", "Parse time",
             "a body of 1.1 MB of nested `<div>` (40-76 s of html5ever unguarded) in a small run (parsed in the "
             "fetch thread); an 8 MB feed beside 16 small ones with `INGEST_PARSE_TIMEOUT=0.5` in the 2-process pool",
             "the nested body is cut before sanitizing, the entry kept and a warning recorded, in seconds; the slow "
             "feed's worker is killed and that source fails with the budget named; the 16 others are stored",
             (R + "test_containment.py::test_parse_time_is_bounded_in_the_pool_and_in_the_thread",),
             ("containment-parse-budget",)),
    Scenario("Containment", "Markup in headlines",
             "Atom titles of type html (double- and triple-escaped `<script>`, `<img onerror>`), text (`<iframe>`) "
             "and xhtml (`<svg onload>`)",
             "no element survives into `Entry.headline`; the words do",
             (R + "test_containment.py::test_headlines_keep_no_element_however_it_was_escaped",),
             ("containment-headlines",)),
    Scenario("Containment", "No false health",
             "a 304 to the very first (unconditional) request; a truncated feed with no entries; dates that cannot "
             "exist (year 10000, Feb 30, Sep 31, offsets +99:99 and +15:00)",
             "the 304 and the broken feed are failures with a reason; impossible dates become the fetch time with a "
             "warning recorded on the source",
             (R + "test_containment.py::test_no_false_health_304_without_validators_broken_empty_feed_and_impossible_dates",),
             ("containment-honest-outcomes",)),
    Scenario("Containment", "Bad configuration",
             "`manage.py` with 33 bad settings and each of the 6 commands (INGEST_ALLOWED_NETWORKS=not-a-cidr, "
             "INGEST_DEADLINE=abc/nan/0, timeouts inf, DATABASE_URL without a database name, ...), the database at a "
             "closed port; `celery worker`/`beat`, the Functions runner and the WSGI module with a bad setting",
             "exit 2 and one sentence naming the variable, before any database access; never a traceback",
             ("tests/test_config_errors.py::test_every_configuration_error_is_one_sentence_and_exit_2_before_the_database",
              "tests/test_config_errors.py::test_celery_stops_with_the_sentence"),
             ("containment-configuration",), "once"),
    Scenario("Containment", "A database that accepts and never answers",
             "`manage.py ingest_feeds` against a loopback socket that accepts TCP and never sends a byte, as "
             "PostgreSQL, MariaDB and SQL Server (mssql-python), the timeout from DB_CONNECT_TIMEOUT or the URL",
             "exit 1 with the same one sentence as an unreachable database, within the timeout",
             ("tests/test_config_errors.py::test_a_database_that_accepts_and_never_answers_fails_like_an_unreachable_one",),
             tuple(f"containment-hung-db-{kind}-{given}" for kind in ("postgresql", "mariadb", "sqlserver")
                   for given in ("setting", "url")), "once"),
    Scenario("Containment", "Generated hostile responses (property-based)",
             "hypothesis generates 1-4 hostile HTTP responses per example beside a control feed: any status 100-599 "
             "(1xx, 204, 304, redirects without or with broken `Location`: `mailto:`, `http://:80/`, `http://[::1`, "
             "port 99999, non-ASCII and invalid IDNA hosts, `data:`, `javascript:`, very long), header names and values "
             "in any bytes (non-ASCII, controls, CR/LF, 20 KB), odd ETag/Last-Modified/Content-Type/Content-Encoding/"
             "Content-Length/Retry-After, bodies valid, truncated anywhere, random, mis-encoded, lying gzip, empty; "
             "served by the real test server, byte for byte where http.server would refuse; `ingest_feeds --json`, "
             "then `--all`. 15 examples plus the kept failures per pass (150 in the slow run); the kept failures and one "
             "response of each kind also through `manage.py` in one process",
             "both runs exit 0 without a traceback; every source has an outcome, a failed one a reason and no entry; "
             "the control feed is stored; no \"not modified\" for a request without validators; no source left leased, "
             "no run left running; no connection beyond loopback",
             (R + "test_boundary.py::test_per_source_boundary_holds_for_generated_hostile_responses",
              R + "test_boundary.py::test_per_source_boundary_holds_for_many_generated_hostile_responses",
              R + "test_boundary.py::test_fixed_hostile_responses_through_manage_py_fail_alone"),
             ("boundary-property", "boundary-manage"), "every backend; 150 examples: slow"),
]


def latest_entries(path: Path = OBSERVED) -> dict[str, dict[str, dict]]:
    """scenario key -> {backend: the newest observation}."""
    seen: dict[str, dict[str, dict]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                seen.setdefault(entry["scenario"], {})[entry["vendor"]] = entry
    return seen


def latest_observations(path: Path = OBSERVED) -> dict[str, dict[str, str]]:
    """scenario key -> {backend: text}, the newest per backend."""
    return {key: {vendor: entry["text"] for vendor, entry in by_vendor.items()}
            for key, by_vendor in latest_entries(path).items()}


def render_load(entries: dict[str, dict[str, dict]]) -> str:
    lines = ["| ingested by | first pass (5 % errors) | sources failed | entries stored | second pass (no errors, every source) | entries after |",
             "|---|---|---|---|---|---|"]
    for key in ("load-command", "load-celery"):
        for vendor, entry in sorted(entries.get(key, {}).items()):
            d = entry.get("data") or {}
            if d:
                lines.append(f"| {d['mode']} on {vendor} | {d['first_s']:.1f} s | {d['failed']} | {d['created']:,} | "
                             f"{d['second_s']:.1f} s | {d['total']:,} |")
    return "\n".join(lines) if len(lines) > 2 else "*not run yet: `./scripts/reliability -k load`*"


def render_reasons(entries: dict[str, dict[str, dict]]) -> str:
    """The reason recorded for each hostile source that failed (the PostgreSQL pass when there is one)."""
    by_vendor = entries.get("hostile-reasons", {})
    if not by_vendor:
        return "*not run yet*"
    vendor = "PostgreSQL" if "PostgreSQL" in by_vendor else min(by_vendor)
    reasons = by_vendor[vendor]["text"].split("; ")
    lines = [f"As recorded on the sources ({vendor} pass; ports shown as PORT):", ""]
    for reason in reasons:
        source, _, error = reason.partition(": ")
        lines.append(f"- `{re.sub(r':[0-9]{2,5}/', ':PORT/', source)}`: {error}")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(observations: dict[str, dict[str, str]]) -> str:
    lines = ["| # | scenario | what is done | what must hold | observed | test |", "|---|---|---|---|---|---|"]
    for number, s in enumerate(SCENARIOS, 1):
        texts = [text for key in s.observed for _, text in sorted(observations.get(key, {}).items())]
        observed = "<br>".join(_cell(t) for t in texts) or "*not run yet*"
        tests = "<br>".join(f"`{t.split('::')[0].rsplit('/', 1)[-1]}::{t.split('::')[1]}`" for t in s.tests)
        lines.append(f"| {number} | **{s.group}: {s.name}** ({s.where}) | {_cell(s.done)} | {_cell(s.must_hold)} | "
                     f"{observed} | {tests} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="replace the table between the scenario markers of FILE")
    args = parser.parse_args(argv)
    entries = latest_entries()
    table, load, reasons = render(latest_observations()), render_load(entries), render_reasons(entries)
    if not args.write:
        print(table, load, reasons, sep="\n\n")
        return 0
    doc = Path(args.write)
    text = doc.read_text(encoding="utf-8")
    for start, end, content in ((START, END, table), (LOAD_START, LOAD_END, load), (REASONS_START, REASONS_END, reasons)):
        if start not in text or end not in text:
            print(f"{doc} has no {start} / {end} markers.", file=sys.stderr)
            return 2
        replacement = f"{start}\n{content}\n{end}"
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _, r=replacement: r, text, flags=re.DOTALL)
    doc.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
