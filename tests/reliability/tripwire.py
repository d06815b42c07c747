"""A network tripwire: no packet may leave loopback, and every attempt is recorded.

``install(log_path)`` patches ``socket.socket.connect`` / ``connect_ex`` (every Python-level TCP
connection goes through them: httpx/httpcore, PyMySQL, redis-py, kombu, urllib) and
``socket.getaddrinfo``. A connection to an address outside 127.0.0.0/8 and ::1 is refused with
``ConnectionRefusedError`` *and* recorded, so a guard regression fails the test instead of
reaching the network; a host-name lookup other than ``localhost`` is recorded too (a DNS query
would leave the machine). libpq (psycopg) connects in C, to the loopback database only.

Installed in the processes the suite starts (``guarded_manage``, ``guarded_celery``), which write
their records as JSON lines to ``log_path``; ``read_log`` reads them back in the test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import threading

_LOCAL_NAMES = {"localhost", "localhost.", "ip6-localhost"}

_lock = threading.Lock()
_log_path: str | None = None
_installed = False
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        # inet_aton forms ("2852039166", "0x7f.1") resolve without DNS as well.
        try:
            socket.inet_aton(host)
            return True
        except OSError:
            return False


def _record(kind: str, target: str) -> None:
    entry = {"kind": kind, "target": target, "pid": os.getpid()}
    with _lock:
        if _log_path:
            with open(_log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")


def _check_connect(sock: socket.socket, address) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets, netlink ...
    host = str(address[0])
    if not _is_loopback(host):
        _record("connect", f"{host}:{address[1]}")
        raise ConnectionRefusedError(f"tripwire: refused a connection to {host} (not loopback)")


def _connect(self, address):
    _check_connect(self, address)
    return _real_connect(self, address)


def _connect_ex(self, address):
    _check_connect(self, address)
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name and not _is_literal(str(name)) and str(name).lower() not in _LOCAL_NAMES:
        _record("resolve", str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"tripwire: refused to resolve {name!r} (DNS leaves the machine)")
    return _real_getaddrinfo(host, *args, **kwargs)


def install(log_path: str | None = None) -> None:
    global _installed, _log_path
    _log_path = log_path
    if _installed:
        return
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.getaddrinfo = _getaddrinfo
    _installed = True


def read_log(log_path) -> list[dict]:
    try:
        with open(log_path, encoding="utf-8") as log:
            return [json.loads(line) for line in log if line.strip()]
    except FileNotFoundError:
        return []
