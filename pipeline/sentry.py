"""Error tracking with Sentry, on when ``SENTRY_DSN`` is set: the settings call ``sentry_init`` and
nothing else imports ``sentry_sdk``, so an install without a DSN never loads it.

Every process that loads the settings reports: the commands (an uncaught exception, and every
record logged at ERROR, such as a source's internal error with its traceback), the web process
(Django), the Celery worker (a task that fails) and beat, whose schedule becomes Sentry cron
monitors (a check-in when beat sends an entry, another when its task ends), and the Azure timers.

What never leaves the process (docs/heartbeats.md): no personal data (``send_default_pii`` off),
no value of a key Sentry's scrubber or ours calls secret (``auth_secret``, ``hub_secret``, ...),
and no known secret wherever it appears (a message, a frame's variable, a breadcrumb): the values
of ``INGEST_FEED_SECRETS``, of environment variables whose name says secret (``*_TOKEN``,
``*PASSWORD*``, ...; where ``env:NAME`` references should point), ``DJANGO_SECRET_KEY``, the
heartbeat URLs, and the password of any URL (``scheme://user:password@host``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from django.core.exceptions import ImproperlyConfigured

FILTERED = "[Filtered]"
# A name that says its value is a secret; env:NAME references to feed credentials should match it.
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|API_?KEY|PRIVATE|CREDENTIAL|AUTH|DSN|_KEY\Z", re.I)
SHORTEST = 6  # shorter values would filter ordinary words out of every event
URL_PASSWORD = re.compile(r"(?<=://)([^/@:\s]*):[^/@\s]+@")
# Keys (any depth) whose values are dropped, on top of Sentry's list (password, secret, token, auth ...).
EXTRA_KEYS = ["auth_secret", "auth_username", "extra_headers", "hub_secret", "secret_value", "webhook_secret",
              "signature", "x_hub_signature", "x_hub_signature_256", "proxy_authorization", "database_url",
              "celery_broker_url", "celery_result_backend", "ingest_feed_secrets", "django_secret_key",
              "secret_key", "dsn", "sentry_dsn", "pipeline_heartbeat_url", "pipeline_heartbeat_fail_url"]


def sentry_init(dsn: str, *, environment: str, traces_sample_rate: float, secrets: Iterable[str] = ()) -> None:
    """Start the SDK with the Django and Celery integrations, or ``ImproperlyConfigured`` with a
    sentence (an unparsable DSN, or sentry-sdk missing) that quotes no part of the DSN."""
    try:
        import sentry_sdk
        from sentry_sdk.integrations.celery import CeleryIntegration
        from sentry_sdk.integrations.django import DjangoIntegration
        from sentry_sdk.scrubber import DEFAULT_DENYLIST, EventScrubber
        from sentry_sdk.utils import BadDsn, Dsn
    except ImportError:
        raise ImproperlyConfigured("SENTRY_DSN is set but sentry-sdk is not installed "
                                   "(pip install -r requirements.txt).") from None
    try:
        Dsn(dsn)
    except BadDsn:
        raise ImproperlyConfigured("SENTRY_DSN must be a Sentry DSN such as "
                                   "https://<key>@<host>/<project id> (the project's Client Keys page).") from None
    known = [value for value in secrets if value and len(value) >= SHORTEST]
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
        event_scrubber=EventScrubber(denylist=[*DEFAULT_DENYLIST, *EXTRA_KEYS], recursive=True),
        before_send=lambda event, hint: scrub(event, known),
        before_send_transaction=lambda event, hint: scrub(event, known),
        before_breadcrumb=lambda crumb, hint: scrub(crumb, known),
        integrations=[DjangoIntegration(), CeleryIntegration(monitor_beat_tasks=True)],
    )


def scrub(event: dict, known: Iterable[str]) -> dict:
    """``event`` with every known secret (and the environment's secret-named values, read now:
    feed credentials are read from the environment at request time) replaced by ``[Filtered]``."""
    values = {*known, *(v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= SHORTEST)}
    # Longest first, so that a secret containing another is replaced whole.
    return _walk(event, sorted(values, key=len, reverse=True))


def _walk(value, secrets: list[str]):
    if isinstance(value, str):
        value = URL_PASSWORD.sub(rf"\1:{FILTERED}@", value)
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, FILTERED)
        return value
    if isinstance(value, dict):
        return {key: _walk(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(item, secrets) for item in value]
    return value
