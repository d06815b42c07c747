"""The overall deadline of one fetch, made hard for every socket operation.

httpx's timeouts apply to each socket operation, so a server sending one byte every second never
trips them. ``fetch_feed`` sets a ``Budget`` (a ``time.monotonic()`` deadline) in a context
variable for the duration of one fetch; ``within_budget`` clamps each connect, TLS handshake, read
and write to what remains of it, and ``BudgetedStream`` wraps a network stream so that every
later operation is clamped too. Sync httpx does all I/O in the calling thread, so the context
variable is the budget of the fetch a socket operation belongs to.

Owns only the clamp. Must not decide what may be connected to (``ingest.fetch.guard``) nor
translate errors for users (``ingest.fetch.failures``); no ORM.
"""

from __future__ import annotations

import ssl
import time
import typing
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

import httpcore


@dataclass
class Budget:
    deadline: float  # time.monotonic() by which the fetch must be over
    exhausted: bool = False  # set when a timeout was caused by the deadline, not the setting


BUDGET: ContextVar[Budget | None] = ContextVar("ingest_fetch_budget", default=None)

_T = typing.TypeVar("_T")


def within_budget(
    operation: Callable[[float | None], _T], timeout: float | None, on_expiry: type[httpcore.TimeoutException]
) -> _T:
    # Sync httpx does all I/O in the calling thread, so the context variable set by fetch_feed is
    # the budget of the fetch this socket operation belongs to.
    budget = BUDGET.get()
    if budget is None:
        return operation(timeout)
    remaining = budget.deadline - time.monotonic()
    if remaining <= 0:
        budget.exhausted = True
        raise on_expiry("the overall deadline is exhausted")
    if timeout is not None and timeout < remaining:
        return operation(timeout)
    try:
        return operation(remaining)
    except httpcore.TimeoutException:
        budget.exhausted = True
        raise


class BudgetedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return within_budget(lambda t: self._inner.read(max_bytes, t), timeout, httpcore.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        within_budget(lambda t: self._inner.write(buffer, t), timeout, httpcore.WriteTimeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = within_budget(
            lambda t: self._inner.start_tls(ssl_context, server_hostname, t), timeout, httpcore.ConnectTimeout
        )
        return BudgetedStream(tls)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)

