"""The digest of a fetched body: what lets a run skip a 200 whose body it parsed and stored last time.

Owns ``body_digest``: a SHA-256 of the decompressed body, salted with everything that changes what
the same bytes become once stored, so that two equal digests mean "parsing again would store the
same thing": the parse rules' version (``ingest.parse.PARSE_RULES_VERSION``), the installed
feedparser, nh3 and lxml (the recovering parse), what is parsed (a feed or a comment feed), the
final URL (the base URI of relative links), the response headers the parse reads (content-type,
content-location, content-language), the source's feed URL and its credentials as references
(scheme, user name, the secret's reference and the extra headers, never a secret's value), and the
settings the store applies to parsed entries (the caller's ``options``, e.g.
INGEST_CROSS_FEED_DEDUP).

Pure: no Django, no ORM, no network; the caller reads the settings and the stored digest, and
decides. A stored digest is written only by a successful store (``ingest.services.store``), so a
failed store leaves the old one and the next run parses again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import metadata

from ingest.parse import PARSE_RULES_VERSION
from ingest.parse.document import _FORWARDED_HEADERS as PARSE_HEADERS
from ingest.types import AuthSpec

# The libraries whose behaviour is part of what a body becomes.
LIBRARIES = ("feedparser", "nh3", "lxml")


@cache
def library_versions() -> dict[str, str]:
    """The installed version of each of ``LIBRARIES`` (read once per process)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = ""
    return versions


def body_digest(
    content: bytes,
    *,
    url: str,
    headers: Mapping[str, str] | None = None,
    kind: str = "feed",
    source_url: str = "",
    auth: AuthSpec | None = None,
    options: Mapping[str, object] | None = None,
) -> str:
    """64 hex digits: the SHA-256 of ``content`` (the decompressed body) after its salt.

    ``url``: the URL finally fetched (after redirects); ``headers``: the final response's (only those
    the parse reads count, names in any case); ``kind``: "feed" or "comments"; ``source_url`` and
    ``auth``: the source's feed URL and credentials (references only); ``options``: the settings
    that change what is stored from a parse, by name (JSON-serialisable values).
    """
    read = {name.lower(): value.strip() for name, value in (headers or {}).items() if name.lower() in PARSE_HEADERS}
    salt = {
        "rules": PARSE_RULES_VERSION,
        "libraries": library_versions(),
        "kind": kind,
        "url": url,
        "headers": read,
        "source_url": source_url,
        "auth": _auth(auth),
        "options": dict(options or {}),
    }
    digest = hashlib.sha256(json.dumps(salt, sort_keys=True, ensure_ascii=True, default=str).encode("ascii"))
    digest.update(b"\0")
    digest.update(content)
    return digest.hexdigest()


def _auth(spec: AuthSpec | None) -> list:
    """The credentials as the source names them: references and literal header values, never a secret."""
    if spec is None or spec.empty:
        return []
    return [spec.scheme, spec.username, spec.secret, [list(header) for header in spec.headers]]
