"""API benchmark: ``GET /api/entries/?page_size=100`` served by gunicorn, beside the floor (the same
page from a plain Django view with ``values()``) and the same list before its read path was sped up
(``bench/api_site.py``), loaded by wrk on loopback.

    python -m bench.api                                   # 100,000 entries, SQLite under var/bench/
    python -m bench.api --entries 2000 --rounds 1 --duration 3       # a quick run
    python -m bench.api --database-url postgres://postgres@127.0.0.1:5432/bench_api

What it does, in order:

1. a fresh database (a SQLite file under var/bench/, or the ``bench_*`` PostgreSQL database of
   ``--database-url``, dropped and created), migrated and filled with bulk inserts: ``--articles``
   sources, ``--entries`` entries with headline and body sizes drawn like the real corpus's
   (log-normal: headlines ~35 characters, bodies median ~700, mean ~3,900, capped at 64 KB, half
   of them with non-ASCII text), 1-3 authors each from their source's four, and a staff user with
   a token (``ingest.services.tokens.token_issue``). ``--reuse`` keeps a database already filled;
2. in this process, with Django's test client: the queries of one request to each endpoint (the
   API's should be a constant three: token, entries, authors), and with ``--profile N`` the
   in-process time per request and a cProfile of N API requests (``var/bench/logs/api-profile.txt``);
3. gunicorn in production mode (``DJANGO_DEBUG`` off, a generated ``DJANGO_SECRET_KEY``, the
   product's ``pipeline.gunicorn_conf``, ``--workers`` for every endpoint) on 127.0.0.1; every
   endpoint's page fetched once and compared with the floor's: the same rows with the same values,
   or the run stops;
4. a warm-up, then ``--rounds`` rounds of (api, generic, floor), interleaved, each a wrk run of
   ``--duration`` seconds (``-t --wrk-threads -c --connections --latency``). Per run: requests/s,
   p50 and p99, errors, and the CPU seconds the gunicorn processes spent (``/proc/<pid>/stat``)
   per 1,000 requests, beside wrk's own.

Prints one JSON object (``--out`` also writes it) and a Markdown table on stderr. The ratios are
taken within each round (slower / faster for latency and CPU, faster / slower for requests/s), and
their median reported beside the ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import ROOT
from bench.harness import LOGS, WORK, emit, spread

# The product, the product's list as it was before its read path was sped up (bench/api_site.py), the floor.
ENDPOINTS = {"api": "/api/entries/", "generic": "/bench/generic/", "floor": "/bench/floor/"}
LABELS = {"api": "`/api/entries/` (DRF, as shipped)", "generic": "the same before the speed-up (`/bench/generic/`)",
          "floor": "floor (`values()` view, `/bench/floor/`)"}
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
WORDS = ("index query plan latency replica shard cache vacuum lock commit rollback snapshot cursor batch stream "
         "release kernel scheduler compiler parser benchmark deploy container queue worker feed").split()
UNICODE_WORDS = ("café", "naïve", "Zürich", "façade", "日本語", "Ελληνικά", "русский", "emoji 🚀", "—", "“quoted”")
FIRST = ("Ada", "Grace", "Linus", "Zoë", "José", "Björn", "Anaïs", "Chen", "Priya", "Kenji", "Olu", "Mateus", "Ana")
LAST = ("Lovelace", "Hopper", "Torvalds", "Müller", "García", "Ødegaard", "Nakamura", "Okafor", "Silva", "Łukasik")


# --- data ---------------------------------------------------------------------------------------


def _text(rng: random.Random, length: int, *, html: bool) -> str:
    """About ``length`` characters of words (one in eight non-ASCII in half the texts), as HTML paragraphs."""
    pool = WORDS + list(UNICODE_WORDS) if rng.random() < 0.5 else WORDS
    words, size = [], 0
    while size < length:
        word = rng.choice(pool)
        words.append(word)
        size += len(word) + 1
    if not html:
        return " ".join(words).capitalize()
    step = 60  # words per paragraph
    return "".join(f"<p>{' '.join(words[i:i + step])}</p>" for i in range(0, len(words), step))


def fill(entries: int, articles: int, seed: int = 1) -> str:
    """Bulk-insert the corpus (entries through the DB-API cursor: the ORM would take minutes); the token's key."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from ingest.identity import guid_key, url_key
    from ingest.models import Author, Entry, TechnicalArticle
    from ingest.services.tokens import token_issue

    rng = random.Random(seed)
    TechnicalArticle.objects.bulk_create(
        TechnicalArticle(name=f"{rng.choice(WORDS).title()} {rng.choice(UNICODE_WORDS + ('Weekly', 'Blog'))} {a}",
                         feed_url=f"https://blog{a}.example/feed.xml", site_url=f"https://blog{a}.example/")
        for a in range(articles))
    article_ids = list(TechnicalArticle.objects.order_by("id").values_list("id", flat=True))
    Author.objects.bulk_create(Author(name=f"{first} {last} {a}", email=f"author{a}@blog{a % articles}.example")
                               for a in range(articles * 4) for first, last in [(rng.choice(FIRST), rng.choice(LAST))])
    author_ids = list(Author.objects.order_by("id").values_list("id", flat=True))
    ops = connection.ops
    columns = ("technical_article_id", "headline", "body_text", "pub_date", "mod_date", "number_of_comments",
               "number_of_pingbacks", "rating", "guid", "guid_key", "link", "link_key", "published_at", "content_hash",
               "comments_feed_url", "reported_comments", "ingested_at", "updated_at")
    insert = f"INSERT INTO ingest_entry ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    pairs: list[tuple[int, int]] = []  # (n-th entry, author id): entry ids are known only once inserted
    with transaction.atomic(), connection.cursor() as cursor:
        for start in range(0, entries, 5000):
            rows = []
            for n in range(start, min(start + 5000, entries)):
                a = rng.randrange(articles)
                published = NOW - timedelta(seconds=rng.randrange(2 * 365 * 86400))
                ingested = published + timedelta(minutes=rng.randrange(1, 120), microseconds=rng.randrange(10**6))
                headline = _text(rng, min(200, max(5, round(rng.lognormvariate(math.log(35), 0.55)))), html=False)[:200]
                body = _text(rng, min(65536, round(rng.lognormvariate(math.log(700), 1.87))), html=True)
                link = "" if rng.random() < 0.05 else f"https://blog{a}.example/{published:%Y/%m}/post-{n}"
                guid = link or f"tag:blog{a}.example,2026:{n}"
                rows.append((article_ids[a], headline, body, ops.adapt_datefield_value(published.date()),
                             ops.adapt_datefield_value(ingested.date()), min(int(rng.expovariate(0.3)), 500),
                             rng.choice((0, 0, 0, 1, 2)), rng.choice((5, 5, 5, 3, 8)), guid, guid_key(guid), link,
                             url_key(link) if link else "", ops.adapt_datetimefield_value(published),
                             secrets.token_hex(32), f"{link}/comments/feed" if link else "", None,
                             ops.adapt_datetimefield_value(ingested), ops.adapt_datetimefield_value(ingested)))
                own = author_ids[a * 4:a * 4 + 4]  # each source's four authors
                pairs += [(n, author) for author in rng.sample(own, rng.choices((1, 2, 3), (6, 3, 1))[0])]
            cursor.executemany(insert, rows)
        ids = list(Entry.objects.order_by("id").values_list("id", flat=True))
        cursor.executemany("INSERT INTO ingest_entry_authors (entry_id, author_id) VALUES (%s, %s)",
                           [(ids[n], author) for n, author in pairs])
    get_user_model().objects.create_user("bench", is_staff=True)
    return token_issue(username="bench").key


# --- in-process checks --------------------------------------------------------------------------


def queries(key: str, page_size: int, profile: int) -> dict:
    """The queries of one request to each endpoint (and of the API at another page size and on page 2)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Token {key}")
    counts = {}
    for name, url in (("api", f"/api/entries/?page_size={page_size}"), ("api_page_size_10", "/api/entries/?page_size=10"),
                      ("generic", f"/bench/generic/?page_size={page_size}"), ("floor", f"/bench/floor/?page_size={page_size}")):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
        counts[name] = len(captured)
        if name == "api":
            with CaptureQueriesContext(connection) as captured:
                assert client.get(response.json()["next"]).status_code == 200
            counts["api_page_2"] = len(captured)
            counts["api_sql"] = [q["sql"][:120] for q in captured]
    if profile:
        import cProfile
        import pstats

        LOGS.mkdir(parents=True, exist_ok=True)
        for name in ENDPOINTS:  # in-process time per request, no HTTP: what the stack itself costs
            started = time.perf_counter()
            for _ in range(profile):
                client.get(f"{ENDPOINTS[name]}?page_size={page_size}")
            counts[f"{name}_in_process_ms"] = round(1000 * (time.perf_counter() - started) / profile, 2)
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [client.get(f"/api/entries/?page_size={page_size}") for _ in range(profile)])
        with (LOGS / "api-profile.txt").open("w") as out:
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(60)
    return counts


# --- the server and the load --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _workers(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as handle:
        return [master, *(int(k) for k in handle.read().split())]


def server_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of the gunicorn processes so far."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def _get(url: str, key: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {key}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def serve(env: dict, workers: int, port: int, key: str) -> subprocess.Popen:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / "api-gunicorn.log").open("ab")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "pipeline.wsgi:application", "--bind", f"127.0.0.1:{port}",
                               "--workers", str(workers), "--config", "python:pipeline.gunicorn_conf"],
                              cwd=ROOT, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            _get(f"http://127.0.0.1:{port}/bench/floor/?page_size=1", key)
            if len(_workers(server.pid)) == workers + 1:
                return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise RuntimeError(f"gunicorn did not come up; see {LOGS / 'api-gunicorn.log'}")
        time.sleep(0.2)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS[unit]


def wrk(url: str, key: str, args) -> dict:
    """One wrk run; requests/s, latency percentiles (ms), errors, and wrk's own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(["wrk", f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
                           "-H", f"Authorization: Token {key}", url], capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout
    latency = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    if len(latency) < 4:
        raise RuntimeError(f"wrk measured nothing on {url}:\n{out}{proc.stderr}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": _ms(latency["50"]), "p90_ms": _ms(latency["90"]), "p99_ms": _ms(latency["99"]),
            "errors": errors + (int(non_2xx.group(1)) if non_2xx else 0),
            "wrk_cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3)}


# --- the run ------------------------------------------------------------------------------------


def _database(url: str | None, reuse: bool) -> str:
    from bench.common import postgres_create
    from bench.harness import sqlite_url

    if url is None:
        path = WORK / "api.sqlite3"
        return f"sqlite:///{path}" if reuse and path.exists() else sqlite_url("api")
    name = url.rsplit("/", 1)[1]
    if not name.startswith("bench_"):
        raise SystemExit(f"--database-url must name a database of its own, bench_*, not {name!r}: it is dropped")
    return url if reuse else postgres_create(url)


def run(args) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.api_settings", "DJANGO_DEBUG": "0",
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DATABASE_URL": _database(args.database_url, args.reuse)}
    os.environ.update(env)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from bench.common import migrate
    from ingest.models import Entry

    started = time.perf_counter()
    migrate()
    if args.reuse and Entry.objects.count() == args.entries:
        from rest_framework.authtoken.models import Token

        key = Token.objects.get(user__username="bench").key
    else:
        key = fill(args.entries, args.articles)
    fill_s = time.perf_counter() - started
    result: dict = {"entries": Entry.objects.count(), "articles": args.articles, "fill_s": round(fill_s, 1),
                    "database": connection.vendor, "page_size": args.page_size, "workers": args.workers,
                    "wrk": f"-t{args.wrk_threads} -c{args.connections} -d{args.duration}s --latency",
                    "rounds": args.rounds, "cpus": os.cpu_count(),
                    "queries": queries(key, args.page_size, args.profile)}
    connection.close()
    port = _free_port()
    server = serve(env, args.workers, port, key)
    try:
        urls = {name: f"http://127.0.0.1:{port}{path}?page_size={args.page_size}" for name, path in ENDPOINTS.items()}
        pages = {name: _get(url, key)["results"] for name, url in urls.items()}
        for name, page in pages.items():
            if page != pages["floor"] or len(page) != min(args.page_size, result["entries"]):
                differ = next(((a, f) for a, f in zip(page, pages["floor"]) if a != f), (len(page), len(pages["floor"])))
                raise SystemExit(f"{name} and the floor do not return the same rows, nothing measured; first difference: {differ}")
        result["same_rows"] = True
        result["page_bytes"] = {name: len(urllib.request.urlopen(urllib.request.Request(
            url, headers={"Authorization": f"Token {key}"})).read()) for name, url in urls.items()}
        pids = _workers(server.pid)
        for url in urls.values():  # warm-up: connections, caches, the workers' first requests
            wrk(url, key, argparse.Namespace(**{**vars(args), "duration": args.warmup}))
        runs: dict[str, list[dict]] = {name: [] for name in urls}
        loads = [round(os.getloadavg()[0], 2)]
        for _ in range(args.rounds):
            for name, url in urls.items():  # interleaved: the machine's other load falls on all alike
                cpu = server_cpu(pids)
                measured = wrk(url, key, args)
                measured["server_cpu_s"] = round(server_cpu(pids) - cpu, 3)
                measured["server_cpu_s_per_1000"] = round(1000 * measured["server_cpu_s"] / max(measured["requests"], 1), 3)
                runs[name].append(measured)
            loads.append(round(os.getloadavg()[0], 2))
        if _workers(server.pid) != pids:
            raise SystemExit("A gunicorn worker was replaced during the run (see var/bench/logs/api-gunicorn.log).")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    result["load_1min"] = loads
    for name, reps in runs.items():
        result[name] = {metric: spread([r[metric] for r in reps], digits=3)
                        for metric in ("rps", "p50_ms", "p99_ms", "server_cpu_s_per_1000", "wrk_cpu_s")}
        result[name]["errors"] = sum(r["errors"] for r in reps)
        result[name]["requests"] = sum(r["requests"] for r in reps)
    for slow, fast in (("api", "floor"), ("generic", "floor"), ("generic", "api")):  # > 1: slow is slower by that factor
        result[f"{slow}_vs_{fast}"] = {
            "rps": _ratios([f["rps"] for f in runs[fast]], [s["rps"] for s in runs[slow]]),
            **{metric: _ratios([s[metric] for s in runs[slow]], [f[metric] for f in runs[fast]])
               for metric in ("p50_ms", "p99_ms", "server_cpu_s_per_1000")}}
    result["targets"] = {"within_2x_of_floor": result["api_vs_floor"]["rps"]["median_of_rounds"] <= 2,
                         "p99_under_100_ms": result["api"]["p99_ms"]["max"] < 100}
    return result


def _ratios(slow: list[float], fast: list[float]) -> dict:
    return {"of_medians": round(statistics.median(slow) / statistics.median(fast), 2),
            "median_of_rounds": round(statistics.median(s / f for s, f in zip(slow, fast)), 2)}


def table(result: dict) -> str:
    def cell(spread_: dict, digits: int = 1) -> str:
        return f"{spread_['median']:.{digits}f} ({spread_['min']:.{digits}f}–{spread_['max']:.{digits}f})"

    lines = ["| endpoint | requests/s | p50 ms | p99 ms | server CPU s / 1000 requests | wrk CPU s per run | errors |",
             "|---|---|---|---|---|---|---|"]
    for name, label in LABELS.items():
        r = result[name]
        lines.append(f"| {label} | {cell(r['rps'])} | {cell(r['p50_ms'])} | {cell(r['p99_ms'])} | "
                     f"{cell(r['server_cpu_s_per_1000'], 2)} | {cell(r['wrk_cpu_s'])} | {r['errors']} |")
    for pair, label in (("api_vs_floor", "**API / floor**"), ("generic_vs_floor", "before / floor"),
                        ("generic_vs_api", "before / API (the speed-up)")):
        lines.append(f"| {label} (median of rounds; of medians) | " + " | ".join(
            f"{result[pair][m]['median_of_rounds']}× ({result[pair][m]['of_medians']}×)"
            for m in ("rps", "p50_ms", "p99_ms", "server_cpu_s_per_1000")) + " | | |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--database-url", help="postgres://…/bench_* (dropped and created); default: var/bench/api.sqlite3")
    parser.add_argument("--reuse", action="store_true", help="keep the database if it already has --entries entries")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (the product's image runs 2)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk per endpoint before measuring")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile N in-process API requests")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    result = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    sys.stderr.write(table(result) + "\n")
    return emit(result)


if __name__ == "__main__":
    main()
