"""The per-host budget: at most INGEST_HOST_CONCURRENCY requests in flight to one host and at least
INGEST_HOST_SPACING seconds between two request starts to it, across the threads of a run, concurrent
runs and Celery workers on any machine; and a host blocked by a Retry-After
(INGEST_RETRY_AFTER_SCOPE=host) for all of them.

The shared state is in the database, so one mechanism serves every path: a ``HostBudget`` row per
host (the last start, the block) and its ``HostSlot`` rows (one per request in flight). A turn is
taken in one retried transaction: a conditional UPDATE of the host's row (spacing elapsed, not
blocked), which every backend evaluates atomically and which queues the takers of one host on its
row lock, then a conditional UPDATE of a free slot (or the INSERT of a slot not made yet); if no slot
is free the transaction is rolled back, last start included. Plain ORM statements, no vendor SQL,
every UPDATE by primary key.

A slot's holder names its machine and process: one killed mid-fetch on this machine is seen to be
gone by the next taker, which takes its slot at once; elsewhere the slot expires INGEST_DEADLINE +
``SLOT_MARGIN`` seconds after its turn. Times come from the clock of the process (as leases do):
the machines of one deployment are assumed to keep their clocks in sync (NTP).

A source whose host stays busy past a bounded wait (INGEST_DEADLINE: no longer than its fetch could
have taken) is deferred (``types.Deferred``): not fetched, not failed, not backed off, left due.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from ingest.decide import Policy, host_block_seconds
from ingest.errors import SourceError, storable
from ingest.identity import host_key, host_of
from ingest.models import HostBudget, HostSlot
from ingest.retry import run_atomic
from ingest.services.runs import process_gone, run_owner
from ingest.types import HOSTNAME_MAX, REASON_MAX, Deferred

log = logging.getLogger("ingest.services")

SLOT_MARGIN = 10.0  # seconds a slot outlives the fetch deadline before another process may take it
POLL = 0.1  # seconds between tries while every slot of a host is held (spacing waits are computed)


@dataclass(frozen=True)
class HostRules:
    """The budget's settings, read once per run or task."""

    concurrency: int
    spacing: float
    slot_seconds: float  # how long a turn holds its slot at most (a killed holder's slot expires then)
    max_wait: float  # how long a source waits for its host before it is deferred
    scope: str  # INGEST_RETRY_AFTER_SCOPE: "source" or "host"
    policy: Policy

    @classmethod
    def from_settings(cls) -> HostRules:
        return cls(settings.INGEST_HOST_CONCURRENCY, settings.INGEST_HOST_SPACING, settings.INGEST_DEADLINE + SLOT_MARGIN,
                   settings.INGEST_DEADLINE, settings.INGEST_RETRY_AFTER_SCOPE, Policy.from_settings(settings))


@dataclass(frozen=True)
class Turn:
    """A granted request to ``host``: slot ``slot_id`` of budget ``budget_id``, held by ``holder``
    until released. A URL without a host (which the fetch refuses anyway) gets a turn of no budget."""

    host: str
    budget_id: int | None = None
    slot_id: int = 0
    holder: str = ""


@dataclass(frozen=True)
class Wait:
    """Not now: try again in ``seconds`` (``reason`` says what is spent)."""

    seconds: float
    reason: str


class _Busy(Exception):
    """Rolls back a turn half taken (the host's row updated, no slot free)."""

    def __init__(self, wait: Wait):
        self.wait = wait


def host_try(url: str, *, rules: HostRules, now: datetime | None = None) -> Turn | Wait:
    """Take a turn for a request to ``url``'s host now, or say how long to wait. Never blocks."""
    host = host_of(url)
    if not host:
        return Turn(host="")
    budget = _budget(host)
    wait = _gate_wait(budget, rules, now or timezone.now())
    if wait is not None:  # read without a lock: most refusals cost no write
        return wait
    holder = run_owner()  # machine, pid and a random part: a dead holder on this machine is known at once
    try:
        # The start is stamped inside the transaction (each attempt anew), as close to the request as can be.
        return run_atomic(lambda: _take(budget.pk, host, holder, rules, now or timezone.now()), label=f"host {host}")
    except _Busy as busy:
        return busy.wait


def host_wait(url: str, *, rules: HostRules) -> Turn | Deferred:
    """Wait for a turn (a Celery task: one source, nothing else to do meanwhile), at most
    ``rules.max_wait`` seconds; past that the source is deferred."""
    started = time.monotonic()
    while True:
        verdict = host_try(url, rules=rules)
        if isinstance(verdict, Turn):
            return verdict
        waited = time.monotonic() - started
        if waited + verdict.seconds > rules.max_wait:
            return host_deferral(host_of(url), verdict, waited)
        time.sleep(verdict.seconds + random.uniform(0, POLL))  # jitter: waiters of one host do not wake in step


def host_release(turn: Turn, *, rules: HostRules, error: SourceError | None = None, now: datetime | None = None) -> None:
    """Free the turn's slot once its response is read; after a 429/503 with Retry-After in the
    ``host`` scope, block the host for every run and worker until then."""
    if turn.budget_id is None:
        return
    now = now or timezone.now()
    block = host_block_seconds(error, scope=rules.scope, policy=rules.policy)

    def release() -> None:
        HostSlot.objects.filter(pk=turn.slot_id, holder=turn.holder).update(holder="", expires_at=None)
        if block:
            until = now + timedelta(seconds=block)
            reason = storable(f"{error} Every source of {turn.host} waits until {until:%Y-%m-%d %H:%M:%S} UTC "
                              f"(INGEST_RETRY_AFTER_SCOPE=host).", REASON_MAX)
            # Never shortens a longer block another worker set.
            HostBudget.objects.filter(Q(blocked_until__isnull=True) | Q(blocked_until__lt=until), pk=turn.budget_id).update(
                blocked_until=until, blocked_reason=reason)
            log.warning("host blocked by Retry-After", extra={"host": turn.host, "seconds": block})

    run_atomic(release, label=f"host {turn.host} release")


def hosts_unblock(*, ids: list[int]) -> int:
    """Lift the Retry-After block of these hosts (the admin's action); returns how many were blocked."""
    return run_atomic(lambda: HostBudget.objects.filter(pk__in=ids, blocked_until__isnull=False).update(
        blocked_until=None, blocked_reason=""), label="hosts_unblock")


def host_deferral(host: str, wait: Wait, waited: float) -> Deferred:
    """The sentence of a source deferred after waiting ``waited`` seconds for ``host``."""
    return Deferred(f"Host {host}: {wait.reason}; deferred after a wait of {waited:.1f} s "
                    f"(not a failure: a later run fetches it).")


def _budget(host: str) -> HostBudget:
    key = host_key(host)
    budget = HostBudget.objects.filter(host_key=key).first()
    if budget is None:
        # A concurrent first taker's row collides on the unique key: run_atomic's retry then finds it.
        budget = run_atomic(lambda: HostBudget.objects.filter(host_key=key).first()
                            or HostBudget.objects.create(host_key=key, host=host[:HOSTNAME_MAX]), label=f"host {host}")
    return budget


def _gate_wait(budget: HostBudget, rules: HostRules, now: datetime) -> Wait | None:
    """Why the host's row refuses a start at ``now`` (blocked, or too soon after the last), or None."""
    if budget.blocked_until is not None and budget.blocked_until > now:
        return Wait((budget.blocked_until - now).total_seconds(),
                    f"blocked by a Retry-After until {budget.blocked_until:%Y-%m-%d %H:%M:%S} UTC")
    if budget.last_start_at is not None and rules.spacing:
        early = rules.spacing - (now - budget.last_start_at).total_seconds()
        if early > 0:
            return Wait(early, f"{rules.spacing:g} s between request starts (INGEST_HOST_SPACING)")
    return None


def _take(budget_id: int, host: str, holder: str, rules: HostRules, now: datetime) -> Turn:
    # Without spacing only the block is checked: a concurrent taker whose clock reads a little
    # behind must not be refused for a start "in the future".
    spaced = (Q(last_start_at__isnull=True) | Q(last_start_at__lte=now - timedelta(seconds=rules.spacing))
              if rules.spacing else Q())
    unblocked = Q(blocked_until__isnull=True) | Q(blocked_until__lte=now)
    if not HostBudget.objects.filter(spaced, unblocked, pk=budget_id).update(last_start_at=now):
        # Another taker was first since the read above: say what it left.
        budget = HostBudget.objects.get(pk=budget_id)
        raise _Busy(_gate_wait(budget, rules, now) or Wait(POLL, "another request to it started just now"))
    expires = now + timedelta(seconds=rules.slot_seconds)
    slots = {number: (pk, slot_holder, slot_expires) for pk, number, slot_holder, slot_expires in HostSlot.objects.filter(
        budget_id=budget_id, number__lt=rules.concurrency).values_list("pk", "number", "holder", "expires_at")}
    for number in range(rules.concurrency):
        if number not in slots:
            slot = HostSlot.objects.create(budget_id=budget_id, number=number, holder=holder, expires_at=expires)
            return Turn(host, budget_id, slot.pk, holder)
        pk, slot_holder, slot_expires = slots[number]
        free = not slot_holder or slot_expires is None or slot_expires < now or _holder_gone(slot_holder)
        # By primary key, and only if it is still as read: a concurrent taker's claim stands.
        if free and HostSlot.objects.filter(pk=pk, holder=slot_holder).update(holder=holder, expires_at=expires):
            return Turn(host, budget_id, pk, holder)
    raise _Busy(Wait(POLL, f"all {rules.concurrency} request slot(s) in use (INGEST_HOST_CONCURRENCY)"))



def _holder_gone(holder: str) -> bool:
    """Whether a slot's holder (``runs.run_owner``: machine, pid, random part) is a process of this
    machine that has ended: killed mid-fetch, its slot is free now rather than at its expiry."""
    machine, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return pid.isdigit() and process_gone(machine, int(pid))
