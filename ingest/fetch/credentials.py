"""A source's credentials and extra request headers: checked when a source is registered or
edited, resolved into ``Credentials`` at request time, and the origin rule that decides where
the secret ones may go.

Owns the reference syntax (``env:NAME``: an environment variable, ``setting:KEY``: a key of
INGEST_FEED_SECRETS), the schemes (none, basic, bearer), which extra headers are refused (not a
token, hop-by-hop, ``Host``, ``Content-Length``, ``Authorization`` (the scheme's), the fetcher's own
conditional and encoding headers; a value with CR, LF, another control character or a character
outside ASCII) and the
sentences of every refusal, which name a reference and never a value. Where the values live is
not its business: ``resolve`` is handed a lookup. Must not touch the ORM or read settings.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping

import httpx

from ingest.errors import CredentialsError
from ingest.types import AUTH_REFERENCE_MAX, AUTH_USERNAME_MAX, AuthSpec, Credentials

SCHEMES = ("none", "basic", "bearer")
REFERENCE = re.compile(r"(?:env:[A-Za-z_][A-Za-z0-9_]{0,127}|setting:[A-Za-z0-9_.\-]{1,128})\Z")
REFERENCE_MAX = AUTH_REFERENCE_MAX  # "setting:" and 128 characters fit the column
USERNAME_MAX = AUTH_USERNAME_MAX
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}\Z")  # RFC 9110 token
HEADER_VALUE_MAX = 1000
HEADERS_MAX = 20
# Hop-by-hop (RFC 9110 section 7.6.1), the framing and the target (the client's), Authorization
# (the scheme's), and the fetcher's own conditional and encoding headers.
REFUSED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length", "authorization",
    "accept-encoding", "if-none-match", "if-modified-since",
})
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # every control character but HTAB
_UNSENDABLE = re.compile(r"[^\t\x20-\x7e]")  # a header value is sent as ASCII: anything else is refused

Lookup = Callable[[str], "str | None"]


def check_reference(reference: str, *, what: str = "the secret") -> str:
    """``reference`` stripped, or ``CredentialsError`` saying what the syntax is."""
    reference = (reference or "").strip()
    if not REFERENCE.match(reference):
        # The text may be a value pasted by mistake: it is not quoted back.
        raise CredentialsError(f"{what} must name a secret as env:NAME or setting:KEY, not hold a value.")
    return reference


def check_headers(extra_headers: object) -> tuple[tuple[str, str, bool], ...]:
    """The extra headers of a source, from their JSON form: ``{"X-Client": "literal",
    "X-Api-Key": {"secret": "env:NAME"}}``. Names are tokens, unique ignoring case."""
    if extra_headers in (None, ""):
        return ()
    if not isinstance(extra_headers, Mapping):
        raise CredentialsError('The extra headers must be a JSON object: {"Name": "value" or {"secret": "env:NAME"}}.')
    if len(extra_headers) > HEADERS_MAX:
        raise CredentialsError(f"At most {HEADERS_MAX} extra headers are allowed.")
    headers, seen = [], set()
    for name, value in extra_headers.items():
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise CredentialsError(f"The header name {str(name)[:100]!r} is not a valid HTTP header name.")
        if name.lower() in REFUSED_HEADERS:
            why = "comes from the auth scheme" if name.lower() == "authorization" else "is set by the fetcher"
            raise CredentialsError(f"The header {name} cannot be an extra header: it {why}.")
        if name.lower() in seen:
            raise CredentialsError(f"The header {name} is given twice.")
        seen.add(name.lower())
        if isinstance(value, Mapping):
            if set(value) != {"secret"} or not isinstance(value["secret"], str):
                raise CredentialsError(f'The header {name} must be a string or {{"secret": "env:NAME"}}.')
            headers.append((name, check_reference(value["secret"], what=f"The header {name}"), True))
        elif isinstance(value, str):
            if _CONTROL.search(value):
                raise CredentialsError(f"The header {name} has a line break or a control character in its value.")
            if _UNSENDABLE.search(value):
                raise CredentialsError(f"The header {name} has a character outside ASCII in its value.")
            if len(value) > HEADER_VALUE_MAX:
                raise CredentialsError(f"The header {name} is longer than {HEADER_VALUE_MAX} characters.")
            headers.append((name, value.strip(), False))
        else:
            raise CredentialsError(f'The header {name} must be a string or {{"secret": "env:NAME"}}.')
    return tuple(headers)


def auth_spec(*, scheme: str = "none", username: str = "", secret: str = "", extra_headers: object = None) -> AuthSpec:
    """Check a source's credentials as a form gives them; ``CredentialsError`` with the sentence."""
    scheme = (scheme or "none").strip().lower()
    if scheme not in SCHEMES:
        raise CredentialsError(f"The auth scheme must be one of {', '.join(SCHEMES)}, not {scheme[:20]!r}.")
    username, secret = (username or "").strip(), (secret or "").strip()
    if scheme == "none" and (username or secret):
        raise CredentialsError("A user name or secret is given but the auth scheme is none.")
    if scheme == "bearer" and username:
        raise CredentialsError("A user name is only for the basic scheme.")
    if scheme == "basic":
        if not username or ":" in username or _CONTROL.search(username) or len(username) > USERNAME_MAX:
            raise CredentialsError(f"The basic scheme needs a user name without ':' or control characters, "
                                   f"at most {USERNAME_MAX} characters.")
    if scheme != "none":
        secret = check_reference(secret, what=f"The {scheme} secret")
    return AuthSpec(scheme=scheme, username=username, secret=secret, headers=check_headers(extra_headers))


def references(spec: AuthSpec) -> list[str]:
    """Every secret the spec names, in order."""
    return ([spec.secret] if spec.scheme != "none" else []) + [value for _, value, ref in spec.headers if ref]


def resolve(spec: AuthSpec, *, origin: str, lookup: Lookup) -> Credentials:
    """The headers to send, each reference looked up now. A secret that is not set, empty, or
    holding a line break is a ``CredentialsError`` naming its reference."""
    public = tuple((name, value) for name, value, ref in spec.headers if not ref)
    secret = tuple((name, _value(value, lookup)) for name, value, ref in spec.headers if ref)
    if spec.scheme == "basic":
        pair = f"{spec.username}:{_value(spec.secret, lookup, ascii_only=False)}".encode()  # UTF-8, base64
        secret = (("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")), *secret)
    elif spec.scheme == "bearer":
        secret = (("Authorization", "Bearer " + _value(spec.secret, lookup)), *secret)
    return Credentials(origin=origin, public=public, secret=secret)


def _value(reference: str, lookup: Lookup, *, ascii_only: bool = True) -> str:
    value = lookup(reference)
    if value is None:
        raise CredentialsError(f"secret {reference} is not set")
    value = value.strip()
    if not value:
        raise CredentialsError(f"secret {reference} is empty")
    if _CONTROL.search(value):
        raise CredentialsError(f"secret {reference} holds a line break or a control character")
    if ascii_only and _UNSENDABLE.search(value):
        raise CredentialsError(f"secret {reference} holds a character outside ASCII, which a header cannot carry")
    return value


def origin_of(url: str | httpx.URL) -> tuple[str, str, int | None]:
    """scheme, host and port (the default one when absent): what a secret header is bound to."""
    try:
        url = httpx.URL(url) if isinstance(url, str) else url
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return ("", "", None)
    port = url.port or {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host.lower(), port)


def same_origin(url: str | httpx.URL, origin: str) -> bool:
    return bool(origin) and origin_of(url) == origin_of(origin)
