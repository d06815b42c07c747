"""``ingest_feeds`` as a person sees it on a terminal (a real pseudo-terminal: tmux), and piped.

On a terminal: a live progress bar on stderr with the INFO log records printed as whole lines above
it, the bar erased when the run ends (no stale bars in the scrollback), colour only on the cells and
lines that mean something (failed red, created green, a summary with failures yellow), and the
table's columns aligned whatever is coloured. Piped: plain text, no escape code at all. And the
verbosity levels: 0 nothing but warnings and errors, 1 the summary, 2 a line per source, 3 debug.

The commands run as real ``manage.py`` processes against this test's database (``transactional_db``)
and the loopback feed server.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ingest.models import TechnicalArticle
from tests.helpers import database_url

ROOT = Path(__file__).resolve().parent.parent
FEEDS = Path(__file__).parent / "data" / "feeds"
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")
ESCAPE = "\x1b"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
RED, GREEN, YELLOW = "31", "32", "33"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def environment(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TMUX")}
    return {**env, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url(), "LOG_FORMAT": "text",
            "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **extra}


def piped(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment(), capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def on_terminal(*args: str, tmp_path: Path) -> tuple[str, str, str]:
    """Run ``manage.py *args`` in a 150x50 tmux pane; (raw bytes written, screen text, screen with SGR)."""
    session = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    raw, done = tmp_path / "raw", tmp_path / "done"
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in environment().items() if k.isidentifier())
    command = (f"sleep 0.5; cd {shlex.quote(str(ROOT))} && env {exports} {shlex.quote(sys.executable)} manage.py "
               f"{' '.join(map(shlex.quote, args))}; echo $? > {shlex.quote(str(done))}; sleep 600")
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]  # its own server, gone with tmp_path
    subprocess.run([*tmux, "new-session", "-d", "-s", session, "-x", "150", "-y", "50", command], check=True)
    try:
        subprocess.run([*tmux, "pipe-pane", "-t", session, "-o", f"cat >> {shlex.quote(str(raw))}"], check=True)
        deadline = time.monotonic() + 120
        while not done.exists() or not done.read_text().strip():
            assert time.monotonic() < deadline, "the command did not finish on the terminal"
            time.sleep(0.1)
        assert done.read_text().strip() == "0"
        time.sleep(0.3)  # let tmux take in the last bytes
        capture = [*tmux, "capture-pane", "-p", "-J", "-t", session, "-S", "-"]
        screen = subprocess.run(capture, check=True, capture_output=True, text=True).stdout
        coloured = subprocess.run([*capture, "-e"], check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    return raw.read_bytes().decode("utf-8", "replace"), screen, coloured


@pytest.fixture
def sources(transactional_db, feed_server):
    """Three feeds that work, each answering after a pause (the bar is live while they log), one 500."""
    body = (FEEDS / "blog.rss").read_bytes()
    made = []
    for name in ("one", "two", "three"):
        feed_server.add(f"/{name}.rss", body, delay=0.4)
        made.append(TechnicalArticle.objects.create(name=name.title(), feed_url=feed_server.url(f"/{name}.rss")))
    feed_server.add("/broken.rss", b"oops", status=500, content_type="text/plain", delay=0.4)
    made.append(TechnicalArticle.objects.create(name="Broken", feed_url=feed_server.url("/broken.rss")))
    return made


def nonblank(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_on_a_terminal_logs_are_whole_lines_above_a_bar_that_is_erased_and_colour_means_something(sources, tmp_path):
    raw, screen, coloured = on_terminal("ingest_feeds", "--workers", "1", "--verbosity", "2", tmp_path=tmp_path)
    assert re.search(r"ingest \[#*-*\] \d/4 ", raw), "no progress bar was drawn"
    # Log records arrived while the bar was live: between its first drawing and its erasure.
    first_bar, last_bar = raw.index("ingest ["), raw.rindex("ingest [")
    assert "source done" in raw[first_bar:last_bar], raw

    text = nonblank(screen)
    assert not [line for line in text if "ingest [" in line], "a stale bar is left on the screen:\n" + screen
    logs = [line for line in text if " source done" in line or " source failed" in line or " ingest finished" in line]
    assert len(logs) == 5, screen  # three done, one failed, the run's end
    assert all(LOG_LINE.match(line) for line in logs), "log text not at the start of its own line:\n" + screen
    per_source = [line for line in text if re.match(r"(created|failed) +http://", line)]
    assert len(per_source) == 4, screen  # verbosity 2: a line per source, above the bar too

    # The table: columns line up although the outcome cells are coloured.
    header = next(line for line in text if line.lstrip().startswith("id  source"))  # ids right-aligned
    broken = next(line for line in text if re.match(r" *\d+  Broken ", line))
    assert broken.index("HTTP 500") == header.index("reason"), screen
    assert re.match(r"Run \d+ partial: 4 sources, 15 new, .* 1 failed in ", text[-1]), screen

    # Colour only where it means something.
    painted, current = {}, None
    for token in re.split(r"(\x1b\[[0-9;]*m)", coloured):
        if SGR.fullmatch(token):
            current = None if SGR.fullmatch(token).group(1) in ("", "0", "39") else SGR.fullmatch(token).group(1)
        elif current:
            for piece in token.splitlines():
                if piece.strip():
                    painted.setdefault(piece.strip(), set()).update(current.split(";"))
    assert painted.pop("failed") == {RED}
    assert painted.pop("created") == {GREEN}
    [summary] = [text for text in painted if text.startswith("Run ")]
    assert painted.pop(summary) == {YELLOW}  # a run with a failure
    assert painted == {}, f"coloured without a meaning: {painted}"


def test_piped_output_has_no_escape_codes_and_no_bar(sources):
    proc = piped("ingest_feeds", "--workers", "1", "--verbosity", "2")
    assert proc.returncode == 0, proc.stderr
    assert ESCAPE not in proc.stdout and ESCAPE not in proc.stderr
    assert "ingest [" not in proc.stderr and "\r" not in proc.stderr
    assert all(LOG_LINE.match(line) for line in nonblank(proc.stderr)), proc.stderr


def test_the_verbosity_levels_show_what_they_promise(sources):
    def levels(stderr: str) -> set[str]:
        return {LOG_LINE.match(line).group(1) for line in nonblank(stderr)}

    quiet = piped("ingest_feeds", "--all", "--verbosity", "0")
    assert quiet.returncode == 0 and quiet.stdout == ""
    assert levels(quiet.stderr) == {"WARNING"}, quiet.stderr  # the failing feed, and nothing below WARNING

    summary = piped("ingest_feeds", "--all", "--verbosity", "1")
    text = nonblank(summary.stdout)
    assert text[0].lstrip().startswith("id  source") and len(text) == 2 + 4 + 1 and text[-1].startswith("Run ")
    assert levels(summary.stderr) == {"INFO", "WARNING"}, summary.stderr

    per_source = piped("ingest_feeds", "--all", "--verbosity", "2")
    text = nonblank(per_source.stdout)
    assert len(text) == 4 + 2 + 4 + 1 and all(re.match(r"(unchanged|failed) +http://", line) for line in text[:4])
    assert levels(per_source.stderr) == {"INFO", "WARNING"}

    debug = piped("ingest_feeds", "--all", "--verbosity", "3")
    assert nonblank(debug.stdout)[-1].startswith("Run ")
    assert levels(debug.stderr) == {"DEBUG", "INFO", "WARNING"}, debug.stderr
    assert re.search(r"DEBUG +ingest\.cli: command started command=ingest_feeds", debug.stderr), debug.stderr
