"""The live Celery side of a status report: which workers answer, what they run, the queue length.

No ORM. Every call has a short timeout and turns a failure into a value carrying the reason, never
a traceback: a status report has to work exactly when things are broken. Broker URLs are shown
with the password masked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kombu.utils.url import maybe_sanitize_url

from ingest.errors import first_line

# kombu's Redis transport: a queue with priorities is one list per step, "<queue>\x06\x16<step>".
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (0, 3, 6, 9)


def broker_display(app) -> str:
    return str(maybe_sanitize_url(app.conf.broker_url or ""))


@dataclass(frozen=True)
class ActiveTask:
    id: str
    name: str
    kwargs: dict
    started_at: float | None  # epoch seconds
    worker_pid: int | None

    def running_s(self, now: float | None = None) -> float | None:
        if not self.started_at:
            return None
        return max(0.0, (now or time.time()) - self.started_at)

    def as_dict(self) -> dict:
        running = self.running_s()
        return {"id": self.id, "name": self.name, "kwargs": self.kwargs, "worker_pid": self.worker_pid,
                "running_s": None if running is None else round(running, 1)}


@dataclass(frozen=True)
class WorkersReport:
    broker: str
    timeout: float
    workers: dict[str, tuple[ActiveTask, ...]] = field(default_factory=dict)
    error: str = ""  # the broker could not be reached

    @property
    def answered(self) -> int:
        return len(self.workers)

    def as_dict(self) -> dict:
        return {
            "broker": self.broker,
            "timeout_s": self.timeout,
            "answered": self.answered,
            "error": self.error,
            "workers": {name: [task.as_dict() for task in tasks] for name, tasks in sorted(self.workers.items())},
        }


def _task(info: dict) -> ActiveTask:
    kwargs = info.get("kwargs")
    return ActiveTask(
        id=str(info.get("id", "")),
        name=str(info.get("name", "")),
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        started_at=info.get("time_start") if isinstance(info.get("time_start"), (int, float)) else None,
        worker_pid=info.get("worker_pid"),
    )


def workers_inspect(app, *, timeout: float = 1.0) -> WorkersReport:
    """Broadcast ``inspect active`` and collect the replies that arrive within ``timeout``."""
    broker = broker_display(app)
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
            replies = app.control.inspect(timeout=timeout, connection=conn).active() or {}
    except Exception as exc:  # noqa: BLE001 - kombu, redis and socket errors all mean "unreachable" here
        return WorkersReport(broker, timeout, error=f"broker unreachable: {first_line(exc, 300)}")
    workers = {name: tuple(_task(info) for info in tasks or ()) for name, tasks in replies.items()}
    return WorkersReport(broker, timeout, workers)


@dataclass(frozen=True)
class QueueReport:
    broker: str
    waiting: dict[str, int] = field(default_factory=dict)  # messages queued, per queue
    # Delivered but not acknowledged: running, reserved, or held by a dead worker until the
    # visibility timeout hands them to another one.
    unacked: int | None = None
    error: str = ""

    @property
    def total_waiting(self) -> int:
        return sum(self.waiting.values())

    def as_dict(self) -> dict:
        return {"broker": self.broker, "waiting": self.waiting, "total_waiting": self.total_waiting,
                "unacked": self.unacked, "error": self.error}


def queue_lengths(app, *, timeout: float = 1.0) -> QueueReport:
    """Read the queue lengths straight from Redis (the broker this pipeline uses)."""
    url = app.conf.broker_url or ""
    broker = broker_display(app)
    if urlsplit(url).scheme not in ("redis", "rediss"):
        return QueueReport(broker, error="queue lengths are read from a Redis broker only")
    import redis

    options = app.conf.broker_transport_options or {}
    prefix = options.get("global_keyprefix", "")
    steps = options.get("priority_steps", _PRIORITY_STEPS)
    queues = [app.conf.task_default_queue] + [q.name for q in (app.conf.task_queues or ()) if q.name != app.conf.task_default_queue]
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            pipe = client.pipeline(transaction=False)
            for queue in queues:
                for step in steps:
                    pipe.llen(prefix + (f"{queue}{_PRIORITY_SEP}{step}" if step else queue))
            pipe.hlen(prefix + options.get("unacked_key", "unacked"))
            lengths = pipe.execute()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - a status report reports, it never raises
        return QueueReport(broker, error=f"broker unreachable: {first_line(exc, 300)}")
    waiting = {queue: sum(lengths[i * len(steps):(i + 1) * len(steps)]) for i, queue in enumerate(queues)}
    return QueueReport(broker, waiting, lengths[-1])
