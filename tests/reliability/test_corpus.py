"""Every file of two conformance corpora served as a feed and ingested in one run.

``feedparser-tests`` (feedparser 6.0.14's own corpus: well-formed, ill-formed, encodings, entities,
compression) and ``feedvalidator-testcases`` (the W3C Feed Validator's valid and invalid documents):
about 4,460 files nobody on this project wrote, each registered as a source and served over
127.0.0.1 with the HTTP headers the feedparser corpus asks for (its ``Header:`` lines;
``.gz``/``.z`` files as gzip/deflate ``Content-Encoding``). The run must complete; each source
either ingests or fails with a recorded reason; no source is partly written.

The corpus folder is ``../shared/corpus`` beside the project, or ``$RELIABILITY_CORPUS``.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import pytest
from django.db.models import Count

from ingest.models import Entry, IngestRun, TechnicalArticle
from samples.feedserver import FeedServer
from tests.helpers import ROOT, postgres_only, snapshot, vendor
from tests.reliability.runner import manage, observe

pytestmark = [pytest.mark.slow, postgres_only, pytest.mark.django_db(transaction=True)]

CORPUS = Path(os.environ.get("RELIABILITY_CORPUS", ROOT.parent / "shared" / "corpus"))
FOLDERS = ("feedparser-tests", "feedvalidator-testcases")
_HEADER = re.compile(rb"^Header:\s*([A-Za-z-]+):\s*(.*?)\s*$", re.MULTILINE)
_TYPES = {".xml": "application/xml", ".html": "text/html", ".opml": "text/x-opml", ".rss": "application/rss+xml",
          ".atom": "application/atom+xml"}


def _corpus_files() -> list[Path]:
    missing = [folder for folder in FOLDERS if not (CORPUS / folder).is_dir()]
    if missing:
        pytest.skip(f"corpus not found: {', '.join(str(CORPUS / m) for m in missing)} (set RELIABILITY_CORPUS)")
    return sorted(p for folder in FOLDERS for p in (CORPUS / folder).rglob("*") if p.is_file())


def _reply(path: Path) -> dict:
    """How the file is served: its own Header: lines (feedparser corpus), else by extension."""
    headers: dict[str, str] = {}
    content_type: str | None = _TYPES.get(path.suffix.lower(), "application/octet-stream")
    head = path.read_bytes()[:2048]
    for name, value in _HEADER.findall(head):
        name, value = name.decode("latin-1"), value.decode("latin-1")
        if name.lower() == "content-type":
            content_type = value
        else:
            headers[name] = value
    if path.suffix == ".gz":
        headers["Content-Encoding"] = "gzip"
    elif path.suffix == ".z":
        headers["Content-Encoding"] = "deflate"
    return {"file": path, "content_type": content_type, "headers": headers}


def _reason_kind(error: str) -> str:
    """Group failure reasons for the report: the sentence without its variable parts."""
    kind = re.sub(r"127\.0\.0\.1(:\d+)?", "HOST", error)
    kind = re.sub(r" at line \d+, column \d+", "", kind)
    kind = re.sub(r": .*", ": …", kind) if kind.startswith("The document is not a readable feed") else kind
    return kind


def test_every_corpus_file_served_as_a_feed_ingests_or_fails_with_a_reason(tmp_path):
    files = _corpus_files()
    with FeedServer() as server:
        routes = {}
        for i, path in enumerate(files):
            route = f"/{i:05d}/{path.name}"
            server.add(route, **_reply(path))
            routes[route] = path
        TechnicalArticle.objects.bulk_create(
            TechnicalArticle(name=str(path.relative_to(CORPUS))[:100], feed_url=server.url(route))
            for route, path in routes.items())
        first = manage("ingest_feeds", "--json", "--workers", "16", env={"INGEST_DEADLINE": "20"}, timeout=900)
        assert first.returncode == 0, first.explain()
        assert "Traceback" not in first.stderr, first.explain()
        assert first.tripped == []
        report = first.json()
        _check_first_run(report, files)
        before = snapshot(runs=False)
        second = manage("ingest_feeds", "--json", "--all", "--workers", "16", env={"INGEST_DEADLINE": "20"}, timeout=900)
        assert second.returncode == 0, second.explain()

    # The whole corpus once more: nothing new, nothing changed, nothing duplicated.
    again = second.json()["totals"]
    assert (again["created"], again["updated"]) == (0, 0), again
    assert snapshot(runs=False)["entries"] == before["entries"]

    failures = Counter(_reason_kind(s["error"]) for s in report["sources"] if s["outcome"] == "failed")
    ok = len(files) - report["totals"]["failed"]
    top = "; ".join(f"{n} × {kind}" for kind, n in failures.most_common(8))
    observe("corpus", f"{vendor()}: {len(files)} files → {len(files)} sources in one run, exit 0 in {first.elapsed_s:.0f}s "
            f"(peak RSS {first.max_rss_mb:.0f} MB): {ok} ingested ({report['totals']['created']} entries), "
            f"{report['totals']['failed']} failed with a recorded reason, 0 partly written, 0 tracebacks; second run "
            f"in {second.elapsed_s:.0f}s: 0 created, 0 updated. Most common reasons: {top}.")


def _check_first_run(report: dict, files: list[Path]) -> None:
    """Each source ingested completely or failed with a reason and no entry; leases released."""
    assert report["totals"]["sources"] == len(files)
    stored = dict(Entry.objects.values_list("technical_article_id").annotate(n=Count("id")))
    partial = []
    for result in report["sources"]:
        source = TechnicalArticle.objects.get(pk=result["id"])
        assert source.lease_owner == "", result
        if result["outcome"] == "failed":
            assert result["error"] and source.last_error and source.consecutive_failures == 1, result
            if stored.get(source.pk):
                partial.append(result["url"])
        else:
            assert source.last_success_at is not None and source.consecutive_failures == 0, result
            if stored.get(source.pk, 0) != result["created"]:
                partial.append(result["url"])
    assert partial == [], f"sources written in part: {partial[:20]}"
    run = IngestRun.objects.get(pk=report["run_id"])
    assert run.sources_failed == report["totals"]["failed"] and run.finished_at is not None
