"""The README's quick start shows what ``ingest_feeds`` really prints: its sample summary lines,
numbers generalised, match the lines the command prints on the same sample feeds (``./scripts/run``)."""

import re
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from ingest.models import TechnicalArticle
from samples.serve import FEEDS, PLACEHOLDER, top_level_feeds

README = Path(__file__).resolve().parent.parent / "README.md"


def quick_start_summaries() -> list[str]:
    """The ``Run N succeeded: N sources, ...`` lines of the README's "Run it" section, in order."""
    section = README.read_text(encoding="utf-8").split("\n## Run it\n", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"^Run \d+ \w+: \d+ sources, .*$", section, flags=re.MULTILINE)
    assert len(found) == 2, "the quick start shows a first and a second ingest_feeds run"
    return found


def shape(line: str) -> re.Pattern:
    """The README line as a pattern: every number (and the seconds) generalised, the words kept."""
    pattern = re.escape(line)
    pattern = re.sub(r"\d+\\\.\d+", r"\\d+\\.\\d+", pattern)
    pattern = re.sub(r"(?<![\\d])\d+", r"\\d+", pattern)
    return re.compile(pattern)


def test_the_shape_patterns_can_tell_lines_apart():
    first, second = quick_start_summaries()
    assert shape(first).fullmatch(first) and shape(second).fullmatch(second)
    assert not shape(first).fullmatch(second)  # the first run records pingbacks, the second does not
    assert not shape(first).fullmatch(first.replace(" new comments", " comments"))


@pytest.fixture
def samples(db, feed_server, settings):
    """The sample feeds as ./scripts/run registers them: WordPress with its comment feeds."""
    settings.INGEST_COMMENTS_DAYS = 36500  # the sample posts have fixed dates, as in scripts/run
    feed_server.add_folder(FEEDS, replace={PLACEHOLDER: feed_server.base_url.encode()}, charset="utf-8")
    for path in top_level_feeds():
        TechnicalArticle.objects.create(name="", feed_url=feed_server.url(f"/{path.name}"),
                                        fetch_comments=path.name == "wordpress.xml")


def test_the_quick_start_summaries_are_what_ingest_feeds_prints(samples):
    printed = []
    for _ in range(2):
        out = StringIO()
        call_command("ingest_feeds", "--all", stdout=out, stderr=StringIO())
        printed.append(out.getvalue().rstrip("\n").splitlines()[-1])
    for readme_line, line in zip(quick_start_summaries(), printed):
        assert shape(readme_line).fullmatch(line), f"README: {readme_line}\nprinted: {line}"
