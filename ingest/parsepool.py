"""Parsing under a time budget: a supervised pool of parse processes.

Owns the processes that parse feeds during a run and the budget of each parse
(``INGEST_PARSE_TIMEOUT``, passed in as ``timeout``). ``ParsePool(processes, timeout)`` is a context
manager whose ``parse(fn, *args, **kwargs)`` may be called from many threads at once: each call
takes an idle worker (starting one, up to ``processes``, only when a call finds none idle: a run
that sends nothing here starts no process), runs ``fn`` there and returns its result or raises its
exception. ``parse_here`` runs ``fn`` in the calling thread instead, for work too small to be worth
the trip (the caller decides what is: ``ingest.services.fetch_parse``). A worker still busy when the
budget is spent is killed (SIGKILL) and that call alone raises ``ParseError``; a worker that dies (a
crash, the OOM killer) fails its call the same way; either is replaced by a new process when one is
next needed, and the calls in other workers go on. ``concurrent.futures.ProcessPoolExecutor`` cannot
do this: losing one of its workers breaks the whole pool.

With ``processes=0`` (small runs, ``INGEST_PARSE_PROCESSES=0``, two cores or fewer by default,
Celery prefork children, which are daemonic and may not have children), or when no worker can start
at all, ``fn`` runs in the calling thread: C code there cannot be interrupted, so the call returns
however long it takes and a warning is logged when it overran the budget. What bounds those parses
is ``ingest.parse``'s HTML limits, plus, under Celery, the task's own soft and hard time limits
(``CELERY_TASK_SOFT_TIME_LIMIT`` / ``CELERY_TASK_TIME_LIMIT``).

Such ``parse`` calls run one at a time in the calling threads of one pool, each followed by
``heap_trim``: they are the large parses (a 2 MB feed takes some 55 MB while it is parsed), whose
memory would otherwise add up over the fetch threads, and the GIL serializes most of their work
anyway.

Memory. A worker is an interpreter with the parser imported (about 35 MB); a parse takes about 25
times the body's size while it runs, and the worker hands what it freed back to the system after
each task (``malloc_trim``, glibc), so an idle worker does not keep the peak of its largest feed.
A worker imports what unpickling ``fn`` needs (``ingest.parse``: feedparser, lxml, nh3), never
Django nor the HTTP client (spawn also re-imports the parent's ``__main__``, which for
``manage.py`` imports nothing at its top level). The calling process has ``heap_arenas_limit`` (an ingest run calls it
before it starts its fetch threads) and ``heap_trim`` (after each large parse done here, and by
the run's writer) for the same memory on its side.

Workers are started with ``spawn`` (forking a process that runs threads and holds database
connections is unsafe), are daemonic (multiprocessing terminates them at interpreter exit) and
leave on their own when the parent goes away. Closing the pool stops idle workers and kills busy
ones, so a stuck parse never holds up the end of a run.

Must not: import Django or touch the database (a worker is a fresh interpreter), or know what it
parses: ``fn`` and its arguments are pickled as they are.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from ingest.errors import ParseError

log = logging.getLogger("ingest.parsepool")

T = TypeVar("T")

# The first task of a new worker also pays for starting an interpreter and importing the parser,
# which the budget is not meant to cover; a worker that is not ready within this is given up on.
START_LIMIT = 60.0
_STOP_GRACE = 2.0  # seconds an idle worker gets to leave on its own before it is killed
_READY, _STARTED, _STOP = b"R", b"S", b""


class ParsePool:
    """Run parse functions in worker processes, each call within ``timeout`` seconds (see module)."""

    def __init__(self, processes: int, timeout: float) -> None:
        if processes < 0:
            raise ValueError(f"processes must be 0 or more, not {processes}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout}")
        self.processes = processes
        self.timeout = float(timeout)
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0  # workers being started, counted against ``processes``
        self._closed = False
        self._broken = processes == 0  # parse in the calling thread from now on
        self._here = threading.Lock()  # ``parse`` calls that run in the calling threads: one at a time

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- parsing ---

    def parse(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a worker; ``ParseError`` when it overruns the budget or its
        worker dies. Blocks while every worker is busy. Thread-safe."""
        payload = None
        for attempt in (1, 2):
            worker = self._acquire()
            if worker is None:
                with self._here:
                    try:
                        return self._parse_here(fn, args, kwargs)
                    finally:
                        heap_trim()
            if payload is None:
                payload = pickle.dumps((fn, args, kwargs), pickle.HIGHEST_PROTOCOL)
            try:
                reply = self._run(worker, payload, retry=attempt == 1)
            except _NotStarted:
                continue  # the worker died before it took this feed: another one tries it
            status, value = pickle.loads(reply)
            if status == "ok":
                return value
            raise value
        raise ParseError(_died_message(None))

    def _run(self, worker: _Worker, payload: bytes, *, retry: bool) -> bytes:
        """Send one task to ``worker`` and wait for its reply, under the budget."""
        healthy = False
        try:
            try:
                worker.conn.send_bytes(payload)
                first = worker.receive(START_LIMIT)
            except (OSError, EOFError, TimeoutError) as exc:
                if self._closed:
                    raise ParseError("The parse pool was shut down while this feed was being parsed.") from exc
                if retry:
                    raise _NotStarted from exc
                raise ParseError(_died_message(worker.exitcode())) from exc
            if first != _STARTED:  # the task could not even be unpickled: that error is the reply
                healthy = True
                return first
            try:
                reply = worker.receive(self.timeout)
            except TimeoutError:
                log.warning("parse killed: over its time budget", extra={"budget_s": self.timeout, "pid": worker.pid})
                raise ParseError(
                    f"Parsing took longer than the {self.timeout:g} s budget (INGEST_PARSE_TIMEOUT); the feed is too "
                    f"large or too convoluted to parse in time."
                ) from None
            except (OSError, EOFError) as exc:
                if self._closed:
                    raise ParseError("The parse pool was shut down while this feed was being parsed.") from exc
                code = worker.exitcode()
                log.warning("parse process died", extra={"exitcode": code, "pid": worker.pid})
                raise ParseError(_died_message(code)) from exc
            healthy = True
            return reply
        finally:
            self._release(worker, healthy=healthy)

    def parse_here(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the calling thread, at once (no worker, no budget: an overrun
        is logged). For parses too small to be worth a worker's trip."""
        return self._parse_here(fn, args, kwargs)

    def _parse_here(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.monotonic() - started
            if elapsed > self.timeout:
                # C code in a thread cannot be interrupted: the parse is kept, the overrun reported.
                log.warning("parse in the calling thread overran its time budget",
                            extra={"elapsed_s": round(elapsed, 1), "budget_s": self.timeout})

    # --- workers ---

    def _acquire(self) -> _Worker | None:
        """An idle worker, a newly started one, or None to parse in the calling thread."""
        with self._lock:
            while True:
                if self._closed:
                    raise RuntimeError("The parse pool is closed.")
                if self._broken:
                    return None
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive():
                        self._busy.add(worker)
                        return worker
                    worker.discard()  # died while idle (killed from outside)
                if len(self._busy) + self._starting < self.processes:
                    self._starting += 1
                    break
                self._lock.wait()
        worker = None
        try:
            worker = _Worker.start(self._context)
        except Exception as exc:  # OSError (no processes left), or one that exited at start-up
            self._give_up(exc)
        finally:
            with self._lock:
                self._starting -= 1
                if worker is not None:
                    if self._closed:
                        worker.discard()
                        raise RuntimeError("The parse pool is closed.")
                    self._busy.add(worker)
                self._lock.notify()
        return worker

    def _give_up(self, exc: Exception) -> None:
        with self._lock:
            if not self._broken:
                # e.g. a __main__ module without an `if __name__ == "__main__"` guard, which spawn
                # re-imports: parsing goes on, in the calling threads.
                log.warning("parse processes cannot start; parsing in the calling threads",
                            extra={"error": f"{type(exc).__name__}: {exc}"})
            self._broken = True
            self._lock.notify_all()

    def _release(self, worker: _Worker, *, healthy: bool) -> None:
        with self._lock:
            self._busy.discard(worker)
            keep = healthy and not self._closed
            if keep:
                self._idle.append(worker)
            self._lock.notify()
        if not keep:
            worker.discard()

    def close(self) -> None:
        """Stop every worker: idle ones are asked to leave, busy ones (a stuck parse) are killed."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            self._lock.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()  # its caller gets a ParseError and discards it

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        with self._lock:
            return [worker.pid for worker in (*self._idle, *self._busy)]


class _NotStarted(Exception):
    """The worker died before it took the task; the task may go to another worker."""


class _Worker:
    __slots__ = ("process", "conn", "pid")

    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.pid = process.pid

    @classmethod
    def start(cls, context) -> _Worker:
        parent_end, child_end = context.Pipe(duplex=True)
        process = context.Process(target=_serve, args=(child_end, os.getpid()), name="ingest-parse", daemon=True)
        process.start()
        child_end.close()
        worker = cls(process, parent_end)
        try:
            if worker.receive(START_LIMIT) != _READY:
                raise OSError("the parse process sent something else than its ready signal")
        except (OSError, EOFError, TimeoutError) as exc:
            code = worker.exitcode()
            worker.discard()
            raise OSError(f"the parse process exited at start-up (exit code {code})") from exc
        log.debug("parse process started", extra={"pid": worker.pid})
        return worker

    def receive(self, timeout: float) -> bytes:
        """The next message; TimeoutError after ``timeout`` seconds, EOFError when the worker is gone."""
        if not self.conn.poll(timeout):
            raise TimeoutError
        return self.conn.recv_bytes()

    def alive(self) -> bool:
        return self.process.is_alive()

    def exitcode(self) -> int | None:
        self.process.join(1.0)  # a process that just died needs a moment to be reaped
        return self.process.exitcode

    def stop(self) -> None:
        try:
            self.conn.send_bytes(_STOP)
        except OSError:
            pass
        self.process.join(_STOP_GRACE)
        self.discard()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()

    def discard(self) -> None:
        """Kill the process if it still runs, reap it and close the pipe."""
        self.kill()
        self.process.join(5.0)
        self.conn.close()


def _died_message(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            how = f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            how = f"killed by signal {-exitcode}"
    elif exitcode is not None:
        how = f"exit code {exitcode}"
    else:
        how = "gone"
    return (f"The parse process died while parsing this feed ({how}; e.g. out of memory, or killed from outside); "
            f"it was replaced.")


# --- the worker side ------------------------------------------------------------------------------


def _serve(conn, parent_pid: int) -> None:
    """A worker's loop: one task at a time from ``conn`` until told to stop or the parent is gone."""
    # Ctrl-C reaches the whole process group: the parent decides when parsing stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _libc
    _libc = _load_libc()
    threading.Thread(target=_leave_with_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    conn.send_bytes(_READY)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the pool closed its end
        if message == _STOP:
            return
        try:
            fn, args, kwargs = pickle.loads(message)
        except BaseException as exc:
            conn.send_bytes(_dumps(("error", exc)))
            continue
        conn.send_bytes(_STARTED)
        try:
            outcome = ("ok", fn(*args, **kwargs))
        except BaseException as exc:
            outcome = ("error", exc)
        del fn, args, kwargs, message
        conn.send_bytes(_dumps(outcome))
        del outcome
        _trim()


def _trim() -> None:
    """Give the heap memory freed by the last task back to the system (glibc only; else nothing)."""
    if _libc is not None:
        _libc.malloc_trim(0)


# --- the heap of a process that parses in threads -------------------------------------------------

_M_ARENA_MAX = -8  # glibc's mallopt parameter


def heap_trim() -> None:
    """Give the heap memory freed so far back to the system (glibc only; else nothing): for a run
    that parses in its threads, after a large parse, so that the next one starts from there."""
    global _libc
    if _libc is None:
        _libc = _load_libc()
    _trim()


def heap_arenas_limit(arenas: int = 2) -> None:
    """Let the threads started from now on share ``arenas`` malloc arenas (glibc only).

    glibc gives each thread that meets contention an arena of its own, up to eight per core, and
    what a parse in a fetch thread freed stays in that thread's arena: on the 200 real feeds
    parsed in four fetch threads this is some 45 MB of the peak. Two arenas keep it shared.
    """
    global _libc
    if _libc is None:
        _libc = _load_libc()
    if _libc is not None:
        _libc.mallopt(_M_ARENA_MAX, arenas)


def _dumps(outcome: tuple[str, Any]) -> bytes:
    status, value = outcome
    if status == "error":
        value.add_note("Traceback in the parse process:\n" + "".join(traceback.format_exception(value)).rstrip())
    try:
        return pickle.dumps((status, value), pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # an exception or result that cannot cross processes: say what it was
        what = f"{type(value).__name__}: {value}" if status == "error" else f"a result of type {type(value).__name__}"
        return pickle.dumps(("error", RuntimeError(f"The parse process could not send back {what} ({exc}).")))


def _load_libc():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (musl and others have no malloc_trim)
        return libc
    except (OSError, AttributeError, ImportError):
        return None


_libc = None  # loaded in a worker only (``_serve``)


def _leave_with_parent(parent_pid: int) -> None:
    """Exit once the parent is gone (killed without closing the pool), even in the middle of a parse:
    nh3 releases the GIL and feedparser is Python, so this thread gets to run."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(0)
