"""The ``nats`` serial codec: the device speaks the NATS client protocol itself.

Gateway side. The serial port is treated exactly like a client connection: the bytes a device sends
go unchanged into the broker's own client-protocol parser (edge/protocol), and the broker writes
INFO/MSG/PING/+OK/-ERR back down the line as it would to a TCP client (nats-protocol.md 1.1-1.7).
So ``NatsPassthrough`` only passes bytes through, with counters, to give every codec one shape.
A device should send ``CONNECT {"verbose":false,"pedantic":false,...}`` first: verbose defaults to
true (nats-protocol.md fact 2), and a +OK per PUB wastes a slow link. It must answer PING with PONG
or the broker closes it as stale (1.6).

Device side. ``encode_*`` build client ops byte-exactly as the C and MicroPython libraries do, and
``ServerOpParser`` is a small bounded sans-IO parser of what a server sends to a client (INFO, MSG,
HMSG, PING, PONG, +OK, -ERR); the simulator and the tests use them.
"""

from __future__ import annotations

import json
from typing import Final, Literal, NamedTuple

__all__ = [
    "Err",
    "Info",
    "Msg",
    "NatsPassthrough",
    "Ok",
    "Ping",
    "Pong",
    "ServerOp",
    "ServerOpParser",
    "encode_connect",
    "encode_pub",
    "encode_sub",
    "encode_unsub",
]

# nats-server defaults (server/const.go): MAX_CONTROL_LINE_SIZE 4096, MAX_PAYLOAD_SIZE 1 MiB.
MAX_CONTROL_LINE: Final = 4096
MAX_PAYLOAD: Final = 1024 * 1024
PING: Final = b"PING\r\n"
PONG: Final = b"PONG\r\n"


def _check_token(name: str, value: str) -> bytes:
    # Subjects, reply subjects and queue names are single protocol arguments: no whitespace (1.1).
    if not value or any(c in value for c in " \t\r\n"):
        raise ValueError(f"{name} must be non-empty and contain no whitespace: {value!r}")
    return value.encode("utf-8")


def encode_pub(subject: str, payload: bytes, reply: str | None = None) -> bytes:
    """``PUB <subject> [reply] <#bytes>\\r\\n<payload>\\r\\n`` (nats-protocol.md 1.4).

    Raises:
        ValueError: subject or reply is empty or contains whitespace.
    """
    parts = [b"PUB", _check_token("subject", subject)]
    if reply is not None:
        parts.append(_check_token("reply", reply))
    parts.append(str(len(payload)).encode())
    return b" ".join(parts) + b"\r\n" + bytes(payload) + b"\r\n"


def encode_sub(subject: str, sid: int, queue: str | None = None) -> bytes:
    """``SUB <subject> [queue] <sid>\\r\\n``."""
    parts = [b"SUB", _check_token("subject", subject)]
    if queue is not None:
        parts.append(_check_token("queue", queue))
    parts.append(str(int(sid)).encode())
    return b" ".join(parts) + b"\r\n"


def encode_unsub(sid: int, max_msgs: int | None = None) -> bytes:
    """``UNSUB <sid> [max_msgs]\\r\\n``."""
    tail = b"" if max_msgs is None else b" " + str(int(max_msgs)).encode()
    return b"UNSUB " + str(int(sid)).encode() + tail + b"\r\n"


def encode_connect(name: str | None = None, lang: str = "c", version: str = "0.1.0") -> bytes:
    """The CONNECT a serial device sends: verbose and pedantic off, protocol 1, no headers.

    Key order and spacing match the C and MicroPython libraries byte for byte.
    """
    opts: dict[str, object] = {"verbose": False, "pedantic": False}
    if name is not None:
        opts["name"] = name
    opts.update({"lang": lang, "version": version, "protocol": 1})
    return b"CONNECT " + json.dumps(opts, separators=(",", ":")).encode() + b"\r\n"


class NatsPassthrough:
    """Gateway-side ``nats`` codec: returns the received bytes unchanged for the client parser.

    The client parser enforces the protocol limits itself; this only counts. ``bytes_dropped`` and
    ``overflows`` exist for a uniform metrics shape and stay 0.
    """

    output: Final[Literal["protocol"]] = "protocol"

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_dropped = 0
        self.overflows = 0

    def counters(self) -> dict[str, int]:
        return {"bytes_in": self.bytes_in, "bytes_dropped": 0, "overflows": 0}

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        chunk = bytes(data)
        self.bytes_in += len(chunk)
        return [chunk] if chunk else []


class Msg(NamedTuple):
    subject: str
    sid: int
    reply: str | None
    payload: bytes
    headers: bytes | None = None  # raw header block of an HMSG


class Ping(NamedTuple):
    pass


class Pong(NamedTuple):
    pass


class Ok(NamedTuple):
    pass


class Err(NamedTuple):
    text: str


class Info(NamedTuple):
    raw_json: str


ServerOp = Msg | Ping | Pong | Ok | Err | Info


class ServerOpParser:
    """Parse server->client ops (device side). Bounded; never raises on garbage.

    Counters: ``ops_ok``, ``lines_bad`` (unknown op, bad arguments, payload not followed by CRLF),
    ``overflows`` (control line over ``max_control_line`` or payload over ``max_payload``; the op is
    skipped whole), ``bytes_dropped``. The buffer holds at most one control line plus one payload:
    ``max_control_line + max_payload + 2`` bytes.
    """

    def __init__(self, max_control_line: int = MAX_CONTROL_LINE, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_control_line: Final = max_control_line
        self.max_payload: Final = max_payload
        self._buf = bytearray()
        self._skip_line = False
        self._skip_bytes = 0
        self._msg: tuple[str, int, str | None, int, int] | None = None  # subject, sid, reply, hdr, total
        self.ops_ok = 0
        self.lines_bad = 0
        self.overflows = 0
        self.bytes_dropped = 0

    def feed(self, data: bytes | bytearray | memoryview) -> list[ServerOp]:
        self._buf += data
        buf = self._buf
        out: list[ServerOp] = []
        pos = 0
        while pos < len(buf):
            if self._skip_bytes:
                n = min(self._skip_bytes, len(buf) - pos)
                self._skip_bytes -= n
                self.bytes_dropped += n
                pos += n
                continue
            if self._msg is not None:
                subject, sid, reply, hdr, total = self._msg
                if len(buf) - pos < total + 2:
                    break
                body = bytes(buf[pos : pos + total])
                if buf[pos + total : pos + total + 2] != b"\r\n":
                    self.lines_bad += 1
                    self.bytes_dropped += total
                    pos += total  # resynchronise on whatever follows the declared payload
                else:
                    headers = body[:hdr] if hdr >= 0 else None
                    out.append(Msg(subject, sid, reply, body[max(hdr, 0) :], headers))
                    self.ops_ok += 1
                    pos += total + 2
                self._msg = None
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if self._skip_line or len(buf) - pos > self.max_control_line:
                    self.overflows += not self._skip_line
                    self.bytes_dropped += len(buf) - pos
                    pos = len(buf)
                    self._skip_line = True
                break
            line = bytes(buf[pos:nl]).rstrip(b"\r")
            pos = nl + 1
            if self._skip_line:
                self._skip_line = False
                self.bytes_dropped += len(line)
                continue
            op = self._control(line)
            if op is not None:
                self.ops_ok += 1
                out.append(op)
        del buf[:pos]  # one compaction per feed keeps parsing O(bytes)
        return out

    def _bad(self, line: bytes) -> None:
        self.lines_bad += 1
        self.bytes_dropped += len(line)

    def _control(self, line: bytes) -> ServerOp | None:
        if len(line) > self.max_control_line:
            self.overflows += 1
            self.bytes_dropped += len(line)
            return None
        head = line.split(None, 1)  # ops and arguments are separated by spaces or tabs (1.1)
        if not head:
            return None
        op = head[0].upper()
        rest = head[1] if len(head) > 1 else b""
        if op in (b"PING", b"PONG", b"+OK"):
            return Ping() if op == b"PING" else Pong() if op == b"PONG" else Ok()
        try:
            text = rest.decode("utf-8").strip()
        except UnicodeDecodeError:
            self._bad(line)
            return None
        if op == b"-ERR":
            return Err(text.strip("'"))
        if op == b"INFO":
            return Info(text)
        if op in (b"MSG", b"HMSG"):
            args = text.split()
            want = (3, 4) if op == b"MSG" else (4, 5)
            nums = args[-1:] if op == b"MSG" else args[-2:]
            if len(args) not in want or not all(a.isascii() and a.isdigit() for a in [*nums, args[1]]):
                self._bad(line)
                return None
            total = int(args[-1])
            hdr = -1 if op == b"MSG" else int(args[-2])
            reply = args[2] if len(args) == want[1] else None
            if hdr > total:
                self._bad(line)
                return None
            if total > self.max_payload:
                self.overflows += 1
                self.bytes_dropped += len(line)
                self._skip_bytes = total + 2
                return None
            self._msg = (args[0], int(args[1]), reply, hdr, total)
            return None
        self._bad(line)
        return None
