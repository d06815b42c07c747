"""Fault injection for the containment tests: make one stage raise for one source, in a real process.

The containment boundary exists for the exceptions nobody foresaw, so no well-formed input can be
relied on to raise one. ``install()`` (called by ``guarded_manage``) wraps one stage of the real
pipeline so that it raises for the sources whose feed URL contains a marker, leaving every other
source and every other stage untouched:

    RELIABILITY_FAULT_PARSE=/boom    parse_feed raises RuntimeError for URLs containing "/boom"
    RELIABILITY_FAULT_STORE=/crash   feed_upsert raises KeyError inside the source's transaction
"""

from __future__ import annotations

import functools
import os


class InjectedFault(RuntimeError):
    """Raised on purpose; its name shows in the recorded reason."""


def install() -> None:
    parse_marker = os.environ.get("RELIABILITY_FAULT_PARSE")
    store_marker = os.environ.get("RELIABILITY_FAULT_STORE")
    if not (parse_marker or store_marker):
        return
    from ingest.services import fetch_parse, store

    if parse_marker:
        real_parse = fetch_parse.parse_feed

        @functools.wraps(real_parse)
        def parse_feed(content, *, headers=None, url="", **kwargs):
            if parse_marker in url:
                raise InjectedFault(f"injected parse fault for {url}")
            return real_parse(content, headers=headers, url=url, **kwargs)

        fetch_parse.parse_feed = parse_feed
    if store_marker:
        from ingest.models import TechnicalArticle

        real_upsert = store.feed_upsert

        @functools.wraps(real_upsert)
        def feed_upsert(*, article_id, feed, fetched_at, **options):
            counts = real_upsert(article_id=article_id, feed=feed, fetched_at=fetched_at, **options)  # rows written...
            if store_marker in TechnicalArticle.objects.get(pk=article_id).feed_url:
                raise KeyError(f"injected store fault after writing {counts.created} entries")  # ...then rolled back
            return counts

        store.feed_upsert = feed_upsert
