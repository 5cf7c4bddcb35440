"""The NATS text-protocol parser, sans-IO: bytes in, handler calls out.

Theory of operation. :meth:`Parser.feed` scans the bytes of one read with offsets (no per-op
slicing of the remaining buffer), finds each control line, and for the message ops reads exactly
the announced number of payload bytes plus ``\\r\\n``. Each complete op is dispatched synchronously
to the handler (``on_pub``, ``on_sub``, ...), which keeps per-publisher order and avoids building an
event object per message on the hot path (style.md, note on principle 4). A partial op at the end of
a read is kept in one bounded buffer until the rest arrives.

Tolerance follows nats-server's parser.go (docs/nats-protocol.md section 1.1): op names are
case-insensitive; arguments are separated by runs of spaces or tabs; a control line ends at ``\\n``
with an optional ``\\r``; ``PING``/``PONG``/``+OK`` ignore anything before the newline; ``CONNECT`` and
``INFO`` need no space before their JSON. The one kind of exception that leaves :meth:`feed` for
malformed input is :class:`ProtocolError` (or whatever the handler itself raises).

Limits: the argument part of a control line may not exceed ``max_control_line`` (checked while the
line is still incomplete, too); a message larger than ``max_payload`` is refused on its control line,
before its payload is buffered. So the parser never holds more than max_control_line + max_payload + 2
bytes of a partial op.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal, Protocol

from edge.protocol.errors import (
    ERR_MAX_CONTROL_LINE,
    ERR_MAX_PAYLOAD,
    ERR_UNKNOWN_OP,
    ProtocolError,
)
from edge.protocol.subjects import RESERVED_FIRST

ParserKind = Literal["client", "leaf"]

# nats-server multiplies max_control_line by 16 on LEAF/ROUTER/GATEWAY links (client.go, mcl).
LEAF_CONTROL_LINE_FACTOR: Final = 16
# nats-server's parseSize reads at most 9 digits (util.go maxParseSizeLen); longer is a parse error.
_MAX_SIZE_DIGITS: Final = 9
# Distinct PUB control lines remembered per connection (a sensor publishes a handful of subjects).
PUB_LINE_CACHE_MAX: Final = 64

_OP_PUB: Final = 1
_OP_HPUB: Final = 2
_OP_SUB: Final = 3
_OP_UNSUB: Final = 4
_OP_PING: Final = 5
_OP_PONG: Final = 6
_OP_CONNECT: Final = 7
_OP_INFO: Final = 8
_OP_OK: Final = 9
_OP_ERR: Final = 10
_OP_LSPLUS: Final = 11
_OP_LSMINUS: Final = 12
_OP_LMSG: Final = 13
_OP_MSG: Final = 14
_OP_HMSG: Final = 15

_CLIENT_OPS: Final[dict[bytes, int]] = {
    b"PUB": _OP_PUB,
    b"HPUB": _OP_HPUB,
    b"SUB": _OP_SUB,
    b"UNSUB": _OP_UNSUB,
    b"PING": _OP_PING,
    b"PONG": _OP_PONG,
    b"CONNECT": _OP_CONNECT,
    b"+OK": _OP_OK,
    b"-ERR": _OP_ERR,
}
_LEAF_OPS: Final[dict[bytes, int]] = {
    b"INFO": _OP_INFO,
    b"CONNECT": _OP_CONNECT,
    b"LS+": _OP_LSPLUS,
    b"LS-": _OP_LSMINUS,
    b"LMSG": _OP_LMSG,
    b"HMSG": _OP_HMSG,
    b"PING": _OP_PING,
    b"PONG": _OP_PONG,
    b"+OK": _OP_OK,
    b"-ERR": _OP_ERR,
}
# Ops whose name may be followed by anything up to the newline (nats-server ignores it).
_BARE_OPS: Final = {_OP_PING, _OP_PONG, _OP_OK}
# Ops whose JSON may follow the name with no separator.
_JSON_OPS: Final = {_OP_CONNECT, _OP_INFO}
_MAX_OP_NAME: Final = 8


class ClientHandler(Protocol):
    """What a client connection does with each op. Any method may raise ProtocolError to close.
    ``on_connect`` (the options, and the JSON as sent, for the trace) returning True suspends parsing
    until :meth:`Parser.resume`."""

    def on_connect(self, options: dict[str, Any], raw: bytes = b"") -> bool: ...
    def on_pub(self, subject: bytes, reply: bytes | None, payload: bytes) -> None: ...
    def on_hpub(self, subject: bytes, reply: bytes | None, header_len: int, data: bytes) -> None: ...
    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None: ...
    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None: ...
    def on_ping(self) -> None: ...
    def on_pong(self) -> None: ...
    def on_ok(self) -> None: ...
    def on_err(self, text: str) -> None: ...
    def on_no_receivers(self, subject: bytes, reply: bytes) -> None: ...


class LeafHandler(Protocol):
    """What a leaf link does with each op the hub sends."""

    def on_info(self, info: dict[str, Any]) -> None: ...
    def on_connect(self, options: dict[str, Any], raw: bytes = b"") -> bool: ...
    def on_ls_plus(self, subject: bytes, queue: bytes | None, weight: int) -> None: ...
    def on_ls_minus(self, subject: bytes, queue: bytes | None) -> None: ...
    def on_lmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], payload: bytes) -> None: ...
    def on_lhmsg(
        self, subject: bytes, reply: bytes | None, queues: list[bytes], header_len: int, data: bytes
    ) -> None: ...
    def on_ping(self) -> None: ...
    def on_pong(self) -> None: ...
    def on_ok(self) -> None: ...
    def on_err(self, text: str) -> None: ...


def _size(tok: bytes) -> int:
    if not tok.isdigit() or len(tok) > _MAX_SIZE_DIGITS:
        raise ProtocolError(None, f"bad size {tok!r}")
    return int(tok)


class Parser:
    """Incremental NATS protocol parser for one connection.

    Args:
        handler: receives each complete op, in order.
        kind: ``"client"`` accepts client ops; ``"leaf"`` accepts what a hub sends a leaf.
        max_control_line: limit on a control line's argument bytes (×16 for leaf links).
        max_payload: limit on a message's total size (headers + payload).
    """

    __slots__ = (
        "_buf",
        "_last_pub",
        "_max_payload",
        "_need",
        "_ops",
        "_pending",
        "_pub_lines",
        "_suspended",
        "fast_bytes",
        "fast_msgs",
        "fast_route",
        "handler",
        "kind",
        "max_control_line",
    )

    def __init__(
        self,
        handler: ClientHandler | LeafHandler,
        *,
        kind: ParserKind = "client",
        max_control_line: int = 4096,
        max_payload: int = 1024 * 1024,
    ) -> None:
        # Dispatch goes by ``kind``, which a type checker cannot follow into the union: typed at the door.
        self.handler: Any = handler
        self.kind = kind
        self._ops = _CLIENT_OPS if kind == "client" else _LEAF_OPS
        self.max_control_line = max_control_line * (LEAF_CONTROL_LINE_FACTOR if kind == "leaf" else 1)
        self._max_payload = max_payload
        self._buf = bytearray()
        # While waiting for a payload: the op's parsed arguments and the bytes still needed.
        self._pending: tuple[Any, ...] | None = None
        self._need = 0
        # Set when on_connect asks to wait (returns True): input is kept, unparsed, until resume().
        self._suspended = False
        # A direct publish target for plain PUBs, set by a connection with nothing to check per
        # message: called as fast_route(handler, subject, reply, 0, payload) -> receivers reached;
        # a request that reached nobody goes to handler.on_no_receivers(subject, reply). Those
        # messages are counted here, in fast_msgs/fast_bytes, rather than by the handler.
        self.fast_route: Any = None
        self.fast_msgs = 0
        self.fast_bytes = 0
        # Validated PUB control lines (with their newline) -> (subject, reply, size, divert); bounded,
        # cleared when full; and the last one used.
        self._pub_lines: dict[bytes, tuple[bytes, bytes | None, int, bool]] = {}
        self._last_pub: tuple[bytes, Any] = (b"", None)

    def resume(self) -> None:
        """Go on with the input kept since on_connect asked to wait (may raise ProtocolError)."""
        if self._suspended:
            self._suspended = False
            self.feed(b"")

    @property
    def max_payload(self) -> int:
        return self._max_payload

    @max_payload.setter
    def max_payload(self, value: int) -> None:
        """A new limit (config reload) invalidates the PUB lines validated against the old one."""
        self._max_payload = value
        self._pub_lines.clear()
        self._last_pub = (b"", None)

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete op (bounded by the limits above)."""
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        """Parse ``data`` and dispatch every complete op. Raises ProtocolError on malformed input."""
        if self._suspended:
            self._buf += data
            return
        if self._pending is not None:
            self._buf += data
            if len(self._buf) < self._need:
                return
            buf = bytes(self._buf)
            self._buf.clear()
            pending, self._pending = self._pending, None
            pos = self._finish_payload(buf, pending)
        elif self._buf:
            self._buf += data
            buf = bytes(self._buf)
            self._buf.clear()
            pos = 0
        else:
            buf = data if type(data) is bytes else bytes(data)  # one type from here on (the .pxd's bytes)
            pos = 0
        n = len(buf)
        client = self.kind == "client"
        pub_lines = self._pub_lines
        handler = self.handler
        on_pub = handler.on_pub if client else None
        route = self.fast_route
        # A publisher usually repeats its last control line (same subject, same size): comparing the
        # bytes in place with that line finds the op, its end and its parse with no scan and no copy.
        last_line, last_parsed = self._last_pub
        nmsgs = nbytes = 0
        try:
            while pos < n:
                if last_line and buf.startswith(last_line, pos):
                    subject, reply, size, divert = last_parsed
                    start = pos + len(last_line)
                else:
                    nl = buf.find(b"\n", pos)
                    if nl < 0:
                        self._check_partial_line(buf, pos)
                        self._buf += buf[pos:] if pos else buf
                        return
                    if not (client and buf.startswith(b"PUB ", pos)):
                        end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                        pos = self._dispatch_line(buf, pos, end, nl, n)
                        if pos < 0:
                            return
                        continue
                    # Fast path for the commonest op on a busy broker: an upper-case PUB with a space.
                    # A small per-connection cache of validated lines skips splitting and number parsing.
                    line = buf[pos : nl + 1]
                    parsed = pub_lines.get(line)
                    if parsed is None:
                        parsed = self._parse_pub_line(buf, pos, nl)
                    last_line, last_parsed = line, parsed
                    subject, reply, size, divert = parsed
                    start = nl + 1
                stop = start + size
                if stop + 2 > n:
                    self._pending = (_OP_PUB, subject, reply, size)
                    self._need = size + 2
                    self._buf += buf[start:]
                    return
                if buf[stop] != 13 or buf[stop + 1] != 10:
                    raise ProtocolError(ERR_UNKNOWN_OP, "payload not followed by CRLF")
                pos = stop + 2
                if route is None or divert:
                    on_pub(subject, reply, buf[start:stop])  # type: ignore[misc]  # set: PUB lines reach here only on a client
                else:
                    nmsgs += 1
                    nbytes += size
                    if not route(handler, subject, reply, 0, buf[start:stop]) and reply:
                        handler.on_no_receivers(subject, reply)
        finally:
            self._last_pub = (last_line, last_parsed)
            if nmsgs:
                self.fast_msgs += nmsgs
                self.fast_bytes += nbytes

    def _parse_pub_line(self, buf: bytes, pos: int, nl: int) -> tuple[bytes, bytes | None, int, bool]:
        """Validate a ``PUB`` control line and remember it in the line cache as (subject, reply, size,
        divert); ``divert``: a subject or reply that may be reserved, for the handler's ``on_pub`` to
        check instead of the fast route."""
        end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
        if end - pos - 4 > self.max_control_line:
            raise ProtocolError(ERR_MAX_CONTROL_LINE)
        args = buf[pos + 4 : end].split()
        nargs = len(args)
        parsed: tuple[bytes, bytes | None, int, bool]
        if nargs == 2:
            parsed = (args[0], None, _size(args[1]), args[0][0] in RESERVED_FIRST)
        elif nargs == 3:
            divert = args[0][0] in RESERVED_FIRST or args[1][0] in RESERVED_FIRST
            parsed = (args[0], args[1], _size(args[2]), divert)
        else:
            raise ProtocolError(None, "PUB needs subject [reply] size")
        if parsed[2] > self.max_payload:
            raise ProtocolError(ERR_MAX_PAYLOAD)
        if len(self._pub_lines) >= PUB_LINE_CACHE_MAX:
            self._pub_lines.clear()
        self._pub_lines[buf[pos : nl + 1]] = parsed
        return parsed

    # -- general path ---------------------------------------------------------------------------

    def _op_of(self, buf: bytes, pos: int, end: int) -> tuple[int, int]:
        """Identify the op at ``pos``; return (op code, offset where its arguments start)."""
        i = pos
        limit = min(end, pos + _MAX_OP_NAME)
        while i < limit and buf[i] not in (32, 9, 123):  # space, tab, '{'
            i += 1
        name = buf[pos:i].upper()
        op = self._ops.get(name)
        if op is None:
            # PING/PONG/+OK ignore anything before the newline; CONNECT/INFO may be glued to '{'.
            for prefix in (b"PING", b"PONG", b"+OK"):
                if name.startswith(prefix) and prefix in self._ops:
                    return self._ops[prefix], end
            raise ProtocolError(ERR_UNKNOWN_OP, f"unknown op {name[:16]!r}")
        if op in _BARE_OPS:
            return op, end
        if op not in _JSON_OPS and (i >= end or buf[i] not in (32, 9)):
            raise ProtocolError(ERR_UNKNOWN_OP, "op needs arguments")
        return op, i

    def _check_partial_line(self, buf: bytes, pos: int) -> None:
        remaining = len(buf) - pos
        if remaining <= self.max_control_line:
            return
        sp = pos
        stop = min(len(buf), pos + _MAX_OP_NAME + 1)
        while sp < stop and buf[sp] not in (32, 9, 123):
            sp += 1
        if sp >= stop and remaining > _MAX_OP_NAME:
            # No op name fits: whatever this is, it is not a known op.
            name = buf[pos : pos + _MAX_OP_NAME].upper()
            if not any(name.startswith(k) for k in self._ops):
                raise ProtocolError(ERR_UNKNOWN_OP, "unknown op")
        arg_len = len(buf) - sp - 1
        if buf[-1] == 13:
            arg_len -= 1
        if arg_len > self.max_control_line:
            raise ProtocolError(ERR_MAX_CONTROL_LINE)

    def _dispatch_line(self, buf: bytes, pos: int, end: int, nl: int, n: int) -> int:
        """Handle one complete control line; return the next position, or -1 if waiting for a payload."""
        op, astart = self._op_of(buf, pos, end)
        if end - astart - 1 > self.max_control_line:
            raise ProtocolError(ERR_MAX_CONTROL_LINE)
        h = self.handler
        if op == _OP_PING:
            h.on_ping()
            return nl + 1
        if op == _OP_PONG:
            h.on_pong()
            return nl + 1
        if op == _OP_OK:
            h.on_ok()
            return nl + 1
        if op in (_OP_CONNECT, _OP_INFO):
            raw = buf[astart:end].strip(b" \t")
            try:
                obj = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                raise ProtocolError(None, "bad JSON") from None
            if not isinstance(obj, dict):
                raise ProtocolError(None, "JSON is not an object")
            if op == _OP_CONNECT:
                if h.on_connect(obj, raw):  # the handler finishes it later (e.g. a bcrypt check off the loop)
                    self._suspended = True
                    self._buf += buf[nl + 1 :]
                    return -1
            else:
                h.on_info(obj)
            return nl + 1
        if op == _OP_ERR:
            text = buf[astart:end].strip(b" \t").decode("utf-8", "replace")
            if len(text) >= 2 and text[0] == "'" and text[-1] == "'":
                text = text[1:-1]
            h.on_err(text)
            return nl + 1
        args = buf[astart:end].split()
        if op == _OP_SUB:
            if len(args) == 2:
                h.on_sub(args[0], None, args[1])
            elif len(args) == 3:
                h.on_sub(args[0], args[1], args[2])
            else:
                raise ProtocolError(None, "SUB needs subject [queue] sid")
            return nl + 1
        if op == _OP_UNSUB:
            if len(args) == 1:
                h.on_unsub(args[0], None)
            elif len(args) == 2:
                h.on_unsub(args[0], _size(args[1]))
            else:
                raise ProtocolError(None, "UNSUB needs sid [max]")
            return nl + 1
        if op == _OP_LSPLUS:
            if len(args) == 1:
                h.on_ls_plus(args[0], None, 1)
            elif len(args) == 3:
                h.on_ls_plus(args[0], args[1], _size(args[2]))
            else:
                raise ProtocolError(None, "LS+ needs subject [queue weight]")
            return nl + 1
        if op == _OP_LSMINUS:
            if len(args) == 1:
                h.on_ls_minus(args[0], None)
            elif len(args) == 2:
                h.on_ls_minus(args[0], args[1])
            else:
                raise ProtocolError(None, "LS- needs subject [queue]")
            return nl + 1
        # Message ops: work out the arguments, then read the payload.
        pending = self._message_args(op, args)
        size = pending[-1]
        if size > self.max_payload:
            raise ProtocolError(ERR_MAX_PAYLOAD)
        start = nl + 1
        if start + size + 2 > n:
            self._pending = pending
            self._need = size + 2
            self._buf += buf[start:]
            return -1
        return self._finish_payload(buf, pending, start)

    def _message_args(self, op: int, args: list[bytes]) -> tuple[Any, ...]:
        nargs = len(args)
        if op == _OP_PUB:
            if nargs == 2:
                return (_OP_PUB, args[0], None, _size(args[1]))
            if nargs == 3:
                return (_OP_PUB, args[0], args[1], _size(args[2]))
            raise ProtocolError(None, "PUB needs subject [reply] size")
        if op == _OP_HPUB:
            if nargs == 3:
                subject, reply, hdr, total = args[0], None, _size(args[1]), _size(args[2])
            elif nargs == 4:
                subject, reply, hdr, total = args[0], args[1], _size(args[2]), _size(args[3])
            else:
                raise ProtocolError(None, "HPUB needs subject [reply] hdr_len total_len")
            if hdr > total:
                raise ProtocolError(None, "header length larger than total")
            return (_OP_HPUB, subject, reply, hdr, total)
        if op == _OP_LMSG:
            # LMSG subj size | subj reply size | subj (+ reply | '|') q1 .. qn size (docs 3.5)
            if nargs == 2:
                return (_OP_LMSG, args[0], None, [], _size(args[1]))
            if nargs == 3:
                return (_OP_LMSG, args[0], args[1], [], _size(args[2]))
            return (_OP_LMSG, *self._queue_form(args, 1), _size(args[-1]))
        if op == _OP_HMSG:
            queues: list[bytes]
            if nargs == 3:
                subject, reply, queues, hdr, total = args[0], None, [], _size(args[1]), _size(args[2])
            elif nargs == 4:
                subject, reply, queues, hdr, total = args[0], args[1], [], _size(args[2]), _size(args[3])
            else:
                subject, reply, queues = self._queue_form(args, 2)
                hdr, total = _size(args[-2]), _size(args[-1])
            if hdr > total:
                raise ProtocolError(None, "header length larger than total")
            return (_OP_HMSG, subject, reply, queues, hdr, total)
        raise ProtocolError(ERR_UNKNOWN_OP)  # pragma: no cover - every message op is handled above

    @staticmethod
    def _queue_form(args: list[bytes], trailing: int) -> tuple[bytes, bytes | None, list[bytes]]:
        if len(args) < 2 + trailing:  # "LMSG a", "HMSG a 5": too short for any form (found by atheris)
            raise ProtocolError(None, "bad message arguments")
        marker = args[1]
        if marker == b"+":
            if len(args) < 4 + trailing:
                raise ProtocolError(None, "queue form needs reply and queues")
            return args[0], args[2], args[3:-trailing]
        if marker == b"|":
            if len(args) < 3 + trailing:
                raise ProtocolError(None, "queue form needs queues")
            return args[0], None, args[2:-trailing]
        raise ProtocolError(None, "bad message arguments")

    def _finish_payload(self, buf: bytes, pending: tuple[Any, ...], start: int = 0) -> int:
        size = pending[-1]
        stop = start + size
        if buf[stop : stop + 2] != b"\r\n":
            raise ProtocolError(ERR_UNKNOWN_OP, "payload not followed by CRLF")
        payload = buf[start:stop]
        h = self.handler
        op = pending[0]
        if op == _OP_PUB:
            h.on_pub(pending[1], pending[2], payload)
        elif op == _OP_HPUB:
            h.on_hpub(pending[1], pending[2], pending[3], payload)
        elif op == _OP_LMSG:
            h.on_lmsg(pending[1], pending[2], pending[3], payload)
        else:
            h.on_lhmsg(pending[1], pending[2], pending[3], pending[4], payload)
        return stop + 2
