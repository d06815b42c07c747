"""The hub's server, its subscriptions and its ledger (see ``samples.websubhub``)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


@dataclass(frozen=True)
class Subscription:
    callback: str
    topic: str
    secret: str
    lease_seconds: int
    expires_at: float  # time.time()


@dataclass(frozen=True)
class Event:
    kind: str  # "request" | "verify" | "deny"
    mode: str
    topic: str
    callback: str
    ok: bool  # request: well-formed; verify: the callback echoed the challenge
    detail: str = ""  # the lease asked for / granted, or why it failed


@dataclass(frozen=True)
class Delivery:
    callback: str
    status: int  # the callback's answer (0: no answer)


class WebSubHub:
    def __init__(self, host: str = "127.0.0.1", *, lease_seconds: int = 86400, timeout: float = 10.0) -> None:
        self.host = host
        self.lease_seconds = lease_seconds  # the most the hub grants
        self.timeout = timeout
        self.refuse_status: int | None = None  # answer subscription requests with this instead of 202
        self._lock = threading.Lock()
        self._subscriptions: dict[tuple[str, str], Subscription] = {}
        self._events: list[Event] = []
        self._requests: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> WebSubHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer((self.host, 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="websub-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebSubHub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the hub first"
        return f"http://{self.host}:{self._server.server_address[1]}/"

    # --- the ledger ------------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    @property
    def requests(self) -> list[dict[str, str]]:
        with self._lock:
            return list(self._requests)

    def subscribers(self, topic: str) -> list[Subscription]:
        now = time.time()
        with self._lock:
            return [s for s in self._subscriptions.values() if s.topic == topic and s.expires_at > now]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the hub waited {timeout}s in vain; its events: {self.events}")
            time.sleep(0.05)
        return value

    # --- publishing --------------------------------------------------------------------------------

    def publish(self, topic: str, body: bytes, *, content_type: str = "application/atom+xml",
                secret: str | None = None, method: str = "sha256", sign: bool = True) -> list[Delivery]:
        """POST ``body`` to every live subscriber of ``topic``, signed with its secret (or with
        ``secret``, a forgery; ``sign=False``: no signature). Returns each callback's status."""
        deliveries = []
        for subscription in self.subscribers(topic):
            headers = {"Content-Type": content_type,
                       "Link": f'<{self.url}>; rel="hub", <{topic}>; rel="self"'}
            if sign:
                key = (secret if secret is not None else subscription.secret).encode()
                headers["X-Hub-Signature"] = f"{method}={hmac.new(key, body, _DIGESTS[method]).hexdigest()}"
            status, _ = self._call(urllib.request.Request(subscription.callback, data=body, headers=headers, method="POST"))
            deliveries.append(Delivery(subscription.callback, status))
        return deliveries

    def deny(self, topic: str, reason: str = "not allowed") -> None:
        """Tell every subscriber of ``topic`` that its subscription is denied, and forget it."""
        for subscription in self.subscribers(topic):
            query = urllib.parse.urlencode({"hub.mode": "denied", "hub.topic": topic, "hub.reason": reason})
            status, _ = self._call(urllib.request.Request(_with_query(subscription.callback, query)))
            with self._lock:
                self._subscriptions.pop((subscription.callback, topic), None)
                self._events.append(Event("deny", "denied", topic, subscription.callback, 200 <= status < 300))

    # --- the protocol ------------------------------------------------------------------------------

    def _request(self, form: dict[str, str]) -> int:
        mode, topic, callback = form.get("hub.mode", ""), form.get("hub.topic", ""), form.get("hub.callback", "")
        ok = mode in ("subscribe", "unsubscribe") and topic.startswith("http") and callback.startswith("http")
        with self._lock:
            self._requests.append(dict(form))
            self._events.append(Event("request", mode, topic, callback, ok, form.get("hub.lease_seconds", "")))
        if not ok:
            return 400
        if self.refuse_status is not None:
            return self.refuse_status
        threading.Thread(target=self._verify, args=(form,), daemon=True).start()
        return 202

    def _verify(self, form: dict[str, str]) -> None:
        mode, topic, callback = form["hub.mode"], form["hub.topic"], form["hub.callback"]
        challenge = secrets.token_urlsafe(24)
        params = {"hub.mode": mode, "hub.topic": topic, "hub.challenge": challenge}
        asked = form.get("hub.lease_seconds", "")
        lease = min(int(asked), self.lease_seconds) if asked.isdigit() and int(asked) > 0 else self.lease_seconds
        if mode == "subscribe":
            params["hub.lease_seconds"] = str(lease)
        status, body = self._call(urllib.request.Request(_with_query(callback, urllib.parse.urlencode(params))))
        verified = 200 <= status < 300 and body == challenge.encode()
        with self._lock:
            if verified and mode == "subscribe":
                self._subscriptions[(callback, topic)] = Subscription(callback, topic, form.get("hub.secret", ""), lease,
                                                                      time.time() + lease)
            elif verified:
                self._subscriptions.pop((callback, topic), None)
            self._events.append(Event("verify", mode, topic, callback, verified, f"HTTP {status}, lease {lease}"))

    def _call(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""


def _with_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


class _Handler(BaseHTTPRequestHandler):
    hub: WebSubHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))
        status = self.hub._request(form)
        body = b"" if status == 202 else b"refused\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
