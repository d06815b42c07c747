"""A small WebSub hub on loopback (W3C WebSub), for the tests: standard library only.

    with WebSubHub(lease_seconds=3600) as hub:
        # the feed names hub.url as its rel="hub"; the subscriber POSTs hub.mode=subscribe there
        hub.wait_for(lambda: hub.subscribers(topic))           # verified asynchronously
        hub.publish(topic, FEED_BYTES)                         # POSTs to each callback, signed
        hub.publish(topic, FEED_BYTES, secret="forged")        # a signature that does not match
        hub.deny(topic)                                        # hub.mode=denied to each callback

The hub answers a subscription request 202 at once and then verifies intent from a thread, as hubs
do: a GET on the callback with ``hub.mode``, ``hub.topic``, ``hub.challenge`` and (subscribe)
``hub.lease_seconds`` (the lease asked for, capped at ``lease_seconds``); the subscription counts
only if the callback answered 2xx with the challenge as its body. ``events`` is the ledger (every
request and every verification, with its outcome); ``requests`` the raw subscription requests.
"""

from samples.websubhub.hub import Delivery, Event, Subscription, WebSubHub

__all__ = ["Delivery", "Event", "Subscription", "WebSubHub"]
