"""Bot walls: a refusal that is a publisher's bot protection, not a broken feed (``detect``).

A CDN or web application firewall in front of a feed answers an automated client with a challenge
page (a JavaScript or CAPTCHA check for a browser) instead of the feed. Retrying soon cannot pass
it, and an operator who reads "HTTP 403 Forbidden" looks for a broken URL; named, the failure says
who refused and that the fix is on the publisher's side (an allow-list entry for this fetcher).

One table, ``SIGNATURES``: per vendor, the response headers and the body markers that identify its
challenge page. Only a refusal is examined (403, 503, and a 429 that carries a vendor's marker),
over the headers and the first ``PEEK_BYTES`` of the body: every vendor's challenge page names
itself in its first kilobytes. A marker is specific to the vendor's challenge (a script path, an
element id, a phrase of its page), so an ordinary 403 of a site served through that CDN is not a
wall. Pure: no I/O, no Django.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PEEK_BYTES = 8192  # of the body, read from a refusal to recognise a challenge page
STATUSES = frozenset({403, 429, 503})
CHALLENGE_HEADER = ("cf-mitigated", "challenge")  # says "challenge" in so many words, on any status


@dataclass(frozen=True)
class Signature:
    vendor: str
    # (header, value substring; "" for "present at all"), lower-cased. One match is enough.
    headers: tuple[tuple[str, str], ...] = ()
    # Lower-cased substrings of the body's first PEEK_BYTES. One match is enough.
    body: tuple[str, ...] = ()
    # False: the vendor adds its headers to every response, so they name it only beside a body marker.
    header_alone: bool = True


SIGNATURES: tuple[Signature, ...] = (
    Signature("Cloudflare", headers=(CHALLENGE_HEADER,),
              body=("<title>just a moment...</title>", "/cdn-cgi/challenge-platform/", "cf-browser-verification",
                    "cf_chl_opt", "attention required! | cloudflare")),
    Signature("DDoS-Guard", headers=(("server", "ddos-guard"),),
              body=("ddos-guard.net/", "<title>ddos-guard</title>", "check.ddos-guard.net")),
    Signature("Sucuri", headers=(("x-sucuri-block", ""),),
              body=("sucuri website firewall", "sucuri.net/privacy-policy", "cloudproxy@sucuri.net")),
    Signature("Imperva", headers=(("x-iinfo", ""),), header_alone=False,
              body=("pardon our interruption", "_incapsula_resource", "incapsula incident id")),
    Signature("PerimeterX", body=("px-captcha", "captcha.px-cdn.net", "_pxappid")),
    Signature("DataDome", headers=(("x-datadome", ""), ("x-dd-b", "")), header_alone=False,
              body=("captcha-delivery.com", "geo.captcha-delivery.com")),
    # Akamai's "Access Denied" page: its reference number is written with these entities.
    Signature("Akamai", headers=(("server", "akamaighost"),), body=("errors.edgesuite.net", "reference&#32;&#35;")),
)


def detect(status: int, headers: Mapping[str, str], head: bytes) -> str | None:
    """The vendor whose bot protection produced this refusal, or None for an ordinary one.

    ``headers`` has lower-cased names (httpx's); ``head`` is the start of the body. A 429 is a
    rate limit unless it is clearly a challenge: a challenge page in its body, or Cloudflare's
    ``cf-mitigated: challenge``; a vendor's ``Server`` header on a 429 is only its rate limit.
    """
    if status not in STATUSES:
        return None
    text = head[:PEEK_BYTES].decode("latin-1").lower()
    for signature in SIGNATURES:
        in_body = any(marker in text for marker in signature.body)
        in_headers = any(name in headers and value in headers[name].lower() for name, value in signature.headers)
        if status == 429:
            in_headers = in_headers and signature.headers[0] == CHALLENGE_HEADER
        if in_body or (in_headers and signature.header_alone):
            return signature.vendor
    return None
