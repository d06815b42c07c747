"""Feed parsing: a fetched body and its response headers in, the immutable values of ``ingest.types`` out.

Owns the rules that turn one document into what the pipeline stores. This package's names are its
public face (``from ingest.parse import parse_feed``); its modules, one job each:

* ``feed``: ``parse_feed``, what an entry becomes (headline, body, link, dates, authors,
  comment-feed pointer, content hash, link keys) and the feed's warning;
* ``comments``: ``parse_comments``, per-post comment feeds;
* ``document``: the call to feedparser, the base URI, refusing what is not a feed, entry guids;
* ``fast``: the fast path, lxml replaying feedparser's reading of the well-formed documents it is
  sure of (the same result), tried first unless the caller passes ``parser="feedparser"``;
* ``jsonfeed``: JSON Feed 1.0 / 1.1 read into feedparser's shape (nesting bounded), so that
  ``feed`` builds its entries by the same rules;
* ``text``: plain-text headlines and author names; ``dates``: plausible dates only;
* ``html``: sanitized bodies and the HTML limits (``BodyGuard``); ``htmlscan``: the linear-time
  simulation of html5ever's stack that finds where a body must be cut.

Pure: no Django, no ORM, no network, no clock unless the caller leaves out ``now``; it imports
``ingest.types``, ``ingest.errors`` and ``ingest.links`` only. Every value is cut to its column
width (``ingest.types``) here, so no long value ever raises, and no value holds a NUL character
(PostgreSQL rejects it; feedparser's lenient parser passes it through, raw or as ``&#0;``). A body
that is not a feed raises ``ParseError`` with a one-sentence reason.

HTML limits. Sanitizing is superlinear in the nesting of the markup, so before nh3 sees an entry or
comment body, a linear scan cuts it just before the first tag that would take it past
``BODY_MAX_DEPTH`` (512) elements nested, ``BODY_MAX_REOPENED`` (12) formatting elements left open to
be reopened at every run of text, or misnesting that would cost the scan itself more than linear
time; and any body to its first ``BODY_MAX_CHARS`` (16 Mi) characters. The entry is kept with what
comes before the cut, and the feed's ``warning`` says which entry was cut and why (a comment feed's
cuts are logged). No body of the 200 real feeds of the shared corpus comes near a limit. This
bounds what one parse can cost where nothing can interrupt it (a fetch thread, a Celery prefork
child); ``ingest.parsepool`` also gives each parse in a worker process a time budget.

The URL helpers (``normalize_url``, ``link_key``, ``extract_links``, ``outbound_link_keys``) live in
``ingest.links`` and are re-exported here for the modules that still import them from parse.
"""

from ingest.links import extract_links, link_key, normalize_url, outbound_link_keys
from ingest.parse.comments import parse_comments
from ingest.parse.feed import parse_feed
from ingest.parse.html import BODY_MAX_CHARS, BODY_MAX_DEPTH, BODY_MAX_REOPENED
from ingest.types import AUTHOR_NAME_MAX, EMAIL_MAX, GUID_MAX, HEADLINE_MAX, LINK_MAX

__all__ = [
    "AUTHOR_NAME_MAX",
    "BODY_MAX_CHARS",
    "BODY_MAX_DEPTH",
    "BODY_MAX_REOPENED",
    "EMAIL_MAX",
    "GUID_MAX",
    "HEADLINE_MAX",
    "LINK_MAX",
    "extract_links",
    "link_key",
    "normalize_url",
    "outbound_link_keys",
    "parse_comments",
    "parse_feed",
]

# The version of the rules above (every module of this package): bump it with any change to what a
# document becomes (a field read differently, a limit, a sanitizer rule). It salts every stored body
# digest (``ingest.parse.digest``), so after a bump no stored digest matches and the next run parses
# every feed and comment feed again, even those whose bodies did not change.
PARSE_RULES_VERSION = 1
