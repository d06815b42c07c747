"""The one HTTP feed server: a stand-in publisher on loopback for the demo, the tests and the benchmarks.

    with FeedServer() as server:
        server.add("/feed.xml", FEED_BYTES, etag='"v1"')
        server.add_sequence("/flaky", [dict(status=500), dict(body=FEED_BYTES)])
        server.redirect("/old", "/feed.xml", status=301)
        server.require("/feed.xml", bearer="t0ken")   # 401 without Authorization: Bearer t0ken
        server.add_folder("samples/feeds")            # every file, with ETag and Last-Modified
        server.add_feeds({"/0001.xml": body})         # generated feeds, with a strong ETag each
        fetch(server.url("/feed.xml"))
        assert server.requests[-1].headers["if-none-match"] == '"v1"'

Routes reply with the next scripted response (the last one repeats). A reply can be delayed,
dripped byte by byte, gzip-compressed, chunked, read from a file, endless, written raw (byte for
byte, then the connection is closed), dropped (closed with nothing sent) or reset (TCP RST); see
``Reply``. Server-wide faults: ``latency=(low, high)`` delays every request by a draw from a seeded
generator and ``error_rate`` answers that share of requests 500, both attributes a test may change
while the server runs. ``conditional = False`` makes it a publisher that ignores conditional
requests.

One conditional-GET rule for every route (``replies.not_modified``, RFC 9110 section 13.2.2):
If-None-Match with the weak comparison, taking precedence over If-Modified-Since; a 304 carries
the validators (ETag, Last-Modified) the 200 would have carried.

The ledger: ``requests`` (every request, as sent), ``hits(path)``, ``hit_counts()``, ``served_ok``,
``failed``, ``sent(path)`` (body bytes that got out), ``max_in_flight()`` and
``overlapping_paths()``, cleared by ``reset_ledger()``. ``stop()`` returns promptly even while
responses are still streaming, because it shuts down every open connection.

Why it lives in ``samples/``: the demo (``python -m samples.serve``, behind ``./scripts/run``) is a
shipped command and must not import test code, while the tests and ``bench/`` may import anything.
``samples/`` is already the home of what stands in for the outside world (the sample feeds), is
left out of the Azure Functions package (.funcignore) like tests/ and bench/, and adds no new
top-level package to the deployment. Standard library only; it imports nothing from the product.
"""

from samples.feedserver.replies import RecordedRequest, Reply, content_type, etag_for, not_modified
from samples.feedserver.server import FeedServer

__all__ = ["FeedServer", "RecordedRequest", "Reply", "content_type", "etag_for", "not_modified"]
