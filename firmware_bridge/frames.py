"""COBS + CRC-16 framing of NATS protocol bytes, for noisy serial links.

Theory of operation. A frame on the wire is::

    COBS(payload || crc16(payload) as 2 bytes big-endian) || 0x00

where COBS is Cheshire & Baker's byte stuffing (see ``cobs.py``) and crc16 is CRC-16/CCITT-FALSE
(poly 0x1021, init 0xFFFF, check value 0x29B1 for "123456789"; see ``crc16.py``). The 0x00 delimiter
never occurs inside an encoded frame, so after line noise the decoder resynchronises at the next 0x00.

The payload is NATS client-protocol bytes. A frame carries one or more *complete* protocol ops (a
device typically sends one PUB per frame), so a lost frame loses whole ops and never desynchronises
the gateway's NATS parser: the gateway feeds the concatenation of good payloads into its ordinary
client-protocol parser. The gateway answers the same way (each frame it sends carries whole ops).

``FrameDecoder`` is sans-IO: ``feed(data)`` returns the good payloads completed by ``data``. It never
raises on bad input; a bad frame (COBS error, CRC mismatch, shorter than the CRC, longer than the
configured maximum) is counted and skipped, and decoding continues with the next frame. Empty frames
(two delimiters in a row) are ignored silently: senders may emit a leading 0x00 to flush line noise.
"""

from __future__ import annotations

from typing import Final, Literal

from firmware_bridge.cobs import CobsDecodeError, cobs_decode, cobs_encode
from firmware_bridge.crc16 import crc16_ccitt_false

__all__ = ["DEFAULT_MAX_PAYLOAD", "FrameDecoder", "encode_frame", "max_encoded_len"]

# A frame holds a few whole NATS ops from a microcontroller: a control line (nats-server caps it at
# 4096 bytes, server/const.go MAX_CONTROL_LINE_SIZE) plus a small payload. 8 KiB bounds the per-port
# buffer on a Pi while leaving room; configurable per port.
DEFAULT_MAX_PAYLOAD: Final = 8192
CRC_LEN: Final = 2


def max_encoded_len(max_payload: int) -> int:
    """Longest COBS encoding (without delimiter) of a payload of ``max_payload`` bytes plus its CRC.

    COBS adds one code byte per started run of 254 bytes, plus one (Cheshire & Baker, section 3).
    """
    n = max_payload + CRC_LEN
    return n + n // 254 + 1


def encode_frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Return the wire form of one frame: COBS(payload || crc16 big-endian) followed by 0x00."""
    body = bytes(payload)
    crc = crc16_ccitt_false(body)
    return cobs_encode(body + crc.to_bytes(2, "big")) + b"\x00"


class FrameDecoder:
    """Split a byte stream into frames and return the payloads of the good ones.

    Counters: ``frames_ok``, ``frames_bad`` (= ``cobs_errors + crc_errors + too_short``, plus frames
    that overflowed), ``bytes_dropped`` (encoded bytes of rejected frames, delimiters not counted),
    ``overflows`` (frames longer than ``max_encoded_len(max_payload)``).
    """

    output: Final[Literal["protocol"]] = "protocol"

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
        if isinstance(max_payload, bool) or not isinstance(max_payload, int) or max_payload < 1:
            raise ValueError(f"max_payload: must be a positive integer, got {max_payload!r}")
        self.max_payload: Final = max_payload
        self.max_encoded: Final = max_encoded_len(max_payload)
        self._buf = bytearray()
        self._skipping = False  # inside an overflowed frame: drop bytes until the next 0x00
        self.frames_ok = 0
        self.frames_bad = 0
        self.cobs_errors = 0
        self.crc_errors = 0
        self.too_short = 0
        self.bytes_dropped = 0
        self.overflows = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held in the buffer (at most ``max_encoded``)."""
        return len(self._buf)

    def counters(self) -> dict[str, int]:
        """Snapshot of all counters, for metrics."""
        return {
            "frames_ok": self.frames_ok,
            "frames_bad": self.frames_bad,
            "cobs_errors": self.cobs_errors,
            "crc_errors": self.crc_errors,
            "too_short": self.too_short,
            "bytes_dropped": self.bytes_dropped,
            "overflows": self.overflows,
        }

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Consume ``data``; return the payloads of the good frames it completed, in order."""
        out: list[bytes] = []
        chunk = bytes(data)
        start = 0
        n = len(chunk)
        while start < n:
            end = chunk.find(0, start)
            seg_end = n if end < 0 else end
            seg_len = seg_end - start
            if self._skipping:
                self.bytes_dropped += seg_len
            elif len(self._buf) + seg_len > self.max_encoded:
                # Checked while the frame is still incomplete, so the buffer never exceeds its bound.
                self.overflows += 1
                self.frames_bad += 1
                self.bytes_dropped += len(self._buf) + seg_len
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += chunk[start:seg_end]
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            elif self._buf:
                payload = self._decode(self._buf)
                if payload is not None:
                    out.append(payload)
                self._buf.clear()
            start = end + 1
        return out

    def _decode(self, frame: bytearray) -> bytes | None:
        try:
            raw = cobs_decode(frame)
        except CobsDecodeError:
            self.cobs_errors += 1
            return self._reject(len(frame))
        if len(raw) < CRC_LEN:
            self.too_short += 1
            return self._reject(len(frame))
        payload = raw[:-CRC_LEN]
        if len(payload) > self.max_payload:
            # max_encoded is a bound on the encoding; a denser encoding can still decode to more.
            self.overflows += 1
            return self._reject(len(frame))
        if crc16_ccitt_false(payload) != int.from_bytes(raw[-CRC_LEN:], "big"):
            self.crc_errors += 1
            return self._reject(len(frame))
        self.frames_ok += 1
        return payload

    def _reject(self, nbytes: int) -> None:
        self.frames_bad += 1
        self.bytes_dropped += nbytes
        return None
