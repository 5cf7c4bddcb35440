"""Sans-IO MQTT 3.1.1 helpers for the benchmark: numbered PUBLISH batches, PUBACK accounting, and a
subscriber-side stream verifier.

The scheme is :mod:`edge.bench.wire`'s, applied to MQTT frames built with the broker's own encoders
(:mod:`edge.protocol.mqtt`): every PUBLISH of one stream has the same topic and payload size, so all
frames have one length and layout and differ only in the 8 sequence bytes of the payload and, at QoS 1,
the 2 packet-id bytes. Senders rewrite those columns with strided slice assignments; receivers zero
them and compare a whole window with a template in one memcmp, falling back to the real decoder for
anything else (PINGRESP, SUBACK, a split frame, a DUP redelivery).

A publisher numbers message ``s`` with packet id ``s % 65535 + 1``, so the PUBACKs a broker must send
(in order, MQTT 3.1.1 §4.6) are a known byte string: :class:`AckCounter` compares them in bulk too.
Nothing here touches a socket or a clock.
"""

from __future__ import annotations

import functools
from typing import Final

from edge.bench.wire import (
    MAX_WINDOW_BYTES,
    MAX_WINDOW_FRAMES,
    SEQ_BYTES,
    SeqTracker,
    _gather,
    _scatter,
    matching_frames,
    payload,
    seq_columns,
)
from edge.errors import EdgeError
from edge.protocol import mqtt

__all__ = ["AckCounter", "MqttBatch", "MqttVerifier", "packet_end", "publish_frame"]

ID_PERIOD: Final = 65535  # packet ids 1..65535 (0 is not a valid id)
BATCH_TARGET_BYTES: Final = 256 * 1024
PUBACK_LEN: Final = 4


class MqttWireError(EdgeError, ValueError):
    """Bytes from a broker that are not what the benchmark stream allows."""


@functools.cache
def _id_columns() -> tuple[bytes, bytes]:
    """High and low bytes of packet ids 1..65535, twice over (so any window of <= 65535 is a slice)."""
    ids = bytes(range(256)) * 256  # low byte of 0..65535
    hi = b"".join(bytes([v]) * 256 for v in range(256))
    # ids 1..65535 = numbers 1..65535: drop number 0.
    return (hi[1:] * 2, ids[1:] * 2)


@functools.cache
def _ack_table() -> bytes:
    """The PUBACKs for ids 1..65535, twice over."""
    return b"".join(mqtt.encode_ack(mqtt.PUBACK, i) for i in range(1, ID_PERIOD + 1)) * 2


def packet_id(seq: int) -> int:
    return seq % ID_PERIOD + 1


def publish_frame(topic: bytes, size: int, qos: int, seq: int = 0) -> bytes:
    """One PUBLISH carrying ``seq`` (packet id ``packet_id(seq)`` at QoS 1)."""
    return mqtt.encode_publish(topic, payload(seq, size), qos, packet_id=packet_id(seq) if qos else 0)


def packet_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Where the packet starting at ``buf[pos]`` ends, or None when it is not complete yet."""
    length = 0
    shift = 0
    i = pos + 1
    while True:
        if i >= len(buf):
            return None
        b = buf[i]
        length |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            break
        shift += 7
        if i - pos > 5:
            raise MqttWireError("remaining length longer than four bytes")
    end = i + length
    return end if end <= len(buf) else None


class MqttBatch:
    """``count`` PUBLISH frames whose sequence numbers (and packet ids) are rewritten in bulk."""

    __slots__ = ("buf", "count", "frame_len", "id_offset", "qos", "seq_offset")

    def __init__(self, topic: bytes, size: int, qos: int, count: int | None = None) -> None:
        frame = publish_frame(topic, size, qos)
        self.qos = qos
        self.frame_len: int = len(frame)
        if count is None:
            count = BATCH_TARGET_BYTES // self.frame_len
        self.count: int = max(1, min(count, MAX_WINDOW_FRAMES - 1))
        self.seq_offset: int = len(frame) - size
        self.id_offset: int = self.seq_offset - 2
        self.buf: bytearray = bytearray(frame * self.count)

    def set_first(self, first: int) -> bytearray:
        """Number the frames ``first .. first+count-1`` and return the buffer (not a copy)."""
        _scatter(self.buf, seq_columns(first, self.count), self.seq_offset, self.count, self.frame_len)
        if self.qos:
            hi, lo = _id_columns()
            start = first % ID_PERIOD
            cols = [hi[start : start + self.count], lo[start : start + self.count]]
            _scatter(self.buf, cols, self.id_offset, self.count, self.frame_len)
        return self.buf


class AckCounter:
    """A QoS 1 publisher's inbound stream: PUBACKs that must arrive in publish order, and PINGRESPs."""

    def __init__(self) -> None:
        self.acked = 0
        self.pingresps = 0
        self._buf = bytearray()
        self._decoder = mqtt.Decoder(server=False)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Consume received bytes. Raises MqttWireError on an out-of-order PUBACK or an unexpected packet."""
        buf = self._buf
        buf += data
        pos = 0
        table = _ack_table()
        while len(buf) - pos >= 2:
            k = min((len(buf) - pos) // PUBACK_LEN, ID_PERIOD)
            if k:
                start = (self.acked % ID_PERIOD) * PUBACK_LEN
                if buf.startswith(table[start : start + k * PUBACK_LEN], pos):
                    self.acked += k
                    pos += k * PUBACK_LEN
                    continue
            end = packet_end(buf, pos)
            if end is None:
                break
            packets = self._decoder.feed(bytes(buf[pos:end]))
            pos = end
            for p in packets:
                if isinstance(p, mqtt.Simple) and p.type == mqtt.PINGRESP:
                    self.pingresps += 1
                elif isinstance(p, mqtt.Ack) and p.type == mqtt.PUBACK:
                    want = packet_id(self.acked)
                    if p.packet_id != want:
                        raise MqttWireError(f"PUBACK {p.packet_id} out of order (expected {want})")
                    self.acked += 1
                else:
                    raise MqttWireError(f"unexpected packet from the broker: {p!r}"[:200])
        del buf[:pos]


class MqttVerifier:
    """A subscriber's inbound stream: PUBLISHes on one topic that must carry 0, 1, 2, ... in order.

    :meth:`feed` returns the PUBACKs to send (QoS 1) and counts PINGRESPs and SUBACKs; ``frames`` counts
    every benchmark message (duplicates included), which is what the publisher's credit window reads.
    """

    def __init__(self, topic: bytes, size: int, qos: int) -> None:
        self.topic = topic
        self.size = size
        self.qos = qos
        frame = publish_frame(topic, size, qos)
        self.first_byte = frame[0]
        self.frame_len = len(frame)
        self.seq_offset = len(frame) - size
        self.id_offset = self.seq_offset - 2
        self.window = max(1, min(MAX_WINDOW_FRAMES, MAX_WINDOW_BYTES // self.frame_len))
        template = bytearray(frame * self.window)
        if qos:
            _scatter(template, [bytes(self.window)] * 2, self.id_offset, self.window, self.frame_len)
        self.template = bytes(template)
        self._template_view = memoryview(self.template)
        self.tracker = SeqTracker()
        self.frames = 0
        self.slow_ops = 0
        self.pingresps = 0
        self.subacks: list[tuple[int, ...]] = []
        self.errors: list[str] = []
        self._buf = bytearray()
        self._decoder = mqtt.Decoder(server=False)

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Consume received bytes; returns the PUBACKs owed (empty at QoS 0). Raises MqttWireError."""
        buf = self._buf
        buf += data
        pos = 0
        acks: list[bytes] = []
        while True:
            avail = (len(buf) - pos) // self.frame_len
            if avail and buf[pos] == self.first_byte:
                good = self._fast(buf, pos, min(avail, self.window), acks)
                if good:
                    pos += good * self.frame_len
                    continue
            if len(buf) - pos < 2:
                break
            end = packet_end(buf, pos)
            if end is None:
                break
            packets = self._decoder.feed(bytes(buf[pos:end]))
            pos = end
            for p in packets:
                self.slow_ops += 1
                self._slow(p, acks)
        del buf[:pos]
        return b"".join(acks)

    def _fast(self, buf: bytearray, pos: int, k: int, acks: list[bytes]) -> int:
        """Verify up to ``k`` whole frames at ``pos`` in bulk; returns how many were consumed (0: none)."""
        flen = self.frame_len
        start = pos + self.seq_offset
        cols = _gather(buf, start, k, flen)
        zeros = bytes(k)
        _scatter(buf, [zeros] * SEQ_BYTES, start, k, flen)
        ids: list[bytes] = []
        if self.qos:
            span = (k - 1) * flen + 1
            at = pos + self.id_offset
            ids = [bytes(buf[at : at + span : flen]), bytes(buf[at + 1 : at + 1 + span : flen])]
            _scatter(buf, [zeros, zeros], at, k, flen)
        view = self._template_view
        if buf.startswith(view[: k * flen], pos):
            good = k
        else:
            _scatter(buf, cols, start, k, flen)  # put the numbers back for the slow path
            expected = bytearray(view[: k * flen])
            _scatter(expected, cols, self.seq_offset, k, flen)
            if self.qos:
                _scatter(buf, ids, pos + self.id_offset, k, flen)
                _scatter(expected, ids, self.id_offset, k, flen)
            good = matching_frames(buf, pos, expected, k, flen)  # the longest well-formed prefix
            cols = [c[:good] for c in cols]
            ids = [c[:good] for c in ids]
        if not good:
            return 0
        self.frames += good
        if cols == seq_columns(self.tracker.next, good):
            self.tracker.add_run(self.tracker.next, good)
        else:
            for i in range(good):
                self.tracker.add(int.from_bytes(bytes(c[i] for c in cols), "little"))
        if self.qos:
            out = bytearray(mqtt.encode_ack(mqtt.PUBACK, 0) * good)
            out[2::PUBACK_LEN] = ids[0]
            out[3::PUBACK_LEN] = ids[1]
            acks.append(bytes(out))
        return good

    def _slow(self, p: mqtt.Packet, acks: list[bytes]) -> None:
        if isinstance(p, mqtt.Publish):
            if p.qos:
                acks.append(mqtt.encode_ack(mqtt.PUBACK, p.packet_id))
            if p.topic != self.topic or len(p.payload) != self.size:
                self.errors.append(f"unexpected message on {p.topic!r} ({len(p.payload)} bytes)")
                return
            self.frames += 1
            self.tracker.add(int.from_bytes(p.payload[:SEQ_BYTES], "little"))
        elif isinstance(p, mqtt.Simple) and p.type == mqtt.PINGRESP:
            self.pingresps += 1
        elif isinstance(p, mqtt.SubAck):
            self.subacks.append(p.return_codes)
        else:
            raise MqttWireError(f"unexpected packet from the broker: {p!r}"[:200])
