"""Fetch configuration: ``FetchSettings``, the one value every fetch function is handed.

Owns the names and units of the fetch settings and their one reading from Django settings
(``FetchSettings.from_settings()``, the only place in ``ingest.fetch`` that looks at
``django.conf.settings``). Must not open connections, resolve names or touch the ORM.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from pipeline.networks import NetworkListError, parse_networks

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchSettings:
    user_agent: str
    connect_timeout: float  # seconds to establish TCP (and TLS)
    read_timeout: float  # seconds of silence tolerated while waiting for bytes
    deadline: float  # seconds for the whole fetch of one feed: every hop, headers and body
    max_bytes: int  # cap on the decompressed body
    max_redirects: int
    allowed_networks: tuple[IPNetwork, ...] = ()  # exceptions to the private-address refusal

    @classmethod
    def from_settings(cls) -> FetchSettings:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        # pipeline/settings.py already parsed (and so validated) these at start-up; strings still
        # arrive from settings changed at run time (override_settings), and are checked here.
        try:
            networks = parse_networks(settings.INGEST_ALLOWED_NETWORKS, name="INGEST_ALLOWED_NETWORKS")
        except NetworkListError as exc:
            raise ImproperlyConfigured(str(exc)) from None
        return cls(
            user_agent=settings.INGEST_USER_AGENT,
            connect_timeout=float(settings.INGEST_CONNECT_TIMEOUT),
            read_timeout=float(settings.INGEST_READ_TIMEOUT),
            deadline=float(settings.INGEST_DEADLINE),
            max_bytes=int(settings.INGEST_MAX_BYTES),
            max_redirects=int(settings.INGEST_MAX_REDIRECTS),
            allowed_networks=tuple(networks),
        )
