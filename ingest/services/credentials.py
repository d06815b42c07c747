"""A source's credentials as the services see them: where the secrets live, the check a form
makes when a source is registered or edited, and the ``Credentials`` a fetch carries.

Secrets are named by reference (``env:NAME``, ``setting:KEY``, ``ingest.fetch.credentials``) and
looked up here, at request time: ``env:`` in INGEST_SECRET_ENVIRON (the process environment),
``setting:`` in INGEST_FEED_SECRETS. No value is ever written to a row, a log line or a sentence.
No database access: the fetch threads call this.
"""

from __future__ import annotations

from django.conf import settings

from ingest import fetch as fetching
from ingest.models import TechnicalArticle
from ingest.types import NO_CREDENTIALS, AuthSpec, CommentJob, Credentials


def secret_lookup(reference: str) -> str | None:
    """The value a reference names, or None when it is not set."""
    kind, _, name = reference.partition(":")
    if kind == "env":
        return settings.INGEST_SECRET_ENVIRON.get(name)
    if kind == "setting":
        value = (settings.INGEST_FEED_SECRETS or {}).get(name)
        return value if isinstance(value, str) else None
    return None


def auth_check(*, scheme: str = "none", username: str = "", secret: str = "", extra_headers: object = None,
               require_set: bool = True) -> AuthSpec:
    """What a form (add_source, the admin, the API) checks: the syntax, and with ``require_set``
    that every secret named is set now. ``CredentialsError`` with the sentence."""
    spec = fetching.auth_spec(scheme=scheme, username=username, secret=secret, extra_headers=extra_headers)
    if require_set:
        fetching.resolve(spec, origin="", lookup=secret_lookup)
    return spec


def source_auth(source: TechnicalArticle) -> AuthSpec:
    """The source's columns as an ``AuthSpec`` (checked again: a row edited by hand fails its
    source with the sentence, at request time)."""
    return fetching.auth_spec(scheme=getattr(source, "auth_scheme", "none"), username=source.auth_username,
                              secret=source.auth_secret, extra_headers=source.extra_headers)


def source_credentials(source: TechnicalArticle) -> Credentials:
    """The headers a fetch of ``source`` sends, the secrets resolved now, bound to its feed's origin."""
    spec = source_auth(source)
    if spec.empty:
        return NO_CREDENTIALS
    return fetching.resolve(spec, origin=source.feed_url, lookup=secret_lookup)


def job_credentials(job: CommentJob) -> Credentials:
    """A comment feed's: its source's, whose secret headers go only to the source feed's origin."""
    if job.auth is None or job.auth.empty:
        return NO_CREDENTIALS
    return fetching.resolve(job.auth, origin=job.source_url, lookup=secret_lookup)
