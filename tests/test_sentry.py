"""Sentry (pipeline/sentry.py): a loopback receiver stands in for Sentry's ingest endpoint
(``SENTRY_DSN=http://public@127.0.0.1:<port>/1``), real processes report to it: a command that
dies on an unexpected error, and beat's check-ins of its schedule. What arrives carries the
exception and none of the secrets the process knew."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from celery.beat import PersistentScheduler

from tests.helpers import ROOT
from tests.receiver import Receiver
from tests.config_process import assert_configuration_error, explain, manage

pytestmark = pytest.mark.nodb
needs_sentry = pytest.mark.skipif(importlib.util.find_spec("sentry_sdk") is None,
                                  reason="sentry-sdk is not installed (pip install -r requirements.txt)")

# What the process knows and must never send: a feed secret (setting:feed), a feed token named
# env:FEED_EXAMPLE_TOKEN, a literal under a key that says secret, a URL's password, the secret key.
SECRETS = {
    "INGEST_FEED_SECRETS": json.dumps({"feed": "feed-secret-value-1"}),
    "FEED_EXAMPLE_TOKEN": "env-token-value-2",
    "DJANGO_SECRET_KEY": "django-key-value-5-" + "x" * 40,
}
NEVER_SENT = ("feed-secret-value-1", "env-token-value-2", "literal-under-auth-secret-3", "url-password-4",
              "django-key-value-5")
CRASH = """
import os
from django.conf import settings
value = settings.INGEST_FEED_SECRETS["feed"]
header = os.environ["FEED_EXAMPLE_TOKEN"]
auth_secret = "literal-under-" + "auth-secret-3"  # joined: the command line (sys.argv) is sent too
broker = "redis://:url-" + "password-4@cache.example:6379/0"
raise RuntimeError(f"the feed refused {value} and {header} via {broker}")
"""


def dsn(receiver: Receiver) -> str:
    return f"http://public@127.0.0.1:{receiver.port}/1"


def events(receiver: Receiver, kind: str) -> list[dict]:
    return [payload for r in receiver.received if r.path == "/api/1/envelope/"
            for header, payload in r.envelope() if header.get("type") == kind]


def test_unset_sentry_is_not_imported():
    script = ("import sys, django; django.setup(); from django.conf import settings; "
              "print(bool(settings.SENTRY_DSN), 'sentry_sdk' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings"},
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


@needs_sentry
@pytest.mark.parametrize("value", ["not a dsn", "https://sentry.example/1", "ftp://key@sentry.example/1"])
def test_an_invalid_dsn_is_one_sentence_and_exit_2(value):
    result = manage("check", env={"SENTRY_DSN": value})
    sentence = assert_configuration_error(result, "SENTRY_DSN must be a Sentry DSN such as https://<key>@<host>/<project id>")
    assert value not in sentence


@needs_sentry
def test_a_command_that_dies_reports_the_exception_and_no_secret():
    with Receiver() as receiver:
        result = manage("shell", "-c", CRASH, env={"SENTRY_DSN": dsn(receiver), "SENTRY_ENVIRONMENT": "test", **SECRETS})
        assert result.returncode == 1 and "RuntimeError" in result.stderr, explain(result)
        got = receiver.wait(lambda got: events(receiver, "event"), timeout=10)
    [event] = events(receiver, "event")
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    assert exception["value"].startswith("the feed refused [Filtered] and [Filtered] via redis://:[Filtered]@")
    assert event["environment"] == "test"
    assert exception["stacktrace"]["frames"]  # with the frames' variables, scrubbed
    raw = b"".join(r.body for r in got)
    assert [s for s in NEVER_SENT if s.encode() in raw] == []
    assert "user" not in event or not event["user"].get("ip_address")  # send_default_pii is off


@needs_sentry
def test_beat_checks_its_schedule_in_as_cron_monitors(broker, tmp_path):
    # Sentry Crons take intervals of a minute or more: beat's state file says the entry last ran
    # ten minutes ago, so that beat sends it at once instead of a minute after it starts.
    state = tmp_path / "beat-schedule"
    scheduler = PersistentScheduler(app=broker, schedule_filename=str(state), lazy=True)
    scheduler.setup_schedule()
    scheduler.schedule["ingest-feeds"].last_run_at = broker.now() - timedelta(minutes=10)
    scheduler.sync()
    scheduler.close()
    with Receiver() as receiver:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "SENTRY_DSN": dsn(receiver),
               "INGEST_SCHEDULE_SECONDS": "60", "CELERY_BEAT_SCHEDULE_FILENAME": str(state)}
        beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "pipeline", "beat", "--loglevel=WARNING"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        started = time.monotonic()
        try:
            receiver.wait(lambda got: events(receiver, "check_in"), timeout=30)
        finally:
            os.killpg(beat.pid, signal.SIGTERM)
            _, stderr = beat.communicate(timeout=20)
    check_ins = events(receiver, "check_in")
    assert check_ins, f"no check-in in {time.monotonic() - started:.0f} s; beat said:\n{stderr.decode()[-3000:]}"
    first = check_ins[0]
    assert first["monitor_slug"] == "ingest-feeds" and first["status"] == "in_progress"
    assert first["monitor_config"]["schedule"] == {"type": "interval", "value": 1, "unit": "minute"}
