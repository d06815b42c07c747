"""The HTTP stage: one conditional GET per feed, turned into a ``FetchResult`` or a ``SourceError``.

Owns everything about talking to a publisher's server. This package's names are its public face
(``from ingest.fetch import fetch_feed``); its modules, in the order a fetch meets them:

* ``config``: ``FetchSettings``, the only reader of ``django.conf.settings`` here;
* ``guard``: the SSRF guard, security code on its own: URL checks, address classification,
  allowed networks, DNS resolution and address pinning, on the first request and every redirect;
* ``transport``: the shared client, the identifying and conditional headers, timeouts, redirects
  followed one hop at a time, one retry of a GET on a dropped keep-alive connection;
* ``deadline``: the overall per-feed deadline, enforced on every socket operation;
* ``conditional``: which validators are sent and which are kept;
* ``response``: status codes to a ``FetchResult`` or an error, ``Retry-After``;
* ``body``: the size cap counted after decompression (so a gzip bomb stays small in memory);
* ``botwall``: whether a refusal is a bot protection's challenge page (and whose);
* ``failures``: httpx's transport exceptions as a sentence a user can act on;
* ``hub``: a WebSub subscription request, a form POST to a hub through the same guard (a source's
  credentials are never sent to a hub);
* ``webhook``: a signed webhook batch (Standard Webhooks), a JSON POST through the same guard;
* ``credentials``: a source's extra headers and basic / bearer credentials, checked, resolved
  from their references, and bound to the feed's origin.

It must not touch the ORM or any model and must not parse feeds. Of the app it imports
``ingest.types``, ``ingest.errors`` and ``ingest.links`` only; ``config`` alone also imports
``pipeline.networks`` (the allowed-networks syntax, shared with settings) and, inside
``FetchSettings.from_settings()``, ``django.conf``. Everything else receives its configuration
explicitly.
"""

from ingest.fetch.body import ACCEPT_ENCODING
from ingest.fetch.conditional import VALIDATOR_MAX, validator
from ingest.fetch.config import FetchSettings
from ingest.fetch.credentials import auth_spec, references, resolve
from ingest.fetch.guard import check_url
from ingest.fetch.hub import hub_request
from ingest.fetch.response import RETRY_AFTER_CAP, parse_retry_after
from ingest.fetch.transport import ACCEPT, DEFAULT_CONNECTIONS, fetch_feed, make_client
from ingest.fetch.webhook import signed_headers, webhook_post

__all__ = [
    "ACCEPT",
    "ACCEPT_ENCODING",
    "DEFAULT_CONNECTIONS",
    "RETRY_AFTER_CAP",
    "VALIDATOR_MAX",
    "FetchSettings",
    "auth_spec",
    "check_url",
    "fetch_feed",
    "hub_request",
    "make_client",
    "parse_retry_after",
    "references",
    "resolve",
    "signed_headers",
    "validator",
    "webhook_post",
]
