"""``manage.py import_opml``: a file or standard input, nested outlines, duplicates, bad OPML, output.

What a user sees: the summary line, one line per feed at --verbosity 2, rejected URLs with their
reason on stderr, one sentence and exit status 2 for a file that is not OPML, and the JSON object.
"""

import io
import json
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.models import TechnicalArticle
from tests.helpers import database_url

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "opml"
NESTED = DATA / "nested.opml"  # 3 feeds at depths 1-3, one duplicate, 2 hostile URLs, a folder, a web page
FEEDS = {"http://127.0.0.1:9/planet.rss", "http://127.0.0.1:9/mysql.atom", "http://127.0.0.1:9/deep.rss"}
REJECTED = {"file:///etc/passwd", "http://10.0.0.1/internal.rss"}


def run(*args, stdin: bytes | None = None, monkeypatch=None) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    call_command("import_opml", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def registered() -> dict[str, str]:
    return dict(TechnicalArticle.objects.values_list("feed_url", "name"))


def test_a_nested_file_registers_each_feed_once_and_says_so(db):
    out, err = run(str(NESTED))
    assert registered() == {"http://127.0.0.1:9/planet.rss": "Planet PostgreSQL",  # the first outline's title
                            "http://127.0.0.1:9/mysql.atom": "MySQL news", "http://127.0.0.1:9/deep.rss": "Deep"}
    assert out.strip().splitlines() == ["3 added, 0 already registered, 2 rejected."]
    assert sorted(err.strip().splitlines()) == [
        "rejected  file:///etc/passwd: Only http and https URLs can be fetched, not file: URLs.",
        ("rejected  http://10.0.0.1/internal.rss: Refused to fetch from 10.0.0.1: it is a private address. "
         "To fetch from it on purpose, add 10.0.0.1/32 to INGEST_ALLOWED_NETWORKS."),
    ]


def test_importing_again_changes_nothing_and_reports_them_as_registered(db):
    run(str(NESTED))
    before = list(TechnicalArticle.objects.order_by("pk").values_list("pk", "feed_url", "name"))
    out, _ = run(str(NESTED))
    assert out.strip() == "0 added, 3 already registered, 2 rejected."
    assert list(TechnicalArticle.objects.order_by("pk").values_list("pk", "feed_url", "name")) == before


def test_json_lists_added_existing_and_rejected_with_reasons(db):
    TechnicalArticle.objects.create(name="Mine", feed_url="http://127.0.0.1:9/deep.rss")
    out, err = run(str(NESTED), "--json")
    result = json.loads(out)
    assert set(result) == {"added", "existing", "rejected"}
    assert {a["url"] for a in result["added"]} == FEEDS - {"http://127.0.0.1:9/deep.rss"}
    assert result["existing"] == [{"id": TechnicalArticle.objects.get(name="Mine").pk, "url": "http://127.0.0.1:9/deep.rss"}]
    assert {r["url"] for r in result["rejected"]} == REJECTED and all(r["error"] for r in result["rejected"])
    assert {a["id"] for a in result["added"]} == set(TechnicalArticle.objects.exclude(name="Mine").values_list("pk", flat=True))
    assert err == ""  # --json: the rejections are in the object, not also on stderr
    assert TechnicalArticle.objects.get(feed_url="http://127.0.0.1:9/deep.rss").name == "Mine"  # left as it was


def test_dash_reads_standard_input(db, monkeypatch):
    out, _ = run("-", stdin=NESTED.read_bytes(), monkeypatch=monkeypatch)
    assert out.strip() == "3 added, 0 already registered, 2 rejected."
    assert set(registered()) == FEEDS


def manage_with_stdin(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url()}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin, capture_output=True,
                          timeout=120)


def test_dash_reads_standard_input_of_a_real_process(transactional_db):
    proc = manage_with_stdin("import_opml", "-", "--json", stdin=NESTED.read_bytes())
    assert proc.returncode == 0, proc.stderr.decode()
    assert {a["url"] for a in json.loads(proc.stdout)["added"]} == FEEDS
    assert set(registered()) == FEEDS


def test_a_real_process_given_bad_opml_prints_one_sentence_and_exits_2(transactional_db):
    proc = manage_with_stdin("import_opml", "-", stdin=b"<rss version='2.0'><channel/></rss>")
    assert proc.returncode == 2
    assert proc.stdout == b""
    assert proc.stderr.decode().splitlines() == [
        "CommandError: -: The file is XML but not OPML (its root element is <rss>)."]
    assert TechnicalArticle.objects.count() == 0


@pytest.mark.parametrize(("content", "sentence"), [
    (b"<html><body>not a feed list</body></html>", "The file is XML but not OPML (its root element is <html>)."),
    (b"<opml><body><outline xmlUrl='http://127.0.0.1:9/x'>", "The file is not well-formed OPML"),
    (b"", "The file is not well-formed OPML"),
    (b'<!DOCTYPE opml [<!ENTITY a "aaaa">]><opml><body><outline text="&a;" xmlUrl="http://127.0.0.1:9/x"/></body></opml>',
     "The OPML file uses forbidden XML features"),
])
def test_bad_opml_is_one_sentence_exit_2_and_registers_nothing(db, tmp_path, content, sentence):
    path = tmp_path / "bad.opml"
    path.write_bytes(content)
    with pytest.raises(CommandError) as info:
        run(str(path))
    assert info.value.returncode == 2
    message = str(info.value)
    assert message.startswith(f"{path}: {sentence}") and "\n" not in message
    assert TechnicalArticle.objects.count() == 0


def test_bad_opml_on_standard_input_names_it_as_dash(db, monkeypatch):
    with pytest.raises(CommandError) as info:
        run("-", stdin=b"not xml at all", monkeypatch=monkeypatch)
    assert info.value.returncode == 2 and str(info.value).startswith("-: The file is not well-formed OPML")


def test_a_directory_or_missing_file_is_one_sentence_exit_2(db, tmp_path):
    for path in (tmp_path, tmp_path / "missing.opml"):
        with pytest.raises(CommandError) as info:
            run(str(path))
        assert info.value.returncode == 2
        assert str(info.value).startswith(f"Cannot read {path}: ") and str(info.value).endswith(".")


def test_verbosity_0_prints_only_the_rejections(db):
    out, err = run(str(NESTED), "--verbosity", "0")
    assert out == ""
    assert {line.split(": ", 1)[0] for line in err.strip().splitlines()} == {f"rejected  {u}" for u in REJECTED}
    assert set(registered()) == FEEDS


def test_verbosity_2_prints_a_line_per_feed_then_the_summary(db):
    TechnicalArticle.objects.create(name="Mine", feed_url="http://127.0.0.1:9/deep.rss")
    out, err = run(str(NESTED), "--verbosity", "2")
    lines = out.strip().splitlines()
    ids = dict(TechnicalArticle.objects.values_list("feed_url", "pk"))
    assert lines == [
        f"added     {ids['http://127.0.0.1:9/planet.rss']:>5} http://127.0.0.1:9/planet.rss",
        f"added     {ids['http://127.0.0.1:9/mysql.atom']:>5} http://127.0.0.1:9/mysql.atom",
        f"existing  {ids['http://127.0.0.1:9/deep.rss']:>5} http://127.0.0.1:9/deep.rss",
        "2 added, 1 already registered, 2 rejected.",
    ]
    assert len(err.strip().splitlines()) == 2
