"""Orchestration: the functions that commands, Celery tasks, the admin and timer functions call.

A module per concern, each a chain of the stages below it (fetch, parse, decide, upsert):

* ``runs``: the run ledger (``IngestRun``): start, finish, count a result, close stale runs; idle ticks.
* ``sources``: registering sources (one URL, an OPML document), resolving ``--source``, "fetch now".
* ``leases``: claiming and releasing sources, so that overlapping runs never share one.
* ``hosts``: the per-host budget: a turn per request (concurrency, spacing, Retry-After blocks).
* ``fetch_parse``: fetch and parse one source or comment feed; no database, safe in a thread.
* ``store``: the per-source and per-comment-feed transaction, and the one writer of fetch state.
* ``boundary``: the containment boundary's verdict on an exception (this item's failure, or the run's).
* ``ingest``: one ``ingest_feeds`` run in this process (threads for I/O, one writer).
* ``fanout``: the same run spread over Celery tasks, one per source.
* ``recount``: reconciling the denormalized counters.
* ``entries``: what a user may change on an entry (its rating).
* ``tokens``: the REST API's tokens: create, rotate, revoke.
* ``credentials``: a source's credentials: the secrets its references name, looked up at request
  time, the check a form makes, the redacted ``Credentials`` a fetch carries.
* ``subscriptions``, ``websub``: WebSub: what a fetch learned of a feed's hub, and the
  subscriptions' requests, verifications and pushed bodies.
* ``delete``: deleting a source and everything that hangs off it, in bounded chunks.
* ``prune``: deleting the old finished runs of the ledger, in bounded chunks.
* ``discovery``: feed autodiscovery at registration (is the URL a feed, or a page that names one);
  no database. ``sources`` registers what it finds, and writes the sources as OPML.

Services take keyword-only, typed arguments and are named ``<thing>_<verb>``. A failing source
becomes a result with a reason; only a problem with the run itself (the database, the arguments)
raises. Nothing here parses arguments or prints: that is the interfaces' job.
"""
