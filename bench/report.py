"""Turn the JSON of one ``bench.run`` into the target checks and docs/benchmarks.md. No measuring here.

The analysis of missed targets (why, and what would close it) is kept by hand in
``bench/analysis.md`` and included as is, after the profiles this run recorded.
"""

from __future__ import annotations

from pathlib import Path

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"
BACKEND_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
# What the ingest figures are, said once above the tables.
HOW_READ = (
    'How the ingest figures are taken: *wall* is the `feeds_ingest` call (reader: its `update_feeds_iter`) in a '
    "fresh child; *CPU s, tree* is user+sys over that call of the child's threads and of every process it started "
    "(the parse pool's workers are joined when the pool closes, so `RUSAGE_CHILDREN` counts them; one still alive "
    'would be read from /proc), so a ratio *per CPU-second* compares the work done whatever the cores and the '
    'neighbours. *One core*: the child is pinned to CPU 0 (`os.sched_setaffinity`, as `taskset -c 0`), and so is '
    'every process it starts. reader re-ingests with `update_feeds_iter(scheduled=False)`, so that its re-runs '
    "fetch every feed, as the product's re-ingest does (a scheduled run once every source is made due, so that the "
    "stored body digests apply). *Statements* are every SQL statement sent through Django, "
    'reads included, per source. A full run with `--repeat 1` (the real corpus, PostgreSQL) takes about 20 minutes '
    'on 2 cores.')
# The upsert's allowance over the raw DB-API floor, per case.
FLOOR_LIMITS = {"new": 1.5, "unchanged": 2.0, "changed": 1.5}


def _get(data, *keys, default=None):
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return default
        data = data[key]
    return data


def _med(summary: dict | None, key: str = "wall_s"):
    """The median of one of a summary's spreads, to 2 places (None when absent)."""
    value = _get(summary, key, "median")
    return None if value is None else round(value, 2)


def _check(rows, target, measured, met, experiment=None):
    rows.append({"target": target, "measured": measured, "met": met, "experiment": experiment})


def targets(results: dict) -> list[dict]:
    """Each target of the issue, with what this run measured and whether it was met (None: not measured)."""
    parts = results["parts"]
    rows: list[dict] = []
    ingest = parts.get("ingest") or {}
    first = ingest.get("first") or {}
    corpus = "" if results.get("corpus_kind") == "real-feeds" else f" (on a {results.get('corpus_kind', 'given')} corpus, not the real one)"
    product = first.get("product_sqlite")
    if product and "reader_sqlite" in first:
        reader = first["reader_sqlite"]
        cpu = product.get("cpu_vs_reader")
        _check(rows, "first ingest on the real corpus, SQLite: >= 4x reader per CPU-second (HTML sanitized)",
               f"{cpu}x ({_med(product, 'cpu_s')} CPU s vs reader's {_med(reader, 'cpu_s')}){corpus}", None if cpu is None else cpu >= 4)
        wall = product.get("speedup_vs_reader")
        _check(rows, "first ingest on the real corpus, SQLite: >= 5x reader by wall time, 2 cores",
               f"{wall}x ({_med(product)} s vs reader's {_med(reader)} s){corpus}", None if wall is None else wall >= 5)
    one = first.get("product_1core_sqlite")
    if one and "reader_1core_sqlite" in first:
        wall = one.get("speedup_vs_reader")
        _check(rows, "first ingest on the real corpus, SQLite: >= 3x reader on one core (taskset -c 0, both)",
               f"{wall}x ({_med(one)} s vs reader's {_med(first['reader_1core_sqlite'])} s){corpus}", None if wall is None else wall >= 3)
    postgres = first.get("product_postgres")
    if postgres and product:
        vs = postgres.get("vs_sqlite")
        _check(rows, "first ingest on PostgreSQL within 1.3x of SQLite", f"{vs}x ({_med(postgres)} s vs {_med(product)} s)",
               None if vs is None else vs <= 1.3)
    reingest = ingest.get("reingest") or {}
    for key, value in reingest.items():
        if key.startswith("reader"):
            continue
        mode, backend = ("304" if "304" in key else "same bodies"), BACKEND_NAMES.get(key.rsplit("_", 1)[-1], key)
        if mode == "same bodies":
            vs = value.get("vs_first")
            _check(rows, f"re-ingest with the same bodies on {backend} >= 10x faster than the first ingest",
                   f"{vs}x ({_med(value)} s)", None if vs is None else vs >= 10)
        writes = value.get("entry_writes_max")
        _check(rows, f"re-ingest ({mode}) on {backend} writes 0 entry rows", f"{writes} entry writes", writes == 0)
        if mode == "same bodies":
            per = value.get("statements_per_source")
            _check(rows, f"re-ingest with the same bodies on {backend}: <= 2 statements per source",
                   f"{per} ({value.get('statements')} statements, {value.get('sources')} sources)", None if per is None else per <= 2)
    trees = [(key, _get(first, key, "peak_tree_rss_mb", "max")) for key in ("product_sqlite", "product_postgres") if key in first]
    if trees:
        worst = max(trees, key=lambda kv: kv[1] or 0)
        _check(rows, "peak RSS of the whole process tree <= 150 MB (first ingest, parse processes included)",
               ", ".join(f"{BACKEND_NAMES[k.rsplit('_', 1)[-1]]} {v:.0f} MB" for k, v in trees) + " (highest of the runs)",
               worst[1] is not None and worst[1] <= 150)
    scale = _get(parts, "scale", "scale")
    if scale and len(scale["sizes"]) > 1:
        largest, smallest = max(scale["sizes"]), scale["smallest"]
        for phase, label in (("first", "first ingest"), ("again", "re-ingest, same bodies")):
            big, small = _get(scale, "rows", str(largest), f"product_{phase}") or {}, _get(scale, "rows", str(smallest), f"product_{phase}") or {}
            vs = big.get("per_feed_vs_smallest")
            _check(rows, f"{largest:,} feeds: time per feed within 1.2x of the {smallest:,}-feed run ({label})",
                   f"{vs}x ({big.get('ms_per_feed')} ms vs {small.get('ms_per_feed')} ms per feed)", None if vs is None else vs <= 1.2)
    for backend, table in (_get(parts, "upsert", "backends") or {}).items():
        for case in ("new", "unchanged", "changed"):
            product = _get(table, "product", case) or {}
            trial = _get(table, "experiment", case) or {}
            if product.get("speedup_vs_naive") is not None:
                _check(rows, f"upsert {case} on {BACKEND_NAMES[backend]} >= 30x the naive loop",
                       f"{product['speedup_vs_naive']}x (one transaction per source: {product.get('speedup_vs_naive_tx')}x)",
                       product["speedup_vs_naive"] >= 30, f"{trial['speedup_vs_naive']}x" if trial.get("speedup_vs_naive") else None)
            if product.get("vs_floor") is not None:
                limit = FLOOR_LIMITS[case]
                _check(rows, f"upsert {case} on {BACKEND_NAMES[backend]} within {limit:g}x of the raw floor", f"{product['vs_floor']}x the floor",
                       product["vs_floor"] <= limit, f"{trial['vs_floor']}x the floor" if trial.get("vs_floor") else None)
    recount = parts.get("recount")
    if recount:
        ratio = recount.get("ratio_kept_vs_hand_sql")
        trial = _get(recount, "ratios_vs_hand_sql", "range_sql_experiment")
        _check(rows, f"recount at {recount.get('entries', 0):,} entries within 1.5x of one hand-written UPDATE (PostgreSQL)", f"{ratio}x",
               ratio is not None and ratio <= 1.5,
               None if trial is None else f"{trial}x")
        changed = _get(recount, "no_drift", "changed")
        _check(rows, "recount with no drift writes nothing", f"{changed} rows changed", changed == 0)
    memory = parts.get("memory")
    if memory:
        _check(rows, "refusing a feed over the cap stops reading at the cap",
               f"server sent {_get(memory, 'refuse_streamed', 'server_sent_mb')} MB of {_get(memory, 'feeds', 'over', 'mb')} MB; "
               f"cap {memory.get('cap_mb')} MB", bool(memory.get("stopped_at_cap")))
    return rows


# --- markdown -----------------------------------------------------------------------------------


def _s(spread: dict | None, unit: str = "s", digits: int = 2) -> str:
    if not spread:
        return "—"
    return f"{spread['median']:.{digits}f} {unit} ({spread['min']:.{digits}f}–{spread['max']:.{digits}f})"


def _x(value) -> str:
    return "—" if value is None else f"{value}×"


def _met(row: dict) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[row["met"]]


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join("—" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _machine(results: dict) -> list[str]:
    m = results["machine"]
    packages = ", ".join(f"{name} {version}" for name, version in m["packages"].items() if version)
    load = ", ".join(f"{part} {v['before']}→{v['after']} ({v['elapsed_s']:.0f} s)" for part, v in results["load"].items())
    return [
        "## Machine", "",
        f"- {m['nproc']} CPU cores ({m['cpu'] or 'unknown model'}), {m['memory_gb']} GB RAM, {m['os']}",
        f"- Python {m['python']}; SQLite {m['sqlite']}" + (f"; PostgreSQL {m['postgresql']} on 127.0.0.1" if m.get("postgresql") else ""),
        f"- {packages}",
        f"- Shared machine: 1-minute load average before→after each part (its duration): {load}.",
        f"- Run started {results['started']}, took {results['elapsed_s'] / 60:.1f} min; corpus `{results['corpus']}` ({results['corpus_kind']}); "
        f"code at commit `{results.get('commit', '?')}`.",
        "",
    ]


def _parse(p: dict) -> list[str]:
    names = {"feedparser_sanitizing": "feedparser, sanitizer and URI resolver on (its default; what reader runs)",
             "feedparser_bare": "feedparser, sanitizer and resolver off",
             "product": "`parse_feed`: the fast path (else feedparser bare) + nh3 + entry values and hashes, 1 process",
             "product_pool": f"`parse_feed` in a process pool ({p.get('cpus')} processes, spawn start-up included)",
             "product_feedparser": "`parse_feed(parser=\"feedparser\")`: without the fast path",
             "document_feedparser": "the document alone, feedparser",
             "document_fast": "the document alone, the fast path first (`ingest/parse/fast.py`)",
             "fastfeedparser": "fastfeedparser `parse` (lxml; not feedparser's results)"}
    rows = [[label, _s(p[key]["wall_s"]), p[key]["entries"]] for key, label in names.items() if "wall_s" in p.get(key, {})]
    fast = (f"The fast path reads the documents {_x(p['fast_path_document_speedup_cpu'])} faster in CPU time "
            f"({_x(p.get('fast_path_product_speedup_cpu'))} for the whole `parse_feed`).") if p.get(
        "fast_path_document_speedup_cpu") else ""
    return [
        "## Parse levers (no HTTP, no database)", "",
        f"Every feed of the corpus parsed in one child process per variant, {p['repeat']} repetitions.", "",
        *_table(["variant", "wall (median, min–max)", "entries"], rows),
        f"feedparser's sanitizer and URI resolver are **{p['sanitizer_share_of_feedparser'] * 100:.0f} %** of feedparser's time. "
        f"The product's parse is {_x(p['product_vs_feedparser_sanitizing'])} faster than sanitizing feedparser in one process, "
        f"{_x(p['pool_vs_feedparser_sanitizing'])} with the pool (the pool alone: {_x(p['pool_speedup'])}). {fast}", "",
    ]


INGEST_LABELS = {
    "product_sqlite": "ingest_feeds → SQLite", "product_postgres": "ingest_feeds → PostgreSQL",
    "product_threads_sqlite": "ingest_feeds → SQLite, `INGEST_PARSE_PROCESSES=0` (parse in the fetch threads)",
    "product_feedparser_sqlite": "ingest_feeds → SQLite, `INGEST_PARSER=feedparser`",
    "reader_sqlite": "reader 3.26 `update_feeds` → SQLite",
    "product_1core_sqlite": "ingest_feeds → SQLite, one core (`taskset -c 0`)",
    "reader_1core_sqlite": "reader 3.26 → SQLite, one core (`taskset -c 0`)",
}


def _cpu(v: dict) -> str:
    return _s(v.get("cpu_s")) if v.get("cpu_s") else "—"


def _ingest(p: dict) -> list[str]:
    out: list[str] = []
    first = p.get("first")
    if first:
        rows = []
        for key, label in INGEST_LABELS.items():
            v = first.get(key)
            if not v:
                continue
            base = key.startswith("reader")
            rows.append([label, _s(v["wall_s"]), _cpu(v), v["entries"], v["entries_per_s"], v.get("entries_per_cpu_s"), v.get("failed"),
                         v.get("statements_per_source"), _s(v.get("peak_rss_mb"), "MB", 0), _s(v.get("peak_tree_rss_mb"), "MB", 0),
                         "1×" if base else _x(v.get("speedup_vs_reader")), "1×" if base else _x(v.get("cpu_vs_reader"))])
        out += [
            "## 1. Real-world ingest (first ingest)", "",
            f"{p['feeds']} feeds ({p['corpus_mb']} MB) served over 127.0.0.1 by a server in the parent process; each run in a fresh "
            f"child with a fresh database (sources registered beforehand), `--workers {p['workers']}` for both; "
            f"{p['repeat']} repetitions, interleaved. *CPU* is user+sys of the contender's whole process tree during the ingest: the "
            "child's threads and its parse processes (reaped when the pool closes, so `RUSAGE_CHILDREN` counts them; any still alive "
            "would be read from /proc). Peak RSS: the child itself, and its whole process tree. The one-core rows pin the child, and "
            "so its parse processes, to CPU 0; their ratios are against reader on one core. Statements: every SQL statement the "
            "product sent through Django, reads included, per source.", "",
            *_table(["contender", "wall (median, min–max)", "CPU s, tree (median, min–max)", "entries stored", "entries/s",
                     "entries per CPU-s", "feeds failed", "statements per source", "peak RSS", "peak RSS, tree",
                     "vs reader, wall", "vs reader, per CPU-second"], rows),
            "The targets are judged on medians. The product, which keeps both cores busy, loses more wall time to the other users "
            "of this machine than reader, which keeps one: the CPU-second ratio and the one-core ratio are less exposed to that.", "",
        ]
        if "same_data" in p:
            out += [f"Every `ingest_feeds` run of the default parse path above, on both databases, stored the same data: "
                    f"**{'yes' if p['same_data'] else 'NO'}** (fingerprint of the entries by content hash, their authors, "
                    "outbound links and pingbacks).", ""]
        if "parser_same_data" in p:
            setting = p.get("parser_setting")
            note = ("" if setting else " This code has no `INGEST_PARSER` setting, so both runs used the same parse path.")
            out += [f"The `INGEST_PARSER=feedparser` run stored the same data as the default run: "
                    f"**{'yes' if p['parser_same_data'] else 'NO'}** (the same fingerprint).{note}", ""]
        notes = []
        for key, label in INGEST_LABELS.items():
            v = first.get(key)
            if v and v.get("failed_examples"):
                notes.append(f"- {label}: failed feeds, e.g. " + "; ".join(f"`{e}`" for e in v["failed_examples"][:3]))
        if notes:
            out += ["Feeds a contender could not store (so entries/s is also given per entry stored):", "", *notes, ""]
    reingest = p.get("reingest")
    if reingest:
        rows = []
        for key, v in reingest.items():
            mode = "304 Not Modified" if "304" in key else "200, same body"
            who = "reader 3.26, " if key.startswith("reader") else ""
            backend = who + BACKEND_NAMES.get(key.rsplit("_", 1)[-1], key)
            reasons = ", ".join(f"{reason} {n}" for reason, n in (v.get("not_modified_reasons") or {}).items())
            rows.append([backend, mode, _s(v["wall_s"]), _cpu(v), _x(v.get("vs_first")), _x(v.get("speedup_vs_reader")),
                         f"{v.get('not_modified')}" + (f" ({reasons})" if reasons else ""),
                         v.get("entry_writes_max"), v.get("statements_per_source"),
                         ", ".join(f"{t} {n}" for t, n in v.get("writes_by_table", {}).items()) or "—"])
        out += [
            "## 2. Re-ingest", "",
            "The same feeds into the database of the first ingest: first the server answers 304 to the conditional requests, then it "
            "ignores them (200 with the same body). reader re-ingests its own first-ingest database the same two ways, with "
            "`update_feeds_iter(scheduled=False)` (by default reader skips feeds it is not due to update, and would fetch nothing). "
            "Statements counted with `connection.execute_wrapper`: all of them per source, and INSERT/UPDATE/DELETE per table; "
            "entry writes are those on entries, authors, their links, comments, pingbacks, outbound links and comment feeds; the "
            "others are the run ledger (`ingest_ingestrun`) and each source's own row (lease, validators, next fetch).", "",
            *_table(["contender", "server answers", "wall (median, min–max)", "CPU s, tree", "faster than its first ingest",
                     "vs reader, wall", "feeds not modified", "entry writes (max)", "statements per source", "writes by table"], rows),
        ]
    return out


def _scale(p: dict) -> list[str]:
    scale = p.get("scale")
    if not scale:
        return []
    rows = []
    for size in scale["sizes"]:
        row = scale["rows"][str(size)]
        for key, label in (("product_first", "ingest_feeds, first ingest"), ("product_again", "ingest_feeds, same bodies again"),
                           ("reader_first", "reader, first ingest"), ("reader_again", "reader, same bodies again")):
            v = row.get(key)
            if not v:
                continue
            rows.append([f"{size:,}", label, _s(v["wall_s"]), f"{v['ms_per_feed']:.2f} ms", f"{v['cpu_ms_per_feed']:.2f} ms",
                         v.get("statements_per_source"), _x(v.get("per_feed_vs_smallest")), _x(v.get("speedup_vs_reader")),
                         _x(v.get("cpu_vs_reader")), _s(v.get("peak_tree_rss_mb"), "MB", 0)])
    sizes = ", ".join(f"{n:,}" for n in scale["sizes"])
    return [
        "## Scale (generated feeds, SQLite)", "",
        f"`bench.generate` corpora of {sizes} feeds, {scale['entries_per_feed']} entries each (deterministic, alternating RSS "
        f"and Atom), served and ingested as above; the first ingest into a fresh database, then the same bodies again (200); "
        f"reader up to {scale['reader_max']:,} feeds. {p.get('repeat', 1)} repetition(s) per size. Per feed: wall time and CPU "
        "seconds (whole tree) divided by the feeds; the prepare step (registering the sources) is not timed in them.", "",
        *_table(["feeds", "contender", "wall (median, min–max)", "time per feed", "CPU per feed", "statements per source",
                 f"time per feed vs {scale['smallest']:,} feeds", "vs reader, wall", "vs reader, per CPU-second",
                 "peak RSS, tree"], rows),
    ]


def _upsert(p: dict) -> list[str]:
    out = [
        "## 3. Upsert", "",
        f"{p['entries']:,} entries over {p['sources']:,} sources, built in memory as `ParsedFeed` values (no HTTP, no parsing, no "
        "authors, so that every contender writes the same rows), one transaction per source for the product and the floor; "
        f"{p['repeat']} repetitions, each contender in a fresh child on a fresh copy of the database. The naive loop "
        f"(`update_or_create` per entry, in autocommit as such loops are written; and, kinder, inside one transaction per source) "
        f"runs on {p['naive_sample'] * 100:g} % of the sources and its time is scaled ×"
        f"{1 / p['naive_sample']:.3g} (its cost per entry is flat). Raw floor: the DB-API cursor, `executemany` INSERT (new), "
        "a SELECT of the existing hashes (unchanged), that SELECT plus `executemany` UPDATE of the changed rows (changed); "
        "and COPY on PostgreSQL (new only); the floor commits as the product does (asynchronously on PostgreSQL), "
        "the naive loops as such loops do (synchronously).", "",
    ]
    labels = {"product": "`feed_upsert` (product)", "naive": "naive `update_or_create` loop, autocommit (scaled)",
              "naive_tx": "naive loop, one transaction per source (scaled)",
              "executemany": "raw `executemany` (floor)", "copy": "raw COPY (floor)",
              "experiment": f"experiment: product + {p.get('experiments', '')} (bench/experiments.py)"}
    for backend, table in p["backends"].items():
        rows = []
        for key, label in labels.items():
            if key not in table:
                continue
            row = [label]
            for case in ("new", "unchanged", "changed"):
                v = table[key].get(case)
                row.append(f"{_s(v['wall_s'])}" if v else "—")
            rows.append(row)
        cases = ("new", "unchanged", "changed")
        for name in ("product", "experiment"):
            if name not in table:
                continue
            mine = table[name]
            who = "product" if name == "product" else "experiment"
            rows.append([f"**{who} vs naive loop** (speed-up)", *[_x(mine[c].get("speedup_vs_naive")) for c in cases]])
            rows.append([f"{who} vs naive loop, one transaction per source", *[_x(mine[c].get("speedup_vs_naive_tx")) for c in cases]])
            rows.append([f"**{who} / floor** (best of executemany, COPY)", *[_x(mine[c].get("vs_floor")) for c in cases]])
        floor = table["executemany"]
        rows.append(["raw executemany vs naive loop (speed-up)", *[_x(floor[c].get("speedup_vs_naive")) for c in cases]])
        rows.append(["raw executemany vs naive loop, one transaction per source", *[_x(floor[c].get("speedup_vs_naive_tx")) for c in cases]])
        same = "identical" if table.get("same_rows") else "**NOT identical**"
        out += [f"### {BACKEND_NAMES[backend]}", "", *_table(["", "all new", "all unchanged", "10 % changed"], rows),
                f"Rows stored by every full-size contender after the three cases: {same} (fingerprint of every column).", ""]
    return out


def _recount(p: dict) -> list[str]:
    names = {"update_subquery": "chunked UPDATE with correlated counts", "read_bulk_update": "chunked range read + bulk_update",
             "annotated_read": "chunked annotated read + UPDATE of the drifted rows",
             "range_aggregate": "chunked range read + UPDATE of the drifted rows (the fallback)",
             "set_based": "one UPDATE … FROM (GROUP BY) per chunk, drifted rows only",
             "range_sql_experiment": "experiment: the hand-written UPDATE run per keyset chunk (bench/experiments.py)"}
    rows = []
    for key in [*p.get("ratios_vs_hand_sql", {}), "hand_sql"]:
        if key not in p:
            continue
        label = "one hand-written UPDATE … FROM (GROUP BY)" if key == "hand_sql" else f"`{key}`: {names.get(key, 'strategy')}"
        kept = " (kept)" if key == p.get("kept") else ""
        ratio = "1×" if key == "hand_sql" else _x(_get(p, "ratios_vs_hand_sql", key))
        rows.append([label + kept, f"{p[key]['median_s']:.2f} s ({p[key]['min_s']:.2f}–{p[key]['max_s']:.2f})", p[key]["changed"], ratio])
    if "no_drift" in p:
        v = p["no_drift"]
        rows.append([f"`{p.get('kept')}`, counters already right", f"{v['median_s']:.2f} s ({v['min_s']:.2f}–{v['max_s']:.2f})",
                     v["changed"], "—"])
    return [
        "## 4. Recount (PostgreSQL)", "",
        f"`recompute_counts` over {p['entries']:,} entries and {p['comments']:,} comments ({p['entries'] // 3:,} pingbacks), "
        f"{p['drift'] * 100:g} % of the counters drifted before each run, chunks of {p['chunk_size']}; `bench/recount.py`, "
        "each strategy in turn (`bench/recount_strategies.py`, passed as `counts_recompute(reconcile=...)`), then the "
        "hand-written UPDATE.", "",
        *_table(["strategy", "wall (median, min–max)", "rows changed", "vs hand-written UPDATE"], rows),
    ]


def _memory(p: dict) -> list[str]:
    labels = {"baseline": "ingest a 1-entry feed (baseline)", "ingest_big": f"ingest a {p['feeds']['big']['mb']} MB feed "
              f"({p['feeds']['big']['entries']:,} entries)", "refuse_declared": f"refuse a {p['feeds']['over']['mb']} MB feed "
              "(Content-Length over the cap)", "refuse_streamed": f"refuse a {p['feeds']['over']['mb']} MB feed sent chunked (no length)"}
    rows = []
    for key, label in labels.items():
        v = p[key]
        rows.append([label, v["outcome"], _s(v["peak_rss_mb"], "MB", 0), f"+{v['peak_rss_over_baseline_mb']} MB",
                     _s(v["peak_tree_rss_mb"], "MB", 0), f"{v['server_sent_mb']} MB", _s(v["wall_s"])])
    return [
        "## 5. Memory", "",
        f"One source per run, a fresh child and a fresh (already migrated) SQLite database each time; cap `INGEST_MAX_BYTES` = "
        f"{p['cap_mb']} MB; {p['repeat']} repetitions. *Sent* is what the server managed to write before the client hung up "
        "(for a refused stream: the cap plus the kernel's socket buffers).", "",
        *_table(["case", "outcome", "peak RSS", "over baseline", "peak RSS, tree", "sent by the server", "wall"], rows),
        f"Stopped reading at the cap: **{'yes' if p.get('stopped_at_cap') else 'NO'}**.", "",
    ]


def _profiles(results: dict) -> list[str]:
    out: list[str] = []
    ingest_profile = _get(results, "parts", "ingest", "profile")
    upsert_profiles = _get(results, "parts", "upsert", "profile") or {}
    if not ingest_profile and not upsert_profiles:
        return out
    out += ["## Profiles (py-spy, this run)", "",
            "Sampled from outside the process (every thread, every parse process), so they cost the measured code nothing. "
            "CPU seconds, not wall time.", ""]
    if ingest_profile:
        roles = ", ".join(f"{role} {s} s" for role, s in ingest_profile["cpu_s_by_role"].items())
        out += [f"**First ingest on SQLite**, CPU by role: {roles}.", "",
                f"Inside the per-source write (`{ingest_profile['anchor']}`, {ingest_profile['anchor_s']} s on the main thread):", "",
                *_table(["function (inclusive)", "CPU s"], ingest_profile["anchor_inclusive"][:14])]
    for backend, profile in upsert_profiles.items():
        if profile:
            out += [f"**Upsert on {BACKEND_NAMES[backend]}** (product contender, all three cases), inside `{profile['anchor']}` "
                    f"({profile['anchor_s']} s):", "", *_table(["function (inclusive)", "CPU s"], profile["anchor_inclusive"][:14])]
    return out


def markdown(results: dict) -> str:
    parts = results["parts"]
    lines = [
        "# Benchmarks", "",
        "Generated by `bench/run.py` from one run on this machine; do not edit the tables by hand, run the command again. "
        "Raw numbers: `bench/results/latest.json` (not committed). Times are medians with the min–max of the repetitions; "
        "ratios are taken between contenders measured in the same run, interleaved, because the machine is shared and noisy.", "",
        "```sh", f"{results['command']}", "```", "",
        "Without `../shared` (a generated corpus), or quickly:", "",
        "```sh",
        "python -m bench.generate --out var/bench/corpus --feeds 200 --entries-per-feed 30",
        "python -m bench.run --corpus var/bench/corpus --postgres-url postgres://postgres@127.0.0.1:5432/bench",
        "python -m bench.run --scale tiny            # about a minute, SQLite only: what tests/test_bench.py runs",
        "python -m bench.run --only scale --scale-feeds 200,2000   # the scale part alone, smaller",
        "python -m bench.run --only upsert --repeat 1 --postgres-url postgres://postgres@127.0.0.1:5432/bench",
        "```", "",
        HOW_READ, "",
        *_machine(results),
        "## Targets", "",
        "The last column is the same measurement of the changes proposed at the end of this page, run beside the product "
        "(bench-only experiments, `bench/experiments.py`; the product is unchanged).", "",
        *_table(["target", "measured", "", "with the proposals (experiment)"],
                [[row["target"], row["measured"], _met(row), row.get("experiment")] for row in results["targets"]]),
    ]
    if results.get("errors"):
        lines += ["**Parts that failed in this run:** " + ", ".join(results["errors"]), ""]
    if "ingest" in parts:
        lines += _ingest(parts["ingest"])
    if "scale" in parts:
        lines += _scale(parts["scale"])
    if "upsert" in parts:
        lines += _upsert(parts["upsert"])
    if "recount" in parts:
        lines += _recount(parts["recount"])
    if "memory" in parts:
        lines += _memory(parts["memory"])
    if "parse" in parts:
        lines += _parse(parts["parse"])
    lines += _profiles(results)
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> None:
    """Re-render a report from a saved run, without measuring: python -m bench.report RESULTS.json OUT.md"""
    import json
    import sys

    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 2:
        raise SystemExit("usage: python -m bench.report bench/results/latest.json docs/benchmarks.md")
    Path(args[1]).write_text(markdown(json.loads(Path(args[0]).read_text())))


if __name__ == "__main__":
    main()
