"""Sans-IO wire helpers for the benchmark: frame batches, a tolerant parser, and stream verification.

Theory of operation. Every benchmark message carries its sequence number in the first 8 bytes of its
payload (unsigned 64-bit, little-endian); the rest of the payload is a fixed filler. For one stream all
frames therefore have the same length and layout (``PUB subj size`` from a publisher, ``MSG subj sid
size`` at a subscriber), and only the 8 sequence bytes differ. That lets both ends work on whole
batches with C-speed bytearray operations instead of a Python loop per message:

* a sender keeps one ~256 KiB batch of frames and rewrites the sequence bytes with 8 strided slice
  assignments (one per byte column) before each ``sendall``;
* a receiver takes the 8 sequence columns out of a window of ``k`` frames (strided slices), zeroes them
  in place and compares the window with a template of ``k`` frames in one memcmp; the columns are then
  compared with the expected ones. A match proves ``k`` well-formed frames carrying exactly the next ``k``
  sequence numbers: no loss, duplicate or reordering inside the window.

Anything else (a split frame at the end of a read, a PING, INFO or -ERR from the server, a frame with an
unexpected sequence number) falls back to :func:`parse_op`, a real incremental parser, and to
:class:`SeqTracker`, which accounts exactly for gaps, late arrivals and duplicates.

Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, NamedTuple

from edge.errors import EdgeError

__all__ = [
    "BATCH_TARGET_BYTES",
    "MIN_PAYLOAD",
    "SEQ_BYTES",
    "Control",
    "FrameBatch",
    "Msg",
    "QueueCheck",
    "SeqTracker",
    "StreamVerifier",
    "WireError",
    "check_exactly_once",
    "connect_frame",
    "msg_header",
    "parse_op",
    "payload",
    "percentile",
    "pub_frame",
    "pub_header",
    "seq_columns",
]

SEQ_BYTES: Final = 8
MIN_PAYLOAD: Final = SEQ_BYTES
# One sendall per batch: big enough that the per-call overhead vanishes, small enough to stay in L2.
BATCH_TARGET_BYTES: Final = 256 * 1024
# A receive window is verified in one comparison. The sequence column builder below assumes at most
# 65536 frames per window (see seq_columns).
MAX_WINDOW_FRAMES: Final = 65536
MAX_WINDOW_BYTES: Final = 1024 * 1024
# nats-server's max_control_line (server/const.go); a longer line from a broker is a protocol error.
MAX_CONTROL_LINE: Final = 4096
# Bound on remembered gaps per stream: a broker that loses every other message must not exhaust memory.
MAX_HOLES: Final = 100_000

_FILLER: Final = b"nats-edge-bench-" * 4
_LITTLE: Final = sys.byteorder == "little"


class WireError(EdgeError):
    """Bytes from a broker that cannot be parsed as NATS protocol."""


# ---------------------------------------------------------------------------------------------- frames


def payload(seq: int, size: int) -> bytes:
    """The benchmark payload of ``size`` bytes (``size >= MIN_PAYLOAD``) carrying ``seq``."""
    if size < MIN_PAYLOAD:
        raise ValueError(f"payload size must be at least {MIN_PAYLOAD} bytes")
    fill = (_FILLER * (size // len(_FILLER) + 1))[: size - SEQ_BYTES]
    return seq.to_bytes(SEQ_BYTES, "little") + fill


def pub_header(subject: str, size: int, reply: str | None = None) -> bytes:
    """``PUB subject [reply] size\\r\\n``."""
    mid = f" {reply}" if reply else ""
    return f"PUB {subject}{mid} {size}\r\n".encode()


def pub_frame(subject: str, seq: int, size: int, reply: str | None = None) -> bytes:
    """One complete PUB frame carrying ``seq``."""
    return pub_header(subject, size, reply) + payload(seq, size) + b"\r\n"


def msg_header(subject: str, sid: str, size: int, reply: str | None = None) -> bytes:
    """``MSG subject sid [reply] size\\r\\n``, exactly as nats-server writes it."""
    mid = f" {reply}" if reply else ""
    return f"MSG {subject} {sid}{mid} {size}\r\n".encode()


def connect_frame(name: str = "nats-edge-bench") -> bytes:
    """CONNECT with verbose/pedantic off (both default to true on nats-server) followed by nothing."""
    return (
        b'CONNECT {"verbose":false,"pedantic":false,"echo":false,"protocol":1,"headers":false,'
        b'"lang":"python","version":"bench","name":"' + name.encode() + b'"}\r\n'
    )


def _byte_run_pattern(j: int) -> bytes:
    # Byte j of consecutive integers, for j in (0, 1): period 256 ** (j + 1).
    step = 256**j
    return b"".join(bytes([v]) * step for v in range(256))


_COL_PATTERNS: Final = (_byte_run_pattern(0) * 513, _byte_run_pattern(1) * 3)


def seq_columns(first: int, count: int) -> list[bytes]:
    """The 8 byte columns of the little-endian u64 sequence numbers ``first .. first+count-1``.

    Column ``j`` holds byte ``j`` of each number, ready to be written with one strided assignment.
    Built from periodic patterns by slicing (C speed), which requires ``count <= MAX_WINDOW_FRAMES``:
    then bytes 2..7 change at most once inside the range.
    """
    if not 0 < count <= MAX_WINDOW_FRAMES:
        raise ValueError(f"count must be in 1..{MAX_WINDOW_FRAMES}")
    cols: list[bytes] = []
    for j in range(SEQ_BYTES):
        if j < 2:
            period = 256 ** (j + 1)
            start = first % period
            cols.append(_COL_PATTERNS[j][start : start + count])
            continue
        shift = 8 * j
        first_val = (first >> shift) & 0xFF
        last = first + count - 1
        last_val = (last >> shift) & 0xFF
        if first_val == last_val and (first >> shift) == (last >> shift):
            cols.append(bytes([first_val]) * count)
        else:
            boundary = ((first >> shift) + 1) << shift  # first number whose byte j differs
            head = boundary - first
            cols.append(bytes([first_val]) * head + bytes([last_val]) * (count - head))
    return cols


def _scatter(buf: bytearray, cols: list[bytes], start: int, count: int, frame_len: int) -> None:
    """Write sequence columns into ``count`` frames whose first sequence byte is at ``start``."""
    span = (count - 1) * frame_len + 1
    for j, col in enumerate(cols):
        buf[start + j : start + j + span : frame_len] = col


def matching_frames(buf: bytearray, pos: int, expected: bytes | bytearray, k: int, flen: int) -> int:
    """How many of the ``k`` frames of ``flen`` bytes at ``buf[pos]`` equal ``expected``'s, from the first:
    by bisection, so one PING or odd frame in the middle of a window costs O(log k) comparisons, not a
    Python loop over the window."""
    lo, hi = 0, k  # invariant: a prefix of lo frames matches; one of hi+1 frames does not (or hi == k)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if buf[pos : pos + mid * flen] == expected[: mid * flen]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _gather(buf: bytearray, start: int, count: int, frame_len: int) -> list[bytes]:
    """Read the sequence columns of ``count`` frames whose first sequence byte is at ``start``."""
    span = (count - 1) * frame_len + 1
    return [bytes(buf[start + j : start + j + span : frame_len]) for j in range(SEQ_BYTES)]


def _rows(cols: list[bytes], count: int) -> array[int]:
    """Interleave sequence columns back into an array of u64 sequence numbers."""
    rows = bytearray(SEQ_BYTES * count)
    for j, col in enumerate(cols):
        rows[j::SEQ_BYTES] = col
    out = array("Q")
    out.frombytes(bytes(rows))
    if not _LITTLE:
        out.byteswap()
    return out


class FrameBatch:
    """``count`` frames of one layout (``header + payload + CRLF``) whose sequence numbers are rewritten in
    bulk: the sender's side of the scheme described in the module docstring."""

    __slots__ = ("buf", "count", "frame_len", "seq_offset")

    def __init__(self, header: bytes, size: int, count: int | None = None) -> None:
        frame = header + payload(0, size) + b"\r\n"
        self.frame_len: int = len(frame)
        if count is None:
            count = BATCH_TARGET_BYTES // self.frame_len
        self.count: int = max(1, min(count, MAX_WINDOW_FRAMES))
        self.seq_offset: int = len(header)
        self.buf: bytearray = bytearray(frame * self.count)

    def set_first(self, first: int) -> bytearray:
        """Number the frames ``first .. first+count-1`` and return the buffer (not a copy)."""
        _scatter(self.buf, seq_columns(first, self.count), self.seq_offset, self.count, self.frame_len)
        return self.buf


# ---------------------------------------------------------------------------------------------- parser


class Msg(NamedTuple):
    """A MSG (or HMSG, with ``headers`` the header block) delivered by the server."""

    subject: bytes
    sid: bytes
    reply: bytes | None
    payload: bytes
    headers: bytes = b""


class Control(NamedTuple):
    """Any other server op: ``kind`` is ``PING``, ``PONG``, ``+OK``, ``-ERR`` or ``INFO``."""

    kind: str
    text: bytes = b""


Op = Msg | Control


def _int(token: bytes) -> int:
    if not token.isdigit():
        raise WireError(f"bad size {token!r}")
    return int(token)


def parse_op(buf: bytes | bytearray, pos: int) -> tuple[Op, int] | None:
    """Parse one server op starting at ``buf[pos]``.

    Returns ``(op, next_pos)``, or ``None`` when the op is not complete yet. Raises :class:`WireError` for
    bytes that are not server-to-client NATS protocol. Tolerant like nats-server: op names in any case,
    spaces or tabs between arguments, bare LF line ends.
    """
    eol = buf.find(b"\n", pos)
    if eol < 0:
        if len(buf) - pos > MAX_CONTROL_LINE + 16:
            raise WireError("control line too long")
        return None
    line = bytes(buf[pos:eol])
    if line.endswith(b"\r"):
        line = line[:-1]
    parts = line.split()
    if not parts:
        raise WireError("empty control line")
    name = parts[0].upper()
    nxt = eol + 1
    if name in (b"MSG", b"HMSG"):
        nums = 1 if name == b"MSG" else 2
        args = parts[1:]
        if len(args) not in (2 + nums, 3 + nums):
            raise WireError(f"bad {name.decode()} arguments: {line[:200]!r}")
        subject, sid = args[0], args[1]
        reply = args[2] if len(args) == 3 + nums else None
        total = _int(args[-1])
        hdr_len = _int(args[-2]) if nums == 2 else 0
        if hdr_len > total:
            raise WireError("header size exceeds total size")
        end = nxt + total
        if len(buf) < end + 2:
            return None
        if buf[end : end + 2] != b"\r\n":
            raise WireError("payload not followed by CRLF")
        body = bytes(buf[nxt : end])
        return Msg(subject, sid, reply, body[hdr_len:], body[:hdr_len]), end + 2
    if name in (b"PING", b"PONG", b"+OK"):
        return Control(name.decode()), nxt
    if name in (b"-ERR", b"INFO"):
        return Control(name.decode(), line[len(parts[0]) :].strip()), nxt
    raise WireError(f"unknown op {line[:200]!r}")


# ------------------------------------------------------------------------------------------ verification


@dataclass(slots=True)
class SeqTracker:
    """Exact accounting of one stream that should deliver 0, 1, 2, ... in order.

    ``next`` is one past the highest number seen; ``holes`` are sorted, disjoint ``[lo, hi)`` ranges below
    it not seen yet. A number below ``next`` inside a hole is a late (reordered) arrival; outside any
    hole it is a duplicate. At most ``MAX_HOLES`` gaps are remembered; numbers in gaps beyond that are
    counted in ``untracked`` (the stream fails either way).
    """

    next: int = 0
    unique: int = 0
    duplicates: int = 0
    reordered: int = 0
    untracked: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)

    def add_run(self, first: int, count: int) -> None:
        """Record ``first .. first+count-1``; O(1) when it continues the stream."""
        if first == self.next:
            self.next += count
            self.unique += count
        else:
            for seq in range(first, first + count):
                self.add(seq)

    def add(self, seq: int) -> None:
        """Record one sequence number."""
        if seq == self.next:
            self.next += 1
            self.unique += 1
        elif seq > self.next:
            if len(self.holes) < MAX_HOLES:
                self.holes.append((self.next, seq))
            else:
                self.untracked += seq - self.next
            self.next = seq + 1
            self.unique += 1
        else:
            i = bisect.bisect_right(self.holes, (seq, sys.maxsize)) - 1
            if i >= 0 and self.holes[i][0] <= seq < self.holes[i][1]:
                lo, hi = self.holes[i]
                parts = [(a, b) for a, b in ((lo, seq), (seq + 1, hi)) if a < b]
                self.holes[i : i + 1] = parts
                self.reordered += 1
                self.unique += 1
            else:
                self.duplicates += 1

    def missing(self, total: int) -> int:
        """How many of ``0 .. total-1`` were never seen."""
        return sum(hi - lo for lo, hi in self.holes) + self.untracked + max(0, total - self.next)


class StreamVerifier:
    """Consume the bytes a subscriber receives; count frames and verify their sequence numbers.

    ``header`` is the exact MSG control line expected (``MSG subj sid size\\r\\n``) and ``size`` the payload
    size. In the default mode the stream must carry 0, 1, 2, ... (a plain or fan-out subscriber); with
    ``collect=True`` (a queue-group member, which sees an increasing subset) the sequence numbers are
    kept, 8 bytes each, for :func:`check_exactly_once` after the run.

    :meth:`feed` returns how many server PINGs need a PONG. ``frames`` counts every benchmark frame
    received (duplicates included), which is what a publisher's credit window needs.
    """

    def __init__(self, header: bytes, size: int, *, collect: bool = False) -> None:
        self.header = header
        self.size = size
        self.collect = collect
        self.frame_len = len(header) + size + 2
        self.seq_offset = len(header)
        self.window = max(1, min(MAX_WINDOW_FRAMES, MAX_WINDOW_BYTES // self.frame_len))
        self.template = bytes((header + payload(0, size) + b"\r\n") * self.window)
        self._template_view = memoryview(self.template)
        self.tracker = SeqTracker()
        self.collected: list[array[int]] = []
        self.frames = 0
        self.slow_ops = 0
        self.pongs = 0
        self.errors: list[str] = []
        self._buf = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume received bytes; returns the number of PINGs to answer. Raises WireError."""
        buf = self._buf
        buf += data
        pos = 0
        pings = 0
        flen = self.frame_len
        hlen = len(self.header)
        while True:
            avail = (len(buf) - pos) // flen
            if avail and buf[pos : pos + hlen] == self.header:
                good = self._fast(buf, pos, min(avail, self.window))
                if good:
                    pos += good * flen
                    continue
            parsed = parse_op(buf, pos)
            if parsed is None:
                break
            op, pos = parsed
            self.slow_ops += 1
            if isinstance(op, Msg):
                self._slow_msg(op)
            elif op.kind == "PING":
                pings += 1
            elif op.kind == "PONG":
                self.pongs += 1
            elif op.kind == "-ERR":
                self.errors.append("-ERR " + op.text.decode(errors="replace"))
        del buf[:pos]
        return pings

    def _fast(self, buf: bytearray, pos: int, k: int) -> int:
        """Verify up to ``k`` whole frames at ``pos`` in bulk; returns how many were consumed (0: none)."""
        flen = self.frame_len
        start = pos + self.seq_offset
        # Take the numbers out, zero them in place and compare the window with the template without a
        # copy (bytearray.startswith is a memcmp): two reads of the window in total, whatever its size.
        cols = _gather(buf, start, k, flen)
        zeros = bytes(k)
        _scatter(buf, [zeros] * SEQ_BYTES, start, k, flen)
        if buf.startswith(self._template_view[: k * flen], pos):
            self._accept(cols, k)
            return k
        _scatter(buf, cols, start, k, flen)  # put the numbers back for the slow path
        expected = bytearray(self._template_view[: k * flen])
        _scatter(expected, cols, self.seq_offset, k, flen)
        # Something in the window differs: the longest prefix of well-formed frames.
        lo = matching_frames(buf, pos, expected, k, flen)
        if lo:
            self._accept([c[:lo] for c in cols], lo)
        return lo

    def _accept(self, cols: list[bytes], k: int) -> None:
        """Account for ``k`` well-formed frames with sequence columns ``cols``."""
        self.frames += k
        if self.collect:
            self.collected.append(_rows(cols, k))
        elif cols == seq_columns(self.tracker.next, k):  # the common case: exactly the next k numbers
            self.tracker.add_run(self.tracker.next, k)
        else:
            for seq in _rows(cols, k):
                self.tracker.add(seq)

    def _slow_msg(self, msg: Msg) -> None:
        if msg.headers or len(msg.payload) != self.size or len(msg.payload) < SEQ_BYTES:
            subject = msg.subject.decode(errors="replace")
            self.errors.append(f"unexpected message on {subject} ({len(msg.payload)} bytes)")
            return
        self.frames += 1
        seq = int.from_bytes(msg.payload[:SEQ_BYTES], "little")
        if self.collect:
            self.collected.append(array("Q", [seq]))
        else:
            self.tracker.add(seq)

    def collected_bytes(self) -> bytes:
        """All collected sequence numbers, native u64s concatenated (collect mode)."""
        return b"".join(a.tobytes() for a in self.collected)


@dataclass(frozen=True, slots=True)
class QueueCheck:
    """Outcome of :func:`check_exactly_once`."""

    total: int
    unique: int
    duplicates: int
    out_of_range: int
    reordered: int  # a member saw a number lower than one it had already seen

    @property
    def missing(self) -> int:
        return self.total - self.unique

    @property
    def ok(self) -> bool:
        return self.unique == self.total and not (self.duplicates or self.out_of_range or self.reordered)


def check_exactly_once(members: Iterable[bytes], total: int) -> QueueCheck:
    """Verify that queue-group members together received each of ``0 .. total-1`` exactly once.

    ``members`` are the members' collected sequence numbers (native u64 bytes, in arrival order). Runs
    after the measurement, so the Python loop per message does not compete with the broker.
    """
    seen = bytearray(total)
    dups = out = reordered = 0
    for raw in members:
        seqs = array("Q")
        seqs.frombytes(raw)
        prev = -1
        for seq in seqs:
            if seq <= prev:
                reordered += 1
            prev = seq
            if seq >= total:
                out += 1
            elif seen[seq]:
                dups += 1
            else:
                seen[seq] = 1
    return QueueCheck(total, total - seen.count(0), dups, out, reordered)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
