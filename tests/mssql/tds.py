"""A loopback SQL Server that only says no: enough of TDS 7.4 for the real ODBC Driver 18 to log in,
run the probes its callers send on connect, and receive the error a test chooses.

``TdsResponder`` listens on 127.0.0.1 (a free port) in a thread, one thread per connection:

* PRELOGIN: answers encryption ``NOT_SUP``, so a client that asked ``Encrypt=no`` (or
  ``Optional``) talks plain TDS: no TLS, no certificate;
* LOGIN7: LOGINACK (TDS 7.4, "SQL Server 2022"), the ENVCHANGEs a real server sends (database,
  collation, language, packet size), an empty FEATUREEXTACK when the client asked for features,
  DONE. A login to a database named ``tds_error_<N>`` fails with error N instead, as Azure SQL
  fails a login with 40613 while a database moves;
* SQL batch and RPC (``sp_executesql``, ``sp_prepexec`` ...: how the driver sends a statement
  with parameters): a statement carrying ``tds:error=<N>`` gets the ERROR token of ``errors[N]``
  and a DONE with the error flag (``tds:error=2627+3621``: several messages, as a real server
  follows an error with "The statement has been terminated."); ``tds:drop`` closes the socket
  without an answer (the transport error a client sees when a server or a gateway goes away); the
  probes in ``PROBES`` (``SELECT @@TRANCOUNT``, ``SERVERPROPERTY``, ``SYSDATETIME()`` ...) get a
  one-row result; anything else (``SET ...``, pyodbc's ``sp_datatype_info_100``) a plain DONE;
* transaction-manager requests (how the driver begins and ends a transaction when autocommit is
  off): DONE, with the ENVCHANGE that hands out or retires a transaction descriptor.

Every statement received is appended to ``log`` as ``(kind, text)``, so a test can see what the
driver and its callers really send. Not a database: no tables, no rows, no locks, no TLS.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
from dataclasses import dataclass
from datetime import datetime

# Packet types (MS-TDS 2.2.3.1.1).
SQL_BATCH, RPC, REPLY, ATTENTION, TRANSACTION_MANAGER, LOGIN7, PRELOGIN = 0x01, 0x03, 0x04, 0x06, 0x0E, 0x10, 0x12
STATUS_EOM = 0x01
TDS74 = 0x74000004
SERVER_VERSION = (16, 0, 1000)  # SQL Server 2022 RTM
SERVER_NAME = "tds-responder"

# Tokens (MS-TDS 2.2.7).
COLMETADATA, ROW, ERROR, INFO, LOGINACK, FEATUREEXTACK, ENVCHANGE = 0x81, 0xD1, 0xAA, 0xAB, 0xAD, 0xAE, 0xE3
RETURNSTATUS, DONE, DONEPROC, DONEINPROC = 0x79, 0xFD, 0xFE, 0xFF
DONE_MORE, DONE_ERROR, DONE_COUNT, DONE_ATTN = 0x01, 0x02, 0x10, 0x20

# Data types used in result sets (MS-TDS 2.2.5.4).
INTN, NVARCHAR, DATETIMN = 0x26, 0xE7, 0x6F
COLLATION = bytes.fromhex("0904d00034")  # SQL_Latin1_General_CP1_CI_AS

# The well-known procedure ids of RPC requests (MS-TDS 2.2.6.6).
SP_EXECUTESQL, SP_PREPARE, SP_EXECUTE, SP_PREPEXEC, SP_UNPREPARE = 10, 11, 12, 13, 15

ERROR_MARKER = re.compile(r"tds:error=(\d+(?:\+\d+)*)")
DROP_MARKER = "tds:drop"
LOGIN_ERROR_DATABASE = re.compile(r"^tds_error_(\d+(?:\+\d+)*)$", re.I)


@dataclass(frozen=True)
class ServerError:
    """One SQL Server error as the ERROR token carries it."""

    number: int
    message: str
    state: int = 1
    severity: int = 16  # "class"; 20 and above also end the session on a real server


# The one-row answers to what the driver and mssql-django ask on connect: (pattern, [(name, value)]).
PROBES: list[tuple[re.Pattern, list[tuple[str, object]]]] = [
    (re.compile(r"SERVERPROPERTY\('ProductVersion'\).*SERVERPROPERTY\('EngineEdition'\)", re.I | re.S),
     [("", "16.0.1000.6"), ("", 3)]),
    (re.compile(r"^\s*SELECT\s+@@TRANCOUNT\s*$", re.I), [("", 0)]),
    (re.compile(r"^\s*SELECT\s+(SYSDATETIME|GETDATE)\(\)\s*$", re.I), [("", "now")]),
    (re.compile(r"^\s*SELECT\s+@@VERSION\s*$", re.I),
     [("", "Microsoft SQL Server 2022 (RTM) - 16.0.1000.6 (X64) (tds-responder)")]),
    (re.compile(r"^\s*SELECT\s+1\s*$", re.I), [("", 1)]),
]


class TdsResponder:
    """``with TdsResponder(errors) as server: ... server.port ...``"""

    def __init__(self, errors: dict[int, ServerError] | None = None, *, host: str = "127.0.0.1"):
        self.errors = dict(errors or {})
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.create_server((host, 0))
        self.host, self.port = self._sock.getsockname()[:2]
        self._closing = False
        self._clients: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name=f"tds-responder-{self.port}", daemon=True)

    def __enter__(self) -> TdsResponder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._closing = True
        try:
            _close(self._sock)  # shutdown() first: on Linux a bare close() does not wake accept()
        finally:
            with self._lock:
                clients, self._clients = self._clients, []
            for client in clients:
                _close(client)
        self._thread.join(5)

    def statements(self, kind: str | None = None) -> list[str]:
        with self._lock:
            return [text for k, text in self.log if kind is None or k == kind]

    def _serve(self) -> None:
        while not self._closing:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self._clients.append(client)
            threading.Thread(target=_Session(self, client).run, daemon=True).start()

    def _record(self, kind: str, text: str) -> None:
        with self._lock:
            self.log.append((kind, text))


class _Dropped(Exception):
    """The client went away, or the script asked for the connection to be dropped."""


class _Session:
    def __init__(self, server: TdsResponder, sock: socket.socket):
        self.server = server
        self.sock = sock
        self.packet_size = 4096
        self.packet_id = 0
        self.transactions = 0
        self.descriptor = b""

    def run(self) -> None:
        try:
            while True:
                kind, payload = self._receive()
                if kind == PRELOGIN:
                    self._send(_prelogin_reply())
                elif kind == LOGIN7:
                    if not self._login(payload):
                        return
                elif kind == SQL_BATCH:
                    self._answer("batch", _batch_text(payload), proc=False)
                elif kind == RPC:
                    self._answer("rpc", _rpc_text(payload), proc=True)
                elif kind == TRANSACTION_MANAGER:
                    self._transaction(payload)
                elif kind == ATTENTION:
                    self._send(_done(DONE_ATTN))
                else:
                    self.server._record("unknown", f"packet type 0x{kind:02x}")
                    return
        except (_Dropped, OSError):
            pass
        finally:
            _close(self.sock)

    # --- framing ----------------------------------------------------------------------------

    def _read_exact(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise _Dropped()
            data += chunk
        return bytes(data)

    def _receive(self) -> tuple[int, bytes]:
        payload = bytearray()
        while True:
            kind, status, length = struct.unpack(">BBH", self._read_exact(4))
            self._read_exact(4)  # SPID, packet id, window
            payload += self._read_exact(length - 8)
            if status & STATUS_EOM:
                return kind, bytes(payload)

    def _send(self, payload: bytes) -> None:
        room = self.packet_size - 8
        chunks = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
        out = bytearray()
        for i, chunk in enumerate(chunks):
            self.packet_id = (self.packet_id + 1) % 256
            status = STATUS_EOM if i == len(chunks) - 1 else 0
            out += struct.pack(">BBHHBB", REPLY, status, len(chunk) + 8, 51, self.packet_id, 0) + chunk
        self.sock.sendall(out)

    # --- login --------------------------------------------------------------------------------

    def _login(self, payload: bytes) -> bool:
        login = _parse_login7(payload)
        self.server._record("login", f"database={login['database']} user={login['user']} app={login['app']}")
        failing = LOGIN_ERROR_DATABASE.match(login["database"])
        if failing:
            self._send(self._error_tokens(failing.group(1)) + _done(DONE_ERROR))
            return False
        size = login["packet_size"] or 4096
        size = max(512, min(size, 32767))
        database = login["database"] or "master"
        tokens = (
            _envchange(1, _b_varchar(database), _b_varchar("master"))
            + _info(5701, f"Changed database context to '{database}'.", state=2, severity=0)
            + _envchange(7, bytes([len(COLLATION)]) + COLLATION, b"\x00")
            + _envchange(2, _b_varchar("us_english"), _b_varchar(""))
            + _info(5703, "Changed language setting to us_english.", state=1, severity=0)
            + _loginack()
            + (bytes([FEATUREEXTACK, 0xFF]) if login["extension"] else b"")
            + _envchange(4, _b_varchar(str(size)), _b_varchar("4096"))
            + _done()
        )
        self._send(tokens)
        self.packet_size = size
        return True

    # --- transactions -------------------------------------------------------------------------

    def _transaction(self, payload: bytes) -> None:
        # The driver runs autocommit-off connections with transaction-manager requests: BEGIN, then
        # COMMIT or ROLLBACK; the descriptor a BEGIN returns goes into every later request's headers.
        request = _tm_request(payload)
        self.server._record("tm", request)
        tokens = b""
        if request == "BEGIN_XACT":
            self.transactions += 1
            self.descriptor = struct.pack("<Q", self.transactions)
            tokens = _envchange(8, b"\x08" + self.descriptor, b"\x00")
        elif request in ("COMMIT_XACT", "ROLLBACK_XACT") and self.descriptor:
            tokens = _envchange(9 if request == "COMMIT_XACT" else 10, b"\x00", b"\x08" + self.descriptor)
            self.descriptor = b""
            if _tm_begins_again(payload):
                self.transactions += 1
                self.descriptor = struct.pack("<Q", self.transactions)
                tokens += _envchange(8, b"\x08" + self.descriptor, b"\x00")
        self._send(tokens + _done())

    # --- statements ---------------------------------------------------------------------------

    def _answer(self, kind: str, text: str, *, proc: bool) -> None:
        self.server._record(kind, text)
        done = _done_proc if proc else _done
        if DROP_MARKER in text:
            raise _Dropped()
        marker = ERROR_MARKER.search(text)
        if marker:
            self._send(self._error_tokens(marker.group(1)) + done(DONE_ERROR))
            return
        for pattern, columns in PROBES:
            if pattern.search(text):
                self._send(_result(columns) + done(DONE_COUNT, rows=1))
                return
        self._send(done())

    def _error_tokens(self, numbers: str) -> bytes:
        # "2627+3621": each message in turn, as SQL Server follows an error with "The statement has
        # been terminated."; severity 10 and below is an INFO token, above an ERROR token.
        tokens = b""
        for number in map(int, numbers.split("+")):
            error = self.server.errors.get(number) or ServerError(number, f"Error {number} (no message scripted).")
            kind = ERROR if error.severity > 10 else INFO
            tokens += _message(kind, error.number, error.message, state=error.state, severity=error.severity)
        return tokens


# --- encoding -------------------------------------------------------------------------------------


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _b_varchar(text: str) -> bytes:
    data = text.encode("utf-16-le")
    return bytes([len(text)]) + data


def _us_varchar(text: str) -> bytes:
    return struct.pack("<H", len(text)) + text.encode("utf-16-le")


def _token(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + struct.pack("<H", len(body)) + body


def _message(kind: int, number: int, text: str, *, state: int, severity: int) -> bytes:
    body = (struct.pack("<iBB", number, state, severity) + _us_varchar(text) + _b_varchar(SERVER_NAME)
            + _b_varchar("") + struct.pack("<i", 1))
    return _token(kind, body)


def _info(number: int, text: str, *, state: int, severity: int) -> bytes:
    return _message(INFO, number, text, state=state, severity=severity)


def _envchange(kind: int, new: bytes, old: bytes) -> bytes:
    return _token(ENVCHANGE, bytes([kind]) + new + old)


def _loginack() -> bytes:
    major, minor, build = SERVER_VERSION
    body = b"\x01" + struct.pack(">I", TDS74) + _b_varchar("Microsoft SQL Server") + struct.pack(">BBH", major, minor, build)
    return _token(LOGINACK, body)


def _done(status: int = 0, *, rows: int = 0, token: int = DONE) -> bytes:
    return bytes([token]) + struct.pack("<HHQ", status, 0xC1 if status & DONE_COUNT else 0, rows)


def _done_proc(status: int = 0, *, rows: int = 0) -> bytes:
    inner = _done(status | DONE_MORE, rows=rows, token=DONEINPROC) if status & DONE_COUNT else b""
    return inner + bytes([RETURNSTATUS]) + struct.pack("<i", 0 if not status & DONE_ERROR else -6) + _done(
        status & ~DONE_COUNT, token=DONEPROC)


def _result(columns: list[tuple[str, object]]) -> bytes:
    meta = bytearray([COLMETADATA]) + struct.pack("<H", len(columns))
    row = bytearray([ROW])
    for name, value in columns:
        meta += struct.pack("<IH", 0, 0x0001)  # user type, flags: nullable
        if isinstance(value, int):
            meta += bytes([INTN, 4])
            row += b"\x04" + struct.pack("<i", value)
        elif value == "now":
            meta += bytes([DATETIMN, 8])
            now = datetime.now()
            days = (now.date() - datetime(1900, 1, 1).date()).days
            since_midnight = now - now.replace(hour=0, minute=0, second=0, microsecond=0)
            row += b"\x08" + struct.pack("<iI", days, int(since_midnight.total_seconds() * 300))
        else:
            data = str(value).encode("utf-16-le")
            meta += bytes([NVARCHAR]) + struct.pack("<H", 8000) + COLLATION
            row += struct.pack("<H", len(data)) + data
        meta += _b_varchar(name)
    return bytes(meta + row)


def _prelogin_reply() -> bytes:
    major, minor, build = SERVER_VERSION
    options = [
        (0x00, struct.pack(">BBHH", major, minor, build, 0)),  # VERSION
        (0x01, b"\x02"),  # ENCRYPTION: ENCRYPT_NOT_SUP
        (0x02, b"\x00"),  # INSTOPT
        (0x03, b""),  # THREADID
        (0x04, b"\x00"),  # MARS off
    ]
    offset = 5 * len(options) + 1
    head, body = bytearray(), bytearray()
    for token, data in options:
        head += struct.pack(">BHH", token, offset + len(body), len(data))
        body += data
    return bytes(head + b"\xff" + body)


# --- decoding -------------------------------------------------------------------------------------


def _parse_login7(data: bytes) -> dict:
    def text(at: int) -> str:
        offset, chars = struct.unpack_from("<HH", data, at)
        return data[offset:offset + 2 * chars].decode("utf-16-le", "replace")

    return {
        "tds_version": struct.unpack_from("<I", data, 4)[0],
        "packet_size": struct.unpack_from("<I", data, 8)[0],
        "extension": bool(data[27] & 0x10),  # OptionFlags3 fExtension
        "user": text(40),
        "app": text(48),
        "database": text(68),
    }


def _skip_all_headers(data: bytes) -> int:
    (total,) = struct.unpack_from("<I", data, 0)
    return total


def _batch_text(data: bytes) -> str:
    return data[_skip_all_headers(data):].decode("utf-16-le", "replace")


def _tm_request(data: bytes) -> str:
    at = _skip_all_headers(data)
    (request,) = struct.unpack_from("<H", data, at)
    names = {5: "BEGIN_XACT", 6: "PROMOTE_XACT", 7: "COMMIT_XACT", 8: "ROLLBACK_XACT", 9: "SAVE_XACT"}
    return names.get(request, f"request {request}")


def _tm_begins_again(data: bytes) -> bool:
    """COMMIT/ROLLBACK with fBeginXact: the client asks for a new transaction at once."""
    at = _skip_all_headers(data) + 2
    name_chars = data[at] if at < len(data) else 0
    at += 1 + 2 * name_chars
    return at < len(data) and bool(data[at] & 0x01)


def _rpc_text(data: bytes) -> str:
    """The statement an RPC carries, with the procedure's name in front: ``sp_executesql: SELECT ...``."""
    at = _skip_all_headers(data)
    (length,) = struct.unpack_from("<H", data, at)
    at += 2
    if length == 0xFFFF:
        (proc_id,) = struct.unpack_from("<H", data, at)
        at += 2
        names = {SP_EXECUTESQL: "sp_executesql", SP_PREPARE: "sp_prepare", SP_EXECUTE: "sp_execute",
                 SP_PREPEXEC: "sp_prepexec", SP_UNPREPARE: "sp_unprepare"}
        name = names.get(proc_id, f"proc {proc_id}")
    else:
        name = data[at:at + 2 * length].decode("utf-16-le", "replace")
        at += 2 * length
    at += 2  # option flags
    texts = []
    try:
        while at < len(data) and len(texts) < 8:
            value, at = _rpc_param(data, at)
            if isinstance(value, str):
                texts.append(value)
    except (struct.error, ValueError, IndexError):
        pass  # a parameter type this responder does not read: the statement came first anyway
    return f"{name}: " + " | ".join(texts)


def _rpc_param(data: bytes, at: int) -> tuple[object, int]:
    name_chars = data[at]
    at += 1 + 2 * name_chars + 1  # name, status flags
    kind = data[at]
    at += 1
    if kind == INTN or kind in (0x68, 0x6D, 0x6E):  # INTN, BITN, FLTN, MONEYN
        at += 1  # max length
        size = data[at]
        at += 1
        return int.from_bytes(data[at:at + size], "little", signed=True) if kind == INTN and size else None, at + size
    if kind in (NVARCHAR, 0xA7, 0xA5, 0xAD, 0xEF):  # NVARCHAR, BIGVARCHR, BIGVARBIN, BIGBINARY, NCHAR
        (maximum,) = struct.unpack_from("<H", data, at)
        at += 2
        if kind in (NVARCHAR, 0xA7, 0xEF):
            at += 5  # collation
        if maximum == 0xFFFF:  # (MAX): partially length-prefixed chunks
            (total,) = struct.unpack_from("<Q", data, at)
            at += 8
            if total == 0xFFFFFFFFFFFFFFFF:
                return None, at
            raw = bytearray()
            while True:
                (size,) = struct.unpack_from("<I", data, at)
                at += 4
                if size == 0:
                    break
                raw += data[at:at + size]
                at += size
        else:
            (size,) = struct.unpack_from("<H", data, at)
            at += 2
            if size == 0xFFFF:
                return None, at
            raw = data[at:at + size]
            at += size
        if kind in (NVARCHAR, 0xEF):
            return bytes(raw).decode("utf-16-le", "replace"), at
        return bytes(raw), at
    raise ValueError(f"parameter type 0x{kind:02x}")
