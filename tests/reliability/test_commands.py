"""Every command, run as ``manage.py`` in its own process, given bad arguments or no database.

A user who typed something wrong, or whose database is down, must get a non-zero exit status and
one sentence on stderr that says what to do, never a traceback. Exit statuses are the README's:
1 the run could not work (database unreachable), 2 bad arguments, 3 ``pipeline_status`` unhealthy.

The argument checks run with DATABASE_URL pointing at a closed port, so a check that touched the
database before refusing its arguments would show up as exit 1 instead of 2.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest.models import TechnicalArticle
from tests.helpers import vendor
from tests.reliability.runner import assert_one_sentence_error, manage, observe

DATA = Path(__file__).parent / "data"

CLOSED = "postgres://postgres@127.0.0.1:1/x"
PRODUCTION_GUARD = {"INGEST_ALLOWED_NETWORKS": ""}  # loopback refused, as in production
HUGE = "99999999999999999999"  # above 2**63 - 1, the largest id the database can hold

# (arguments, exit status, what the sentence must mention)
BAD_ARGUMENTS: list[tuple[tuple[str, ...], int, str]] = [
    (("ingest_feeds", "--workers", "0"), 2, "--workers must be between 1 and 64"),
    (("ingest_feeds", "--workers", "many"), 2, "invalid int value: 'many'"),
    (("ingest_feeds", "--trigger", "bogus"), 2, "invalid choice: 'bogus'"),
    (("ingest_feeds", "--frobnicate"), 2, "unrecognized arguments: --frobnicate"),
    (("ingest_feeds", "stray-positional"), 2, "unrecognized arguments: stray-positional"),
    (("recompute_counts", "--chunk-size", "0"), 2, "--chunk-size must be between 1 and 2000"),
    (("recompute_counts", "--since", "yesterday"), 2, "--since must be a date"),
    (("recompute_counts", "--since", "2026-02-30"), 2, "--since must be a date"),
    (("recompute_counts", "--entry", "0"), 2, "--entry takes positive entry ids"),
    (("recompute_counts", "--entry", "abc"), 2, "invalid int value: 'abc'"),
    (("add_source",), 2, "the following arguments are required: url"),
    (("add_source", "file:///etc/passwd"), 2, "not file: URLs"),
    (("add_source", "ftp://127.0.0.1/feed.xml"), 2, "ftp"),
    (("add_source", "gopher://127.0.0.1:70/1"), 2, "gopher"),
    (("add_source", "javascript:alert(1)"), 2, "javascript"),
    (("add_source", "not a url"), 2, "without a scheme"),
    (("add_source", "http://"), 2, "http://"),
    (("add_source", "http://169.254.169.254/latest/meta-data/"), 2, "169.254.169.254"),
    (("add_source", "http://10.0.0.1/feed.xml"), 2, "10.0.0.1"),
    (("add_source", "http://[::ffff:10.0.0.1]/feed.xml"), 2, "10.0.0.1"),
    (("add_source", "http://2852039166/"), 2, "169.254.169.254"),
    (("add_source", "http://localhost/feed.xml"), 2, "localhost"),
    (("add_source", "http://0.0.0.0/feed.xml"), 2, "0.0.0.0"),
    (("add_source", "https://feeds.example/" + "a" * 800), 2, "longer than 700 characters"),
    (("import_opml",), 2, "the following arguments are required: file"),
    (("import_opml", "/nonexistent/feeds.opml"), 2, "Cannot read /nonexistent/feeds.opml"),
    (("import_opml", str(DATA)), 2, "Cannot read"),
    *[(("import_opml", str(DATA / name)), 2, expected) for name, expected in [
        ("opml-billion-laughs.opml", "forbidden XML features"),
        ("opml-xxe.opml", "forbidden XML features"),
        ("opml-external-dtd.opml", "forbidden XML features"),
        ("opml-parameter-entity.opml", "forbidden XML features"),
        ("opml-binary.opml", "not well-formed"),
        ("opml-not-opml.opml", "not OPML"),
        ("opml-truncated.opml", "not well-formed"),
        ("opml-empty.opml", "not well-formed"),
    ]],
    (("list_entries", "--limit", "0"), 2, "--limit must be between 1 and 10000"),
    (("list_entries", "--limit", "lots"), 2, "invalid int value: 'lots'"),
    (("pipeline_status", "--runs", "0"), 2, "--runs must be between 1 and 100"),
    (("pipeline_status", "--max-age", "0"), 2, "--max-age must be between 1 and"),
    (("pipeline_status", "--timeout", "0"), 2, "--timeout must be between 0 and 30"),
    (("pipeline_status", "--timeout", "soon"), 2, "invalid float value: 'soon'"),
    # Integers too large for the database (ids are 64-bit) or for a documented maximum: refused by
    # name before any query, never an overflow inside the database.
    (("recompute_counts", "--entry", HUGE), 2, "--entry takes positive entry ids"),
    (("recompute_counts", "--entry", "-5"), 2, "--entry takes positive entry ids"),
    (("recompute_counts", "--chunk-size", HUGE), 2, "--chunk-size must be between 1 and 2000"),
    (("ingest_feeds", "--source", HUGE), 2, "--source takes a source id from 1 to 9223372036854775807"),
    (("recompute_counts", "--source", "0"), 2, "--source takes a source id"),
    (("list_entries", "--source", HUGE), 2, "--source takes a source id"),
    (("ingest_feeds", "--workers", HUGE), 2, "--workers must be between 1 and 64"),
    (("list_entries", "--limit", HUGE), 2, "--limit must be between 1 and 10000"),
    (("list_entries", "--limit", "10001"), 2, "--limit must be between 1 and 10000"),
    (("pipeline_status", "--runs", HUGE), 2, "--runs must be between 1 and 100"),
    (("pipeline_status", "--max-age", HUGE), 2, "--max-age must be between 1 and 315360000"),
    (("pipeline_status", "--timeout", "nan"), 2, "--timeout must be between 0 and 30"),
    # URLs that are not well-formed: refused with the reason, before any DNS lookup.
    (("add_source", "http://exa mple.com/feed.xml"), 2, "contains a space at position 10"),
    (("add_source", "http://127.0.0.2:99999/feed.xml"), 2, "port 99999"),
    (("add_source", "http://127.0.0.2:0/feed.xml"), 2, "port 0"),
    (("add_source", "http://exa%20mple.com/feed.xml"), 2, "host name 'exa%20mple.com' is not valid"),
    (("add_source", "http://feeds..example/feed.xml"), 2, "is not valid"),
    (("add_source", "http://" + "a" * 64 + ".example/feed.xml"), 2, "is not valid"),
    (("add_source", "http://xn--/feed.xml"), 2, "is not a valid URL"),
    (("add_source", "http://[zzz]/feed.xml"), 2, "is not a valid URL"),
    (("add_source", "http://feeds.example/\x01feed.xml"), 2, "contains the character '\\x01'"),
    (("add_source", "http://feeds.example/\u202efeed.xml"), 2, "contains the character '\\u202e'"),
]


def _run_all(jobs, **kwargs):
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda job: (job, manage(*job[0], **kwargs)), jobs))


def _check(results) -> tuple[list[str], list[str]]:
    wrong, sentences = [], []
    for (args, status, expected), result in results:
        try:
            sentence = assert_one_sentence_error(result, returncode=status)
            assert expected.lower() in sentence.lower(), f"the sentence does not mention {expected!r}: {sentence}"
            assert "\n" not in sentence and len(sentence) < 400, sentence
            sentences.append(f"`{' '.join(args)[:60]}` → {status}: {sentence}")
        except AssertionError as exc:
            wrong.append(f"{' '.join(args)}: {str(exc)[:1500]}")
    return wrong, sentences


@pytest.mark.nodb
def test_bad_arguments_to_every_command_exit_non_zero_with_one_sentence():
    results = _run_all(BAD_ARGUMENTS, database=CLOSED, env=PRODUCTION_GUARD)
    wrong, _ = _check(results)
    assert wrong == [], "\n\n".join(wrong)
    assert all(not result.tripped for _, result in results), [r.tripped for _, r in results if r.tripped]
    observe("bad-arguments", f"{len(results)} bad invocations of the 6 commands: every one exit 2 with one sentence, "
            "no traceback, no database touched, no connection beyond loopback.")


def _unreachable(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        path = tmp_path / "a-directory-not-a-database"
        path.mkdir(exist_ok=True)
        return f"sqlite:///{path}"
    return {"postgresql": CLOSED, "mariadb": "mysql://root@127.0.0.1:1/x"}[kind]


EVERY_COMMAND = [
    (("ingest_feeds",), 1, "database"),
    (("ingest_feeds", "--json"), 1, "database"),
    (("ingest_feeds", "--source", "1"), 1, "database"),
    (("ingest_feeds", "--dry-run"), 1, "database"),
    (("recompute_counts",), 1, "database"),
    (("recompute_counts", "--source", "1"), 1, "database"),
    (("recompute_counts", "--dry-run"), 1, "database"),
    (("add_source", "http://127.0.0.2:9/feed.xml"), 1, "database"),
    (("import_opml", str(DATA / "valid.opml")), 1, "database"),
    (("list_entries",), 1, "database"),
    (("list_entries", "--source", "1"), 1, "database"),
    (("pipeline_status", "--no-celery"), 3, "database unreachable"),
]


@pytest.mark.nodb
@pytest.mark.parametrize("kind", ["postgresql", "mariadb", "sqlite"])
def test_every_command_without_its_database_exits_non_zero_with_one_sentence(kind, tmp_path):
    # Every invocation against PostgreSQL's closed port; one per command for the other drivers.
    jobs = EVERY_COMMAND if kind == "postgresql" else [job for job in EVERY_COMMAND if len(job[0]) == 1 or
                                                       job[0][0] in ("add_source", "import_opml")]
    results = _run_all(jobs, database=_unreachable(kind, tmp_path), env={"INGEST_ALLOWED_NETWORKS": "127.0.0.2/32"})
    wrong, _ = _check(results)
    observe(f"db-unreachable-every-command-{kind}", f"{kind}: " + (
        "every command exits non-zero with one sentence." if not wrong else
        f"{len(wrong)} of {len(results)} invocations end in a traceback: "
        + ", ".join(sorted({w.split(':')[0] for w in wrong}))))
    assert wrong == [], "\n\n".join(wrong)


@pytest.mark.django_db(transaction=True)
def test_unknown_sources_are_refused_with_one_sentence():
    TechnicalArticle.objects.create(name="known", feed_url="http://127.0.0.2:9/known.xml")
    jobs = [
        (("ingest_feeds", "--source", "999999"), 2, "No source matches '999999'"),
        (("ingest_feeds", "--source", "http://127.0.0.2:9/unknown.xml"), 2, "No source matches"),
        (("recompute_counts", "--source", "404"), 2, "No source matches '404'"),
        (("list_entries", "--source", "404"), 2, "No source matches '404'"),
    ]
    wrong, _ = _check(_run_all(jobs))
    assert wrong == [], "\n\n".join(wrong)


@pytest.mark.django_db(transaction=True)
def test_opml_listing_hostile_urls_registers_only_the_safe_feed_and_never_connects(tmp_path):
    outlines = {
        "http://127.0.0.2:9/feed.xml": None,  # the one allowed feed
        "file:///etc/passwd": "not file: URLs",
        "ftp://127.0.0.2/feed.xml": "ftp",
        "gopher://127.0.0.2:70/1": "gopher",
        "javascript:alert(document.cookie)": "javascript",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254",
        "http://10.0.0.1/feed.xml": "10.0.0.1",
        "http://localhost:8080/feed.xml": "localhost",
        "http://[::1]/feed.xml": "::1",
        "http://2852039166/": "169.254.169.254",
        "http://127.0.0.2:9/" + "x" * 800: "longer than 700",
    }
    body = "\n".join(f'<outline text="t{i}" xmlUrl="{url.replace("&", "&amp;")}"/>' for i, url in enumerate(outlines))
    opml = tmp_path / "hostile-urls.opml"
    opml.write_text(f'<?xml version="1.0"?><opml version="2.0"><head><title>x</title></head><body>'
                    f'<outline text="folder">{body}</outline></body></opml>')
    result = manage("import_opml", str(opml), "--json", env={"INGEST_ALLOWED_NETWORKS": "127.0.0.2/32"})
    assert result.returncode == 0, result.explain()
    assert result.tripped == []
    report = result.json()
    assert [a["url"] for a in report["added"]] == ["http://127.0.0.2:9/feed.xml"]
    rejected = {r["url"]: r["error"] for r in report["rejected"]}
    for url, reason in outlines.items():
        if reason:
            assert reason.lower() in rejected[url].lower(), (url, rejected.get(url))
    assert list(TechnicalArticle.objects.values_list("feed_url", flat=True)) == ["http://127.0.0.2:9/feed.xml"]
    observe("opml-hostile", f"{vendor()}: entity-bomb, XXE, external-DTD, parameter-entity, binary, truncated and "
            f"empty OPML refused with exit 2 (see bad-arguments); an OPML of {len(outlines)} URLs registered the 1 safe "
            f"feed and rejected {len(rejected)} with a reason each; 0 connection attempts.")
