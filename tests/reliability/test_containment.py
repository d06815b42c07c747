"""The per-source containment boundary, through ``manage.py ingest_feeds`` in its own process.

Every case registers a hostile or broken source beside a CONTROL feed, runs the real command against
the real HTTP test server, and checks what a user would see: the run exits 0, the bad source alone
failed with a recorded reason, the control feed is stored, and the NEXT run completes too (bad state
is never stored). One test per class of failure the boundary must contain; the property-based
``test_boundary.py`` then throws generated responses at the same invariants.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from ingest.models import Comment, Entry, IngestRun, TechnicalArticle
from samples.feedserver import FeedServer
from tests.helpers import ROOT, database_url, rss, rss_item, wait_until
from tests.reliability.runner import TRACEBACK, manage, observe

pytestmark = pytest.mark.django_db(transaction=True)

CONTROL = rss([rss_item(f"control-{n}", f"Control {n}") for n in range(3)], title="Control")


@pytest.fixture
def server():
    with FeedServer() as srv:
        srv.add("/control.rss", CONTROL)
        yield srv


def register(server: FeedServer, *paths: str) -> dict[str, TechnicalArticle]:
    sources = {}
    for path in ("/control.rss", *paths):
        sources[path] = TechnicalArticle.objects.create(name=path, feed_url=server.url(path))
    return sources


def ingest(*args: str, env: dict[str, str] | None = None, expect: int = 0) -> dict:
    """One real run; it must exit ``expect`` without a traceback outside the error log records."""
    result = manage("ingest_feeds", "--json", *args, env=env, timeout=120)
    assert result.returncode == expect, result.explain()
    report = result.json()
    report["_stderr"] = result.stderr
    return report


def by_url(report: dict) -> dict[str, dict]:
    return {source["url"].rsplit("/", 1)[-1]: source for source in report["sources"]}


def assert_control_stored() -> None:
    assert set(Entry.objects.filter(technical_article__feed_url__endswith="/control.rss").values_list("guid", flat=True)) \
        == {"control-0", "control-1", "control-2"}


def assert_nothing_left_running() -> None:
    assert not IngestRun.objects.filter(status=IngestRun.Status.RUNNING).exists()
    assert not TechnicalArticle.objects.exclude(lease_owner="").exists()


# --- 1. anything unexpected fails its source alone, loudly ---------------------------------------


def test_an_unexpected_exception_fails_its_source_alone_counted_as_an_internal_error(server):
    server.add("/boom.rss", rss([rss_item("b", "B")]))
    server.add("/crash.rss", rss([rss_item("c1", "C1"), rss_item("c2", "C2")]))
    register(server, "/boom.rss", "/crash.rss")
    faults = {"RELIABILITY_FAULT_PARSE": "/boom.rss", "RELIABILITY_FAULT_STORE": "/crash.rss"}

    report = ingest(env=faults)
    results = by_url(report)
    assert results["boom.rss"]["error"].startswith("internal error: InjectedFault: injected parse fault")
    assert results["crash.rss"]["error"].startswith("internal error: KeyError:")
    assert results["boom.rss"]["internal_error"] and results["crash.rss"]["internal_error"]
    assert report["totals"]["internal_errors"] == 2 and report["totals"]["failed"] == 2
    assert report["status"] == "partial"
    assert_control_stored()
    # The store fault struck after the entries were written: the transaction took them back.
    assert not Entry.objects.filter(technical_article__feed_url__endswith="/crash.rss").exists()
    run = IngestRun.objects.get(pk=report["run_id"])
    assert run.sources_internal_errors == 2
    # Loud: the traceback is in the log, with the source it belongs to.
    assert "ERROR" in report["_stderr"] and "internal error while handling a source" in report["_stderr"]
    assert TRACEBACK.search(report["_stderr"])
    crashed = TechnicalArticle.objects.get(feed_url__endswith="/crash.rss")
    assert crashed.consecutive_failures == 1 and crashed.next_fetch_at > timezone.now()  # backed off

    status = manage("pipeline_status", "--json", "--no-celery")
    assert status.returncode == 3, status.explain()
    assert any("internal error" in problem for problem in status.json()["problems"]), status.json()["problems"]

    second = ingest("--all")  # the fault is gone: everything is stored, and the pipeline is healthy
    assert second["totals"]["internal_errors"] == 0 and second["totals"]["failed"] == 0
    assert Entry.objects.filter(technical_article__feed_url__endswith="/crash.rss").count() == 2
    healthy = manage("pipeline_status", "--json", "--no-celery")
    assert healthy.returncode == 0, healthy.explain()
    assert_nothing_left_running()
    observe("containment-internal-error",
            f"parse fault and store fault injected into 2 of 3 sources: exit 0, both failed as internal errors "
            f"({results['boom.rss']['error'][:60]}…), totals.internal_errors=2, IngestRun.sources_internal_errors=2, "
            f"traceback logged at ERROR, pipeline_status exit 3; control stored; next run exit 0, healthy")


# --- 1b. redirects to URLs that cannot be followed ------------------------------------------------

UNUSABLE_LOCATIONS = ["mailto:a@b.example", "javascript:alert(1)", "data:text/html,hi", "https://[::1",
                      "http://x:99999/", "http://a b/", "ftp://127.0.0.1/feed", "http://169.254.169.254/"]


def test_redirects_to_unusable_urls_fail_their_source_with_a_reason(server):
    paths = []
    for n, location in enumerate(UNUSABLE_LOCATIONS):
        server.add(f"/r{n}.rss", b"", status=302, headers={"Location": location})
        paths.append(f"/r{n}.rss")
    register(server, *paths)

    first = ingest()
    results = by_url(first)
    for n, location in enumerate(UNUSABLE_LOCATIONS):
        source = results[f"r{n}.rss"]
        assert source["outcome"] == "failed" and source["error"], (location, source)
        assert not source["internal_error"], (location, source)  # a foreseen failure, with its own sentence
    assert_control_stored()
    second = ingest("--all")
    assert second["totals"]["sources"] == len(UNUSABLE_LOCATIONS) + 1
    assert_nothing_left_running()
    observe("containment-redirects",
            f"{len(UNUSABLE_LOCATIONS)} redirects to unusable URLs ({', '.join(UNUSABLE_LOCATIONS[:3])}, …): exit 0, "
            f"each source failed with a sentence (e.g. {results['r0.rss']['error'][:80]!r}), none an internal error; "
            f"control stored; second run exit 0")


# --- 2. validators that cannot be sent back are never stored -------------------------------------


def test_validators_that_cannot_be_sent_back_are_not_stored_and_never_break_a_later_run(server):
    server.add("/latin.rss", rss([rss_item("l", "L")]), headers={"ETag": '"caf\u00e9"', "Last-Modified": "Mon, 05 Oct 2026 10:00:00 GMT\u00e9"})
    server.add("/spaces.rss", rss([rss_item("s", "S")]), headers={"ETag": '"a b"\t'})
    register(server, "/latin.rss", "/spaces.rss", "/old-state.rss")
    server.add("/old-state.rss", rss([rss_item("o", "O")]), etag='"v1"')
    # A row written by an older version (or by hand) already holds an unsendable validator.
    TechnicalArticle.objects.filter(feed_url__endswith="/old-state.rss").update(etag='"\u00fcber"', last_modified="\u00e9")

    first = ingest()
    assert first["totals"]["failed"] == 0, first["sources"]
    latin = TechnicalArticle.objects.get(feed_url__endswith="/latin.rss")
    assert (latin.etag, latin.last_modified) == ("", "")
    old = TechnicalArticle.objects.get(feed_url__endswith="/old-state.rss")
    assert old.etag == '"v1"'
    second = ingest("--all")
    assert second["totals"]["failed"] == 0, second["sources"]
    assert by_url(second)["old-state.rss"]["outcome"] == "not_modified"  # the good validator is used
    sent = [r.headers.get("if-none-match") for r in server.requests if r.path == "/old-state.rss"]
    assert sent == [None, '"v1"']
    assert Entry.objects.count() == 6
    observe("containment-validators",
            "ETag/Last-Modified with non-ASCII bytes or spaces, and a stored non-ASCII ETag from an older row: "
            "exit 0 both runs, the unsendable validators were not stored (and the stored one not sent), "
            "the good ETag gave a 304 on the second run")


# --- 3. a unique-key collision that repeats fails the source, not the run ------------------------


@pytest.fixture
def case_insensitive_guids():
    """A unique key over the guid text that the database compares case-insensitively.

    The product's own keys are digests that no collation folds (tests/test_identity.py); this is a
    key the data can still collide on, as a hand-made index or an older schema would be.
    """
    vendor = connection.vendor
    expression = {"sqlite": "guid COLLATE NOCASE", "postgresql": "lower(guid)",
                  "mysql": "guid"}.get(vendor)  # MariaDB: its default collation, utf8mb4_general_ci, folds case
    if expression is None:
        pytest.skip(f"no case-insensitive index recipe for {vendor}")
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE UNIQUE INDEX test_ci_guid ON ingest_entry (technical_article_id, {expression})")
    try:
        yield "MariaDB's default collation" if vendor == "mysql" else f"a unique index on ({expression})"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX test_ci_guid" + (" ON ingest_entry" if vendor == "mysql" else ""))


def test_a_collision_that_repeats_fails_that_source_with_the_constraint_named(server, case_insensitive_guids):
    server.add("/case.rss", rss([rss_item("POST-ABC", "Upper"), rss_item("post-abc", "Lower")]))
    register(server, "/case.rss")

    report = ingest()
    case = by_url(report)["case.rss"]
    assert case["outcome"] == "failed" and not case["internal_error"]
    assert "unique constraint" in case["error"] and "unreachable" not in case["error"]
    assert report["retries"] == 1  # once for a concurrent writer, then it is this source's data
    assert_control_stored()
    assert not Entry.objects.filter(technical_article__feed_url__endswith="/case.rss").exists()
    again = ingest("--all")
    assert by_url(again)["control.rss"]["outcome"] in ("unchanged", "not_modified")
    assert_nothing_left_running()
    observe("containment-collision",
            f"two guids differing only in case under {case_insensitive_guids}: exit 0, 1 retry, that source failed "
            f"({case['error'][:110]}…); control stored; next run exit 0")


# --- 6. a killed run is closed by the next one, which finishes the job --------------------------


def test_a_killed_run_is_closed_by_the_next_run_which_also_polls_its_comment_feeds(server):
    now = timezone.now().replace(microsecond=0)  # comment feeds are polled for recent entries only
    entries = [rss_item(f"p{n}", f"Post {n}", date=now).replace("</item>", f"<wfw:commentRss>{server.url(f'/comments/{n}.rss')}</wfw:commentRss></item>")
               for n in range(2)]
    server.add("/blog.rss", rss(entries).replace('<rss version="2.0">',
                                                 '<rss version="2.0" xmlns:wfw="http://wellformedweb.org/CommentAPI/">'))
    comments = rss([rss_item("c1", "Nice post", "Nice post")])
    for n in range(2):
        # The first fetch of each comment feed hangs until the run is killed; later ones answer at once.
        server.add_sequence(f"/comments/{n}.rss", [dict(body=comments, delay=60), dict(body=comments)])
    blog = TechnicalArticle.objects.create(name="blog", feed_url=server.url("/blog.rss"), fetch_comments=True)
    env = {"INGEST_LEASE_SECONDS": "3", "INGEST_DEADLINE": "90", "INGEST_READ_TIMEOUT": "90"}

    proc = _start_ingest(env)
    try:
        wait_until(lambda: Entry.objects.filter(technical_article=blog).count() == 2, timeout=60)
        wait_until(lambda: server.hits("/comments/0.rss") + server.hits("/comments/1.rss") >= 1, timeout=30)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    killed = IngestRun.objects.get()
    assert killed.status == IngestRun.Status.RUNNING  # nobody could record its end
    time.sleep(3.5)  # past the lease TTL

    status = manage("pipeline_status", "--json", "--no-celery", env=env)
    assert status.returncode == 3, status.explain()
    assert any(f"run {killed.pk} has been running" in p for p in status.json()["problems"]), status.json()["problems"]

    report = ingest(env=env)
    killed.refresh_from_db()
    assert killed.status == IngestRun.Status.FAILED and "Closed by a later run" in killed.error, killed.error
    assert report["comments"]["feeds"] == 2 and report["comments"]["created"] == 2, report["comments"]
    assert Comment.objects.filter(entry__technical_article=blog).count() == 2
    assert_nothing_left_running()
    observe("containment-killed-run",
            f"`ingest_feeds` SIGKILLed after storing a source, while polling its comment feeds: its IngestRun stayed "
            f"running; pipeline_status exit 3 once past the lease TTL; the next (manual) run closed it "
            f"({killed.error[:70]}…) and polled the 2 comment feeds the killed run never finished: 2 comments stored")


def _start_ingest(env: dict[str, str]) -> subprocess.Popen:
    full_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(), **env}
    return subprocess.Popen([sys.executable, "manage.py", "ingest_feeds", "--json"], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


# --- 7. headlines are plain text, however the markup was escaped ---------------------------------

ATOM_TITLES = [
    ('type="html"', "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;Double-escaped"),
    ('type="html"', "&amp;lt;img src=x onerror=alert(1)&amp;gt;Image"),
    ('type="html"', "&amp;amp;lt;b&amp;amp;gt;Triple&amp;amp;lt;/b&amp;amp;gt;"),
    ('type="text"', "&lt;iframe src=javascript:alert(1)&gt;Text-typed"),
    ('type="xhtml"', '<div xmlns="http://www.w3.org/1999/xhtml">&lt;svg onload=alert(1)&gt;XHTML</div>'),
]


def test_headlines_keep_no_element_however_it_was_escaped(server):
    entries = "".join(
        f"<entry><id>urn:t:{n}</id><title {kind}>{title}</title><updated>2026-10-01T12:00:00Z</updated>"
        f"<content type=\"html\">&lt;p&gt;body {n}&lt;/p&gt;</content></entry>"
        for n, (kind, title) in enumerate(ATOM_TITLES))
    server.add("/titles.atom", f'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:t</id>'
                               f"<updated>2026-10-01T12:00:00Z</updated>{entries}</feed>", content_type="application/atom+xml")
    register(server, "/titles.atom")

    ingest()
    headlines = list(Entry.objects.filter(technical_article__feed_url__endswith="/titles.atom").values_list("headline", flat=True))
    assert len(headlines) == len(ATOM_TITLES)
    for headline in headlines:
        assert "<" not in headline, headlines
    assert any("Double-escaped" in h for h in headlines) and any("Text-typed" in h for h in headlines)
    observe("containment-headlines",
            f"{len(ATOM_TITLES)} Atom titles with double- and triple-escaped script, img onerror, iframe and svg "
            f"(html, text and xhtml types): stored headlines {headlines!r}: no element survives")


# --- 8. honest outcomes ---------------------------------------------------------------------------


def test_no_false_health_304_without_validators_broken_empty_feed_and_impossible_dates(server):
    server.add("/lazy-304", b"", status=304)
    server.add("/broken.rss", b'<?xml version="1.0"?><rss version="2.0"><channel><title>Broken</title><descrip')
    dates = ["Sat, 01 Jan 10000 00:00:00 GMT", "2026-02-30T10:00:00Z", "Mon, 02 Feb 2026 10:00:00 +9999",
             "Tue, 31 Sep 2026 10:00:00 GMT", "2026-09-01T10:00:00+15:00"]
    server.add("/dates.rss", rss([rss_item(f"d{n}", f"D{n}", date=date) for n, date in enumerate(dates)]
                                 + [rss_item("ok", "OK", date="Thu, 01 Oct 2026 12:00:00 GMT")]))
    register(server, "/lazy-304", "/broken.rss", "/dates.rss")

    started = timezone.now()
    report = ingest()
    results = by_url(report)
    assert results["lazy-304"]["outcome"] == "failed" and "304" in results["lazy-304"]["error"]
    assert results["broken.rss"]["outcome"] == "failed" and "no entries" in results["broken.rss"]["error"]
    assert results["dates.rss"]["created"] == len(dates) + 1
    finished = timezone.now()
    for entry in Entry.objects.filter(technical_article__feed_url__endswith="/dates.rss"):
        if entry.guid == "ok":
            assert entry.published_at.isoformat() == "2026-10-01T12:00:00+00:00"
        else:  # the fetch time, not feedparser's normalized guess (2010, Mar 2, Jan 29, Oct 1, ...)
            assert started - timedelta(seconds=1) <= entry.published_at <= finished, (entry.guid, entry.published_at)
    warning = TechnicalArticle.objects.get(feed_url__endswith="/dates.rss").last_error
    assert warning.startswith("warning:") and "cannot exist" in warning, warning
    lazy = TechnicalArticle.objects.get(feed_url__endswith="/lazy-304")
    assert lazy.last_success_at is None and lazy.consecutive_failures == 1
    assert_control_stored()
    observe("containment-honest-outcomes",
            f"a 304 to a request without validators, a truncated feed with no entries, {len(dates)} impossible dates: "
            f"the first two failed ({results['lazy-304']['error'][:50]}…; {results['broken.rss']['error'][:50]}…), "
            f"the dates became the fetch time with a warning recorded on the source")


# --- 4. parse time is bounded -----------------------------------------------------------------------


def test_parse_time_is_bounded_in_the_pool_and_in_the_thread(server):
    # In the thread: 1.1 MB of nested markup (40-76 s of html5ever without the HTML limits).
    nested = "<div>" * 100_000 + "deep" + "</div>" * 100_000
    server.add("/nested.rss", rss([rss_item("n", "Nested", nested)]))
    register(server, "/nested.rss")
    started = time.monotonic()
    small = ingest()
    assert time.monotonic() - started < 30
    assert by_url(small)["nested.rss"]["outcome"] == "created"
    warning = TechnicalArticle.objects.get(feed_url__endswith="/nested.rss").last_error
    assert warning.startswith("warning:") and "cut short" in warning, warning

    # In the pool: a feed whose parse outlasts INGEST_PARSE_TIMEOUT is killed; the others go on.
    # About 8 MB that takes feedparser and nh3 2+ CPU-seconds: within the fetch cap, over the budget.
    big = rss([rss_item(f"b{n}", f"Big {n}", "<p>" + f'word <a href="http://x.example/{n}">l</a> ' * 100 + "</p>")
               for n in range(1400)])
    server.add("/big.rss", big)
    paths = [f"/f{n}.rss" for n in range(16)]
    for path in paths:
        server.add(path, rss([rss_item(f"{path}-1", "One")]))
    register_more = [TechnicalArticle.objects.create(name=p, feed_url=server.url(p)) for p in ["/big.rss", *paths]]
    env = {"INGEST_PARSE_PROCESSES": "2", "INGEST_PARSE_TIMEOUT": "0.5"}
    report = ingest("--source", str(register_more[0].pk), *[arg for s in register_more[1:] for arg in ("--source", str(s.pk))],
                    env=env)
    results = by_url(report)
    assert results["big.rss"]["outcome"] == "failed" and "INGEST_PARSE_TIMEOUT" in results["big.rss"]["error"]
    assert all(results[p.lstrip("/")]["outcome"] == "created" for p in paths), report["sources"]
    assert not Entry.objects.filter(technical_article=register_more[0]).exists()
    assert_nothing_left_running()
    observe("containment-parse-budget",
            f"1.1 MB of nested <div> in one body: stored in {small['elapsed_s']:.1f}s with the body cut "
            f"({warning[:90]}…); a {len(big) / 1e6:.0f} MB feed beside 16 small ones with INGEST_PARSE_TIMEOUT=0.5 in "
            f"the 2-process pool: that feed failed ({results['big.rss']['error'][:70]}…), the 16 others stored")
