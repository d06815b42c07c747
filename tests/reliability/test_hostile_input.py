"""Hostile and broken feeds, served over 127.0.0.1, ingested by ``manage.py ingest_feeds`` in its own process.

One run takes every hostile source at once, as a real run would meet them: entity bombs, external
entities, an endless body, a gzip bomb, a server dripping one byte a second, wrong and missing
encodings, script in titles and bodies, absurd dates, duplicate guids, redirect loops, redirects
and sources aimed at the cloud metadata address, private networks, localhost, ``file:``, ``ftp:``
and ``gopher:``. The process runs behind the network tripwire (``tripwire``): an attempt to leave
loopback is refused *and* recorded, so "refused by the SSRF guard" means refused before connecting.

The feed server listens on 127.0.0.2 and only 127.0.0.2/32 is allowed (``INGEST_ALLOWED_NETWORKS``),
so "localhost" (127.0.0.1, where a canary server counts every connection) is as forbidden as it
is in production.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db.models import Max
from django.db.models.functions import Length

from ingest.models import Entry, IngestRun, TechnicalArticle
from samples.feedserver import FeedServer
from tests.helpers import postgres_only, rss, rss_item, snapshot, vendor
from tests.reliability.runner import manage, observe

DATA = Path(__file__).parent / "data"

pytestmark = pytest.mark.django_db(transaction=True)

MIB = 1 << 20
ENV = {"INGEST_ALLOWED_NETWORKS": "127.0.0.2/32", "INGEST_DEADLINE": "3", "INGEST_READ_TIMEOUT": "2",
       "INGEST_CONNECT_TIMEOUT": "2"}
MEMORY_LIMIT_MB = 600  # the bombs below would need 1 GiB (gzip) or ~2.5 GB (entities) if they went off

UNSAFE_HTML = re.compile(r"<\s*(script|iframe|object|embed|form|input|style|meta|base|link|svg|math|noscript)\b"
                         r"|\bon[a-z]+\s*=|javascript:|data:text/html|srcdoc", re.IGNORECASE)
TAG = re.compile(r"<\s*/?\s*[a-zA-Z]")


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory) -> Path:
    """1 GiB of zeros in about 1 MB: sixteen gzip members of 64 MiB each (RFC 1952 allows a series)."""
    member = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = member.compress(b"\0" * (64 * MIB)) + member.flush()
    path = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    path.write_bytes(block * 16)
    return path


@pytest.fixture
def hostile_server():
    with FeedServer(host="127.0.0.2") as server:
        yield server


@pytest.fixture
def canary():
    """A server on localhost: the guard must never let a request reach it."""
    with FeedServer(host="127.0.0.1") as server:
        server.add("/feed", rss([rss_item("canary", "canary")]))
        yield server


@dataclass(frozen=True)
class Case:
    path: str  # on the hostile server, or an absolute URL registered as is
    expect: str  # "ingest", "fail" or "either" (fail with a recorded reason, or ingest safely)
    reason: str = ""  # regex the recorded error must match when the source fails
    note: str = ""


def _file(name: str) -> dict:
    return {"file": DATA / name}


ENC = DATA / "encodings"


def _script(server: FeedServer, canary: FeedServer, bomb: Path) -> list[Case]:
    """Script the hostile server; return the sources to register and what each must do."""
    small = rss([rss_item("drip-1", "Dripped")])
    routes: list[tuple[str, dict, Case]] = [
        ("/billion-laughs.rss", _file("billion-laughs.rss"), Case("/billion-laughs.rss", "either", note="entity bomb")),
        ("/quadratic.rss", _file("quadratic-blowup.rss"), Case("/quadratic.rss", "either", note="quadratic blowup")),
        ("/xxe-file.rss", _file("xxe-file.rss"), Case("/xxe-file.rss", "either", note="external entity file:///etc/passwd")),
        ("/xxe-network.atom", _file("xxe-network.atom"), Case("/xxe-network.atom", "either", note="external entities over http")),
        ("/external-dtd.rss", _file("external-dtd.rss"), Case("/external-dtd.rss", "ingest", note="external DTD")),
        ("/endless", {"endless": True}, Case("/endless", "fail", r"exceeds the 10 MiB cap")),
        ("/gzip-bomb", {"file": bomb, "headers": {"Content-Encoding": "gzip"}},
         Case("/gzip-bomb", "fail", r"exceeds the 10 MiB cap")),
        ("/drip", {"body": small, "drip": 1.0}, Case("/drip", "fail", r"deadline of 3 s was exceeded")),
        ("/xss.rss", _file("xss.rss"), Case("/xss.rss", "ingest")),
        ("/xss.atom", {**_file("xss.atom"), "content_type": "application/atom+xml"}, Case("/xss.atom", "ingest")),
        ("/dates.rss", _file("dates.rss"), Case("/dates.rss", "ingest")),
        ("/dup-guids.rss", _file("dup-guids.rss"), Case("/dup-guids.rss", "ingest")),
        ("/dup-guids-again.rss", _file("dup-guids.rss"), Case("/dup-guids-again.rss", "ingest")),
        # Encodings: wrong, missing, bogus, mixed.
        ("/enc/latin1-declared-utf8", {"file": ENC / "latin1-declared-utf8.rss",
                                       "content_type": "application/rss+xml; charset=utf-8"},
         Case("/enc/latin1-declared-utf8", "ingest")),
        ("/enc/latin1-undeclared", {"file": ENC / "latin1-undeclared.rss"}, Case("/enc/latin1-undeclared", "ingest")),
        ("/enc/no-content-type", {"file": ENC / "latin1-declared.rss", "content_type": None},
         Case("/enc/no-content-type", "ingest")),
        ("/enc/utf16-bom", {"file": ENC / "utf16-bom.rss", "content_type": "application/xml"}, Case("/enc/utf16-bom", "ingest")),
        ("/enc/utf16le-no-bom-said-utf8", {"file": ENC / "utf16le-no-bom.rss", "content_type": "application/xml; charset=utf-8"},
         Case("/enc/utf16le-no-bom-said-utf8", "either")),
        ("/enc/bogus-charset", {"file": ENC / "astral.rss", "content_type": "application/xml; charset=x-no-such-charset"},
         Case("/enc/bogus-charset", "ingest")),
        ("/enc/bogus-declaration", {"file": ENC / "bogus-declaration.rss"}, Case("/enc/bogus-declaration", "ingest")),
        ("/enc/sjis-said-latin1", {"file": ENC / "sjis-declared-latin1.rss", "content_type": "text/xml"},
         Case("/enc/sjis-said-latin1", "either")),
        ("/enc/astral", {"file": ENC / "astral.rss"}, Case("/enc/astral", "ingest")),
        ("/enc/nul-and-controls", {"file": ENC / "nul-and-controls.rss"}, Case("/enc/nul-and-controls", "either")),
        ("/enc/surrogate-charrefs", {"file": ENC / "surrogate-charrefs.rss"}, Case("/enc/surrogate-charrefs", "either")),
        ("/enc/windows1252", {"file": ENC / "windows1252-smart-quotes.rss"}, Case("/enc/windows1252", "ingest")),
        ("/enc/mixed", {"file": ENC / "mixed-utf8-latin1.rss"}, Case("/enc/mixed", "either")),
        ("/enc/lying-length", {"body": small, "headers": {"Content-Length": "999999"}}, Case("/enc/lying-length", "fail", r".")),
        ("/enc/bad-gzip", {"body": b"\x1f\x8b\x08\x00garbage" * 10, "headers": {"Content-Encoding": "gzip"}},
         Case("/enc/bad-gzip", "fail", r"corrupt gzip")),
        ("/enc/brotli-claimed", {"body": small, "headers": {"Content-Encoding": "br"}},
         Case("/enc/brotli-claimed", "fail", r"unsupported Content-Encoding|corrupt br-compressed")),
        ("/not-a-feed.html", {"body": "<!DOCTYPE html><html><body><script>alert(1)</script></body></html>",
                              "content_type": "text/html"}, Case("/not-a-feed.html", "fail", r"HTML page")),
        ("/binary", {"body": bytes(range(256)) * 64, "content_type": "application/octet-stream"}, Case("/binary", "fail", r".")),
        ("/empty", {"body": b""}, Case("/empty", "fail", r"empty")),
        # Redirects: a loop, a chain that never ends, and every way out of the allowed network.
        ("/loop-a", {"status": 302, "headers": {"Location": "/loop-b"}, "content_type": None}, Case("/loop-a", "fail", r"redirects in a loop")),
        ("/loop-b", {"status": 302, "headers": {"Location": "/loop-a"}, "content_type": None}, Case("/loop-b", "fail", r"redirects in a loop")),
        *[(f"/chain-{i}", {"status": 307, "headers": {"Location": f"/chain-{i + 1}"}, "content_type": None}, None) for i in range(1, 9)],
        ("/chain-0", {"status": 307, "headers": {"Location": "/chain-1"}, "content_type": None}, Case("/chain-0", "fail", r"Gave up after 5 redirects")),
    ]
    ssrf_redirects = {
        "/to-metadata": ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", r"Refused .*169\.254\.169\.254.* link-local"),
        "/to-private": ("http://10.0.0.1/feed.xml", r"Refused .*10\.0\.0\.1.* private"),
        "/to-localhost": (canary.url("/feed").replace("127.0.0.1", "localhost"), r"Refused .*localhost.* loopback"),
        "/to-loopback-ip": (canary.url("/feed"), r"Refused .*127\.0\.0\.1.* loopback"),
        "/to-decimal-metadata": ("http://2852039166/latest/meta-data/", r"Refused .*169\.254\.169\.254"),
        "/to-mapped-metadata": ("http://[::ffff:169.254.169.254]/latest/", r"Refused .*link-local"),
        "/to-file": ("file:///etc/passwd", r"Only http and https URLs can be fetched, not file: URLs"),
        "/to-gopher": ("gopher://127.0.0.2:70/_GET%20/", r"not gopher: URLs"),
        "/to-ftp": ("ftp://127.0.0.2/feed.xml", r"not ftp: URLs"),
    }
    for path, (target, reason) in ssrf_redirects.items():
        routes.append((path, {"status": 302, "headers": {"Location": target}, "content_type": None}, Case(path, "fail", reason)))
    for path, reply, _ in routes:
        server.add(path, **reply)
    cases = [case for _, _, case in routes if case is not None]
    # Sources registered directly (as an admin edit could), bypassing add_source's own check.
    direct = {
        "file:///etc/passwd": r"not file: URLs",
        "ftp://127.0.0.2/feed.xml": r"not ftp: URLs",
        "gopher://127.0.0.2:70/1": r"not gopher: URLs",
        "http://169.254.169.254/latest/meta-data/": r"Refused .* link-local",
        "http://10.0.0.1/feed.xml": r"Refused .* private",
        canary.url("/feed").replace("127.0.0.1", "localhost"): r"Refused .* loopback",
        f"http://[::1]:{canary.port}/feed": r"Refused .* loopback",
        f"http://0.0.0.0:{canary.port}/feed": r"Refused .* unspecified",
        "http://2852039166/": r"Refused .*169\.254\.169\.254",
    }
    cases += [Case(url, "fail", reason, note="registered directly") for url, reason in direct.items()]
    return cases


def _stored_text(source: TechnicalArticle) -> str:
    parts = [source.name, source.tagline, source.site_url, source.last_error]
    for entry in Entry.objects.filter(technical_article=source):
        parts += [entry.guid, entry.headline, entry.body_text, entry.link]
    return "\n".join(parts)


def test_every_hostile_source_ingests_safely_or_fails_with_a_reason_and_nothing_gets_in(
        hostile_server, canary, gzip_bomb):
    cases = _script(hostile_server, canary, gzip_bomb)
    url_of = {case.path: case.path if "://" in case.path else hostile_server.url(case.path) for case in cases}
    sources = {case.path: TechnicalArticle.objects.create(name=case.path[:100], feed_url=url_of[case.path]) for case in cases}
    started = datetime.now(UTC)

    run = manage("ingest_feeds", "--json", "--workers", "8", env=ENV, timeout=120)
    finished = datetime.now(UTC)
    assert run.returncode == 0, run.explain()
    assert "Traceback" not in run.stderr, run.explain()
    assert run.tripped == [], f"the run tried to leave loopback: {run.tripped}"
    assert canary.requests == [], "a request reached localhost"
    assert run.max_rss_mb < MEMORY_LIMIT_MB, f"peak memory {run.max_rss_mb:.0f} MB"
    report = run.json()
    assert report["status"] == "partial" and report["totals"]["sources"] == len(cases)
    outcome = {s["url"]: s for s in report["sources"]}

    wrong: list[str] = []
    for case in cases:
        result = outcome[url_of[case.path]]
        source = sources[case.path]
        source.refresh_from_db()
        stored = Entry.objects.filter(technical_article=source).count()
        assert source.lease_owner == "" and source.lease_expires_at is None, case.path
        if result["outcome"] == "failed":
            # A failure is recorded with its reason, backed off, and writes no entry.
            assert result["error"] and source.last_error.startswith(result["error"][:100]), case.path
            assert source.consecutive_failures == 1 and source.next_fetch_at > finished, case.path
            assert stored == 0, f"{case.path} failed but left {stored} entries"
            if case.expect == "ingest" or (case.reason and not re.search(case.reason, result["error"])):
                wrong.append(f"{case.path}: expected {case.expect} /{case.reason}/, failed with {result['error']!r}")
        else:
            assert stored == result["created"] and stored > 0, case.path
            assert source.consecutive_failures == 0 and source.last_success_at is not None, case.path
            if case.expect == "fail":
                wrong.append(f"{case.path}: expected a failure /{case.reason}/, got {result['outcome']}")
    assert wrong == [], "\n".join(wrong)

    # Nothing hostile got in: no entity expansion, no file contents, no unsafe markup, no NUL.
    everything = {case.path: _stored_text(sources[case.path]) for case in cases}
    for path, text in everything.items():
        assert "lollollol" not in text and "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" not in text, path
        assert "root:x:0:0" not in text and "\x00" not in text, path
    assert Entry.objects.aggregate(longest=Max(Length("body_text")))["longest"] < 1_000_000
    bodies = list(Entry.objects.values_list("guid", "body_text"))
    assert [(guid, body) for guid, body in bodies if UNSAFE_HTML.search(body)] == []
    # Headlines are plain text: markup in a title is removed, whatever feed format it came in; a
    # title the publisher typed as text keeps its words, without the brackets that would make a tag.
    headlines = dict(Entry.objects.values_list("guid", "headline"))
    assert {guid: h for guid, h in headlines.items() if TAG.search(h)} == {}
    assert headlines["urn:xss-atom:text-title"] == "The script element, explained"
    assert headlines["xss-safe-markup"] == "Bold and italic title"
    assert "kept" in Entry.objects.get(guid="xss-escaped").body_text

    # Encodings: text arrives as the characters that were meant, on every backend (4-byte ones too).
    by_feed = lambda path: Entry.objects.get(technical_article=sources[path])
    assert by_feed("/enc/latin1-declared-utf8").headline == "Café naïve"
    assert by_feed("/enc/latin1-undeclared").headline == "Café crème"
    assert by_feed("/enc/no-content-type").headline == "Déjà vu"
    assert by_feed("/enc/utf16-bom").headline == "Café naïve – “quotes” €"
    assert by_feed("/enc/bogus-declaration").headline == "Café naïve – “quotes” €"
    assert by_feed("/enc/windows1252").headline == "“Smart” quotes — and a € sign"
    astral = by_feed("/enc/astral")
    assert astral.headline == "Emoji 😀 𝕏 中文 and a zero-width\u200bspace" and "😀 𝕏" in astral.body_text
    for path in ("/enc/nul-and-controls",):
        for headline in Entry.objects.filter(technical_article=sources[path]).values_list("headline", flat=True):
            assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", headline), headline

    # Dates: unparseable, impossible, before 1970 or in the future -> the time of the fetch.
    dates = {e.guid: e.published_at for e in Entry.objects.filter(technical_article=sources["/dates.rss"])}
    assert dates.pop("valid") == datetime(2026, 9, 15, 6, 30, tzinfo=UTC)
    assert dates.pop("offset-extreme") == datetime(1970, 1, 1, 14, 0, tzinfo=UTC)
    leap = dates.pop("leap-second")  # 23:59:60: kept, as the last second of the day or the first of the next
    assert abs(leap - datetime(2017, 1, 1, tzinfo=UTC)) <= timedelta(seconds=1), leap
    assert all(started - timedelta(seconds=1) <= when <= finished + timedelta(seconds=1) for when in dates.values()), dates

    # Duplicate guids: one entry per identity, the first occurrence wins; another feed has its own.
    dups = dict(Entry.objects.filter(technical_article=sources["/dup-guids.rss"]).values_list("guid", "headline"))
    assert dups["same"] == "first" and dups["other"] == "other" and len(dups) == 4, dups
    again = set(Entry.objects.filter(technical_article=sources["/dup-guids-again.rss"]).values_list("guid", flat=True))
    assert again == set(dups)

    run_row = IngestRun.objects.get(pk=report["run_id"])
    assert (run_row.status, run_row.sources_failed) == ("partial", report["totals"]["failed"])

    # The same hostile input once more: nothing changes, nothing is duplicated.
    before = snapshot(runs=False)
    second = manage("ingest_feeds", "--json", "--all", "--workers", "8", env=ENV, timeout=120)
    assert second.returncode == 0 and second.tripped == [], second.explain()
    assert second.json()["totals"]["created"] == 0 and second.json()["totals"]["updated"] == 0, second.stdout
    after = snapshot(runs=False)
    assert after["entries"] == before["entries"]

    failed = [s for s in report["sources"] if s["outcome"] == "failed"]
    observe("hostile-batch", f"{vendor()}: {len(cases)} hostile sources in one run, exit 0 in {run.elapsed_s:.1f}s, "
            f"peak RSS {run.max_rss_mb:.0f} MB; {len(cases) - len(failed)} ingested safely, {len(failed)} failed with "
            f"a recorded reason; 0 connections beyond loopback, 0 requests to localhost; second run: 0 created, 0 updated.")
    observe("hostile-reasons", "; ".join(sorted({f"{_short(s['url'])}: {s['error']}" for s in failed})))


def _short(url: str) -> str:
    return re.sub(r"^http://127\.0\.0\.2:\d+", "", url)


def test_ten_megabyte_entry_bodies_are_stored_whole_or_the_source_fails_alone(feed_server):
    """Bodies just under the 10 MiB cap, one of them almost all quote characters (they grow when
    a driver escapes them); a small source in the same run must not be affected."""
    prose = ("<p>" + "Reliability is a feature; it isn't an accident. " * 40 + "</p>\n") * 5200  # 10.1 MB
    quotes = "<p>" + "'\\\"" * 3_300_000 + "</p>"
    feed_server.add("/ten-mb.rss", rss([rss_item("ten-mb", "Ten megabytes", prose)]))
    feed_server.add("/quotes.rss", rss([rss_item("quotes", "Quotes", quotes)]))
    feed_server.add("/small.rss", rss([rss_item("small", "Small")]))
    for path in ("/ten-mb.rss", "/quotes.rss", "/small.rss"):
        TechnicalArticle.objects.create(name=path, feed_url=feed_server.url(path))
    run = manage("ingest_feeds", "--json", "--workers", "3", timeout=180)
    assert run.returncode == 0, run.explain()
    outcome = {s["url"].rsplit("/", 1)[1]: s for s in run.json()["sources"]}
    assert outcome["small.rss"]["outcome"] == "created"
    body = Entry.objects.get(guid="ten-mb").body_text
    assert len(body) > 10_000_000 and body.count("isn't an accident") == 40 * 5200
    for name in ("quotes.rss",):
        if outcome[name]["outcome"] == "failed":
            assert outcome[name]["error"], outcome[name]
        else:
            assert len(Entry.objects.get(guid="quotes").body_text) > 9_000_000
    observe("ten-mb-bodies", f"{vendor()}: {len(body):,}-character body stored whole; quote-heavy body: "
            f"{outcome['quotes.rss']['outcome']} {outcome['quotes.rss']['error']}; peak RSS {run.max_rss_mb:.0f} MB, "
            f"{run.elapsed_s:.1f}s.")


def test_entry_identity_does_not_depend_on_the_url_the_feed_was_fetched_from(feed_server):
    """The same entries, reached through a CDN-style temporary redirect to a different mirror
    each time, and then through a permanent move: each entry is stored once."""
    body = rss([f'<item><guid>{i}</guid><title>Post {i}</title><pubDate>Thu, 01 Oct 2026 12:00:00 GMT</pubDate></item>'
                for i in range(5)], title="Mirrored")
    for mirror in ("/mirror-a/feed.xml", "/mirror-b/feed.xml", "/moved/feed.xml"):
        feed_server.add(mirror, body)
    feed_server.add_sequence("/feed", [
        {"status": 302, "headers": {"Location": "/mirror-a/feed.xml"}, "content_type": None},
        {"status": 302, "headers": {"Location": "/mirror-b/feed.xml"}, "content_type": None},
        {"status": 301, "headers": {"Location": "/moved/feed.xml"}, "content_type": None},
    ])
    source = TechnicalArticle.objects.create(name="mirrored", feed_url=feed_server.url("/feed"))
    runs = [manage("ingest_feeds", "--json", "--all") for _ in range(3)]
    assert all(r.returncode == 0 for r in runs), runs[-1].explain()
    source.refresh_from_db()
    assert source.feed_url == feed_server.url("/moved/feed.xml")
    guids = sorted(Entry.objects.filter(technical_article=source).values_list("guid", flat=True))
    created = [r.json()["totals"]["created"] for r in runs]
    observe("identity-vs-fetch-url", f"{vendor()}: 5 entries served through mirror A, mirror B, then a 301 move; "
            f"created per run {created}; stored guids {guids}.")
    assert created == [5, 0, 0] and len(guids) == 5, guids


@pytest.mark.slow
@postgres_only
def test_a_feed_of_100000_entries_is_stored_completely_and_a_second_run_writes_nothing(feed_server, tmp_path):
    items = "".join(f"<item><guid>e{i}</guid><title>t{i}</title></item>" for i in range(100_000))
    path = tmp_path / "huge.rss"
    path.write_text(rss(items, title="Huge"))
    feed_server.add("/huge.rss", file=path)
    TechnicalArticle.objects.create(name="huge", feed_url=feed_server.url("/huge.rss"))
    env = {"INGEST_DEADLINE": "60"}
    first = manage("ingest_feeds", "--json", env=env, timeout=600)
    assert first.returncode == 0, first.explain()
    assert first.json()["totals"]["created"] == 100_000
    assert Entry.objects.count() == 100_000
    assert set(Entry.objects.values_list("guid", flat=True)) == {f"e{i}" for i in range(100_000)}
    second = manage("ingest_feeds", "--json", "--all", env=env, timeout=600)
    assert second.returncode == 0, second.explain()
    assert second.json()["totals"] | {} == {**second.json()["totals"], "created": 0, "updated": 0, "unchanged": 100_000}
    observe("hundred-thousand-entries", f"{vendor()}: {path.stat().st_size / MIB:.1f} MiB feed, 100,000 entries stored "
            f"in {first.elapsed_s:.1f}s (peak RSS {first.max_rss_mb:.0f} MB); second run 100,000 unchanged, 0 written, "
            f"in {second.elapsed_s:.1f}s.")
