"""The outbox's record format: pure functions over bytes, no I/O, no clocks.

Theory of operation: a segment file is a plain concatenation of frames. Each frame carries its own
length and a CRC over everything after the CRC field (length included), so a reader can walk a file
front to back and stop at the first frame that is incomplete (a torn tail: the power went while the
writer was appending) or whose checksum does not match (corruption). Nothing before that point is
affected, because frames never refer to each other.

Frame layout, little-endian, 32 bytes of fixed header (``HEADER_SIZE``) then the variable parts::

    off size field
      0   4  crc       zlib.crc32 (CRC-32/ISO-HDLC, the stdlib's; not CRC32C) of bytes [4, end)
      4   4  length    bytes after offset 8: 24 + len(subject+reply+headers+payload)
      8   8  seq       u64, strictly increasing within a log, never reused
     16   8  ts_ns     u64, wall-clock nanoseconds since the epoch when appended
     24   2  subj_len  u16
     26   2  reply_len u16 (0 = no reply subject)
     28   4  hdr_len   u32, the raw NATS header block (``NATS/1.0\\r\\n...\\r\\n\\r\\n``) or 0
     32   -  subject | reply | headers | payload

A 128-byte payload on a 20-byte subject takes 180 bytes on disk (1.22x the content). CRC-32 detects
every burst error of up to 32 bits, so any single flipped byte inside a frame is always caught.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, Literal, NamedTuple

from edge.errors import EdgeError

__all__ = [
    "HEADER_SIZE",
    "MAX_RECORD_LENGTH",
    "FrameInfo",
    "Record",
    "RecordTooLargeError",
    "ScanError",
    "encode_record",
    "record_size",
    "scan_index",
    "scan_records",
]

_CRC: Final = struct.Struct("<I")
_PREFIX: Final = struct.Struct("<II")  # crc, length
# length, seq, ts_ns, subj_len, reply_len, hdr_len: the part of the header covered by the CRC.
_BODY_HEAD: Final = struct.Struct("<IQQHHI")
_HEAD: Final = struct.Struct("<IIQQHHI")
HEADER_SIZE: Final = _HEAD.size  # 32
_FIXED_AFTER_LENGTH: Final = HEADER_SIZE - 8  # 24: seq..hdr_len
_MAX_SUBJECT: Final = 0xFFFF
# The largest payload nats-server accepts is 64 MiB (server/const.go MAX_PAYLOAD_MAX_SIZE); allow that
# plus subjects and a header block. A length field above this is corruption, not a big record, so a
# flipped bit in a length cannot make a reader allocate or wait for gigabytes.
MAX_RECORD_LENGTH: Final = 64 * 1024 * 1024 + 2 * _MAX_SUBJECT + 1024 * 1024


class RecordTooLargeError(EdgeError, ValueError):
    """A subject, reply or the whole record exceeds what the frame can hold."""


class Record(NamedTuple):
    """One stored message. Subjects and bodies are bytes, exactly as they came off the wire."""

    seq: int
    ts_ns: int
    subject: bytes
    reply: bytes
    headers: bytes
    payload: bytes


class FrameInfo(NamedTuple):
    """Where a valid frame is, without copying its contents (used to index segments)."""

    seq: int
    ts_ns: int
    offset: int
    size: int


class ScanError(NamedTuple):
    """Why a scan stopped before the end of the buffer.

    ``truncated``: the buffer ends inside a frame (more bytes may complete it; at the end of a file it
    is a torn tail). ``corrupt``: the frame at ``offset`` can never be valid (bad length or CRC).
    """

    kind: Literal["truncated", "corrupt"]
    offset: int
    reason: str


def encode_record(
    seq: int, ts_ns: int, subject: bytes, reply: bytes, headers: bytes, payload: bytes
) -> bytes:
    """Frame one record.

    Raises:
        RecordTooLargeError: subject or reply longer than 65535 bytes, or the frame longer than
            :data:`MAX_RECORD_LENGTH`.
    """
    sl = len(subject)
    rl = len(reply)
    hl = len(headers)
    length = _FIXED_AFTER_LENGTH + sl + rl + hl + len(payload)
    if sl > _MAX_SUBJECT or rl > _MAX_SUBJECT or length > MAX_RECORD_LENGTH:
        raise RecordTooLargeError(f"record too large: subject {sl} B, reply {rl} B, frame {length + 8} B")
    body = b"".join((_BODY_HEAD.pack(length, seq, ts_ns, sl, rl, hl), subject, reply, headers, payload))
    return _CRC.pack(zlib.crc32(body)) + body


def record_size(rec: Record) -> int:
    """Bytes the record occupies on disk (its frame length)."""
    return HEADER_SIZE + len(rec.subject) + len(rec.reply) + len(rec.headers) + len(rec.payload)


def _check_frame(mv: memoryview, pos: int, n: int) -> tuple[int, ScanError | None]:
    """Validate the frame at ``pos``; return its end offset, or an error."""
    if n - pos < 8:
        return 0, ScanError("truncated", pos, f"{n - pos} bytes left, frame header needs 8")
    crc, length = _PREFIX.unpack_from(mv, pos)
    if length < _FIXED_AFTER_LENGTH or length > MAX_RECORD_LENGTH:
        return 0, ScanError("corrupt", pos, f"impossible frame length {length}")
    end = pos + 8 + length
    if end > n:
        return 0, ScanError("truncated", pos, f"frame of {length + 8} bytes, {n - pos} available")
    if zlib.crc32(mv[pos + 4 : end]) != crc:
        return 0, ScanError("corrupt", pos, "CRC mismatch")
    _, _, _, _, sl, rl, hl = _HEAD.unpack_from(mv, pos)
    if _FIXED_AFTER_LENGTH + sl + rl + hl > length:
        # Only reachable with a CRC collision; checked so that decoding can never slice wrongly.
        return 0, ScanError("corrupt", pos, "field lengths exceed the frame")
    return end, None


def scan_records(
    buf: bytes | bytearray | memoryview, offset: int = 0, max_records: int | None = None
) -> tuple[list[Record], int, ScanError | None]:
    """Decode consecutive frames from ``buf[offset:]``.

    Returns ``(records, end_offset, error)``: the records decoded in order, the offset just past the
    last one, and why the scan stopped early (``None`` if it reached the end of ``buf`` exactly or
    stopped at ``max_records``). Never raises on any content of ``buf``.
    """
    mv = memoryview(buf)
    n = len(mv)
    pos = offset
    out: list[Record] = []
    unpack = _HEAD.unpack_from
    while pos < n:
        if max_records is not None and len(out) >= max_records:
            return out, pos, None
        end, err = _check_frame(mv, pos, n)
        if err is not None:
            return out, pos, err
        _, _, seq, ts, sl, rl, hl = unpack(mv, pos)
        a = pos + HEADER_SIZE
        b = a + sl
        c = b + rl
        d = c + hl
        out.append(Record(seq, ts, bytes(mv[a:b]), bytes(mv[b:c]), bytes(mv[c:d]), bytes(mv[d:end])))
        pos = end
    return out, pos, None


def scan_index(
    buf: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[list[FrameInfo], int, ScanError | None]:
    """Like :func:`scan_records` but returns only where each valid frame is (no copies of contents)."""
    mv = memoryview(buf)
    n = len(mv)
    pos = offset
    out: list[FrameInfo] = []
    unpack = _HEAD.unpack_from
    while pos < n:
        end, err = _check_frame(mv, pos, n)
        if err is not None:
            return out, pos, err
        seq, ts = unpack(mv, pos)[2:4]
        out.append(FrameInfo(seq, ts, pos, end - pos))
        pos = end
    return out, pos, None
