"""A webhook receiver on 127.0.0.1 for the tests: it verifies every Standard Webhooks signature on
its own (the standard library, not the product's signer), fails on purpose when told to (a rate, or
the next N requests), and records every request: its ``webhook-id``, whether it acknowledged it,
the event ids it carried, and when."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    message_id: str
    acked: bool
    valid: bool
    events: list[dict]
    at: float = field(default_factory=time.monotonic)

    @property
    def event_ids(self) -> list[int]:
        return [event["id"] for event in self.events]


def verify(secret: str, headers, body: bytes, *, tolerance: int = 300) -> bool:
    """The receiver's side of the spec: HMAC-SHA256 over ``id.timestamp.body``, any ``v1,`` signature."""
    message_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest())
    offered = [part.split(",", 1)[1] for part in headers.get("webhook-signature", "").split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, candidate.encode()) for candidate in offered)


class Receiver:
    def __init__(self, secret: str = "", *, fail_rate: float = 0.0, seed: int = 11, status: int = 200, delay: float = 0.0):
        self.secret = secret
        self.fail_rate = fail_rate
        self.fail_next = 0  # the next N requests fail (HTTP 503)
        self.status = status
        self.delay = delay
        self.received: list[Received] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._answer(self, body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        if self.delay:
            time.sleep(self.delay)
        valid = verify(self.secret, handler.headers, body)
        with self._lock:
            fail = not valid or self.status >= 300
            if self.fail_next > 0:
                self.fail_next, fail = self.fail_next - 1, True
            elif self.fail_rate and self._random.random() < self.fail_rate:
                fail = True
            try:
                events = json.loads(body)["data"]["events"]
            except (ValueError, KeyError, TypeError):
                events = []
            record = Received(handler.headers.get("webhook-id", ""), not fail, valid, events)
            status = (self.status if self.status >= 300 else 503) if fail else 200
            payload = b"no thanks" if fail else b"ok"
            # Recorded before the answer goes out, so that a sender that saw it finds it recorded; an
            # ack the sender then missed (killed meanwhile) still counts as an ack.
            self.received.append(record)
            handler.send_response(status)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def acked(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.acked]

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
