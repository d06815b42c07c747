"""Parsing of network lists (CIDR notation) from configuration, with a sentence naming the setting.

Pure and free of Django: ``pipeline.settings`` parses ``INGEST_ALLOWED_NETWORKS`` with it at
start-up, and ``ingest.fetch`` again when settings were changed at run time (``override_settings``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkListError(ValueError):
    """A value that is not a network; ``str()`` is the sentence to show."""


def parse_networks(values: Iterable[object], *, name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value))
        except ValueError as exc:
            raise NetworkListError(
                f"{name} contains {str(value)!r}, which is not a network in CIDR notation such as 10.0.0.0/8 "
                f"or fd00::/8 ({exc})."
            ) from None
    return tuple(networks)
