"""MQTT 3.1.1 packets, sans-IO: a :class:`Decoder` fed bytes that yields packets, and encoder functions.

No sockets, no time, no asyncio: the listener (edge.mqtt) feeds what it reads and writes what the
encoders return. The decoder enforces the OASIS MQTT 3.1.1 rules whose violation the spec answers by
closing the network connection, raising :class:`MalformedPacket` (with the spec's rule number in the
text); the one case the spec answers with a CONNACK first (a protocol level other than 4: return code 1,
[MQTT-3.1.2-2]) and the client-id rules ([MQTT-3.1.3-8]: return code 2) raise :class:`ConnectRefused`
carrying the return code. What is a *session* rule (CONNECT must come first, only once) is the
connection's business, not the decoder's.

A decoder made with ``server=True`` accepts only what a client may send; ``server=False`` decodes what
a server sends (used by tests and the benchmark's client). Every buffer is bounded: a packet whose
remaining length exceeds ``max_packet`` is refused from its fixed header, before its body is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from edge.errors import EdgeError

# Packet types (the fixed header's high nibble).
CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

# CONNACK return codes [MQTT-3.2.2.3].
ACCEPTED: Final = 0
REFUSED_PROTOCOL_VERSION: Final = 1
REFUSED_IDENTIFIER: Final = 2
REFUSED_SERVER_UNAVAILABLE: Final = 3
REFUSED_BAD_CREDENTIALS: Final = 4
REFUSED_NOT_AUTHORIZED: Final = 5

SUBACK_FAILURE: Final = 0x80
PROTOCOL_NAME: Final = b"MQTT"
PROTOCOL_LEVEL: Final = 4
MAX_REMAINING_LENGTH: Final = 268_435_455  # four bytes of variable-length encoding [MQTT-2.2.3]
# A decoder remembers up to TOPIC_CACHE_MAX topic names of up to TOPIC_CACHE_LEN bytes as valid (its fast
# path): at most 16 KiB per connection, whatever a client sends.
TOPIC_CACHE_MAX: Final = 64
TOPIC_CACHE_LEN: Final = 256

_CLIENT_SENDS: Final = frozenset({CONNECT, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, UNSUBSCRIBE,
                                  PINGREQ, DISCONNECT})
_SERVER_SENDS: Final = frozenset({CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, PINGRESP})
# Fixed-header flags that are reserved and must be exactly these values [MQTT-2.2.2-1/2].
_FIXED_FLAGS: Final = {PUBREL: 2, SUBSCRIBE: 2, UNSUBSCRIBE: 2}


class MalformedPacket(EdgeError):
    """The spec says: close the network connection (no CONNACK, no will suppression)."""


class ConnectRefused(EdgeError):
    """A CONNECT the server answers with CONNACK ``return_code`` and then closes."""

    def __init__(self, return_code: int, text: str) -> None:
        super().__init__(text)
        self.return_code = return_code


@dataclass(frozen=True, slots=True)
class Will:
    topic: bytes
    payload: bytes
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Connect:
    client_id: str
    clean_session: bool
    keepalive: int  # seconds; 0 = none
    will: Will | None = None
    username: str | None = None
    password: bytes | None = None


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    return_code: int


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~2 us more per packet to build (hot path)
class Publish:
    topic: bytes  # UTF-8, validated; no wildcards when decoded from a client
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int = 0  # 0 for QoS 0


@dataclass(slots=True)  # not frozen, as Publish: built per acknowledged message
class Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK: a packet type and a packet id."""

    type: int
    packet_id: int


@dataclass(frozen=True, slots=True)
class Subscribe:
    packet_id: int
    filters: tuple[tuple[bytes, int], ...]  # (topic filter, requested QoS)


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    packet_id: int
    filters: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Simple:
    """PINGREQ, PINGRESP or DISCONNECT."""

    type: int


Packet = Connect | ConnAck | Publish | Ack | Subscribe | SubAck | Unsubscribe | Simple


class _Reader:
    """Reads the fields of one packet body; running past its end is a malformed packet."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self, what: str) -> int:
        if self.pos >= len(self.data):
            raise MalformedPacket(f"packet ends before its {what}")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u16(self, what: str) -> int:
        if self.pos + 2 > len(self.data):
            raise MalformedPacket(f"packet ends before its {what}")
        v = (self.data[self.pos] << 8) | self.data[self.pos + 1]
        self.pos += 2
        return v

    def binary(self, what: str) -> bytes:
        n = self.u16(what)
        if self.pos + n > len(self.data):
            raise MalformedPacket(f"{what} runs past the end of the packet")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def text(self, what: str) -> bytes:
        """A UTF-8 string field, returned as its bytes: well-formed, no U+0000 [MQTT-1.5.3-1/2]."""
        v = self.binary(what)
        check_utf8(v, what)
        return v

    def rest(self) -> bytes:
        v = self.data[self.pos:]
        self.pos = len(self.data)
        return v


def check_utf8(value: bytes, what: str) -> None:
    if b"\x00" in value:
        raise MalformedPacket(f"{what} contains U+0000 [MQTT-1.5.3-2]")
    if not value.isascii():
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket(f"{what} is not well-formed UTF-8 [MQTT-1.5.3-1]") from None


def _packet_id(r: _Reader) -> int:
    pid = r.u16("packet identifier")
    if pid == 0:
        raise MalformedPacket("packet identifier 0 [MQTT-2.3.1-1]")
    return pid


class Decoder:
    """Feed bytes, get whole packets. Raises :class:`MalformedPacket` or :class:`ConnectRefused`; after
    an exception the decoder is unusable (the connection closes)."""

    def __init__(self, *, server: bool = True, max_packet: int = MAX_REMAINING_LENGTH) -> None:
        self.allowed = _CLIENT_SENDS if server else _SERVER_SENDS
        self.max_packet = min(max_packet, MAX_REMAINING_LENGTH)
        self._buf = bytearray()
        # Topic names already checked by the full decode (UTF-8, no U+0000, and for a server no
        # wildcard and not empty): a PUBLISH to one of them takes the fast path in :meth:`feed`.
        # Bounded (TOPIC_CACHE_MAX); cleared when full (a device publishes to a handful of topics).
        self._topics: set[bytes] = set()
        # First bytes of the acks this direction may carry, with their required flags (fast path).
        self._acks = frozenset((t << 4) | _FIXED_FLAGS.get(t, 0) for t in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK)
                               if t in self.allowed)

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Packet]:
        buf = self._buf
        buf += data
        out: list[Packet] = []
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            first = buf[pos]
            # Remaining length: 1-4 bytes, 7 bits each, high bit = more [MQTT-2.2.3].
            length = 0
            shift = 0
            i = pos + 1
            while True:
                if i >= n:
                    if i - pos - 1 >= 4:
                        raise MalformedPacket("remaining length longer than four bytes")
                    length = -1  # incomplete header
                    break
                b = buf[i]
                length |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
                if i - pos - 1 >= 4:
                    raise MalformedPacket("remaining length longer than four bytes")
            if length < 0:
                break
            if length > self.max_packet:
                raise MalformedPacket(f"packet of {length} bytes exceeds the limit of {self.max_packet}")
            if n - i < length:
                break
            pos = i + length
            if length == 2 and first in self._acks:  # PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK
                pid = (buf[i] << 8) | buf[i + 1]
                if pid:
                    out.append(Ack(first >> 4, pid))
                    continue
            elif first >> 4 == PUBLISH and length >= 2:
                # The fast path: a PUBLISH to a known topic, sliced straight from the buffer. Anything
                # else (QoS 3, a new topic, a field past the end) takes the full decode and its errors.
                end = i + 2 + ((buf[i] << 8) | buf[i + 1])
                qos = (first >> 1) & 3
                start = end + 2 if qos else end
                if qos != 3 and start <= pos:
                    topic = bytes(buf[i + 2:end])
                    if topic in self._topics:
                        pid = ((buf[end] << 8) | buf[end + 1]) if qos else 0
                        if pid or not qos:
                            out.append(Publish(topic, bytes(buf[start:pos]), qos, bool(first & 1),
                                               bool(first & 8), pid))
                            continue
            packet = self._decode(first >> 4, first & 0x0F, bytes(buf[i:pos]))
            if type(packet) is Publish and len(packet.topic) <= TOPIC_CACHE_LEN:
                if len(self._topics) >= TOPIC_CACHE_MAX:
                    self._topics.clear()
                self._topics.add(packet.topic)
            out.append(packet)
        if pos:
            del buf[:pos]
        return out

    def _decode(self, ptype: int, flags: int, body: bytes) -> Packet:
        if ptype not in self.allowed:
            raise MalformedPacket(f"packet type {ptype} is not allowed in this direction")
        expected = _FIXED_FLAGS.get(ptype, 0)
        if ptype != PUBLISH and flags != expected:
            raise MalformedPacket(f"packet type {ptype} with reserved flags {flags:#x} [MQTT-2.2.2-2]")
        r = _Reader(body)
        if ptype == PUBLISH:
            return _publish(r, flags, strict=self.allowed is _CLIENT_SENDS)
        if ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK):
            if len(body) != 2:
                raise MalformedPacket(f"packet type {ptype} with remaining length {len(body)}, expected 2")
            return Ack(ptype, _packet_id(r))
        if ptype == CONNECT:
            return _connect(r)
        if ptype == SUBSCRIBE:
            return _subscribe(r)
        if ptype == UNSUBSCRIBE:
            pid = _packet_id(r)
            filters = []
            while r.left():
                f = r.text("topic filter")
                if not f:
                    raise MalformedPacket("empty topic filter [MQTT-4.7.3-1]")
                filters.append(f)
            if not filters:
                raise MalformedPacket("UNSUBSCRIBE without a topic filter [MQTT-3.10.3-2]")
            return Unsubscribe(pid, tuple(filters))
        if ptype == CONNACK:
            if len(body) != 2 or body[0] & 0xFE:
                raise MalformedPacket("malformed CONNACK")
            return ConnAck(bool(body[0] & 1), body[1])
        if ptype == SUBACK:
            pid = _packet_id(r)
            codes = tuple(r.rest())
            if not codes or any(c not in (0, 1, 2, SUBACK_FAILURE) for c in codes):
                raise MalformedPacket("malformed SUBACK")
            return SubAck(pid, codes)
        # PINGREQ, PINGRESP, DISCONNECT have no variable header or payload.
        if body:
            raise MalformedPacket(f"packet type {ptype} with a non-zero remaining length")
        return Simple(ptype)


def _publish(r: _Reader, flags: int, *, strict: bool) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    topic = r.text("topic name")
    if strict:
        if not topic:
            raise MalformedPacket("empty topic name [MQTT-4.7.3-1]")
        if b"+" in topic or b"#" in topic:
            raise MalformedPacket("wildcard in a topic name [MQTT-3.3.2-2]")
    pid = _packet_id(r) if qos else 0
    return Publish(topic, r.rest(), qos, bool(flags & 1), bool(flags & 8), pid)


def _connect(r: _Reader) -> Connect:
    name = r.binary("protocol name")
    if name != PROTOCOL_NAME:
        # [MQTT-3.1.2-1]: not "MQTT" (e.g. MQIsdp of 3.1): close without CONNACK.
        raise MalformedPacket(f"protocol name {name!r}, expected 'MQTT' [MQTT-3.1.2-1]")
    level = r.byte("protocol level")
    if level != PROTOCOL_LEVEL:
        raise ConnectRefused(REFUSED_PROTOCOL_VERSION, f"protocol level {level}, only 4 (3.1.1) is supported")
    flags = r.byte("connect flags")
    if flags & 0x01:
        raise MalformedPacket("CONNECT reserved flag set [MQTT-3.1.2-3]")
    will_flag = bool(flags & 0x04)
    will_qos = (flags >> 3) & 3
    will_retain = bool(flags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket("will QoS/retain without the will flag [MQTT-3.1.2-13/15]")
    if will_qos == 3:
        raise MalformedPacket("will QoS 3 [MQTT-3.1.2-14]")
    has_user = bool(flags & 0x80)
    has_password = bool(flags & 0x40)
    if has_password and not has_user:
        raise MalformedPacket("password flag without the user name flag [MQTT-3.1.2-22]")
    keepalive = r.u16("keep alive")
    client_id = r.text("client identifier")
    clean = bool(flags & 0x02)
    will = None
    if will_flag:
        topic = r.text("will topic")
        if not topic or b"+" in topic or b"#" in topic:
            raise MalformedPacket("will topic empty or with a wildcard [MQTT-3.1.2-9]")
        will = Will(topic, r.binary("will message"), will_qos, will_retain)
    username = r.text("user name").decode() if has_user else None
    password = r.binary("password") if has_password else None
    if r.left():
        raise MalformedPacket("bytes after the CONNECT payload")
    if not client_id and not clean:
        raise ConnectRefused(REFUSED_IDENTIFIER, "zero-length client id needs clean session [MQTT-3.1.3-8]")
    return Connect(client_id.decode(), clean, keepalive, will, username, password)


def _subscribe(r: _Reader) -> Subscribe:
    pid = _packet_id(r)
    filters = []
    while r.left():
        f = r.text("topic filter")
        if not f:
            raise MalformedPacket("empty topic filter [MQTT-4.7.3-1]")
        qos = r.byte("requested QoS")
        if qos > 2:
            raise MalformedPacket(f"requested QoS byte {qos:#x} [MQTT-3.8.3-4]")
        filters.append((f, qos))
    if not filters:
        raise MalformedPacket("SUBSCRIBE without a topic filter [MQTT-3.8.3-3]")
    return Subscribe(pid, tuple(filters))


# -- encoders -------------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _str(value: bytes) -> bytes:
    return len(value).to_bytes(2, "big") + value


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


def encode_connack(session_present: bool, return_code: int) -> bytes:
    return bytes((CONNACK << 4, 2, 1 if session_present else 0, return_code))


def encode_publish(topic: bytes, payload: bytes, qos: int = 0, *, retain: bool = False, dup: bool = False,
                   packet_id: int = 0) -> bytes:
    first = (PUBLISH << 4) | (qos << 1) | (8 if dup else 0) | (1 if retain else 0)
    head = len(topic).to_bytes(2, "big") + topic  # _str, inline: this is the hot path of every delivery
    if qos:
        head += packet_id.to_bytes(2, "big")
    n = len(head) + len(payload)
    if n < 128:  # the common small message: no helper calls
        return bytes((first, n)) + head + payload
    return bytes((first,)) + _length(n) + head + payload


def encode_ack(ptype: int, packet_id: int) -> bytes:
    """PUBACK, PUBREC, PUBREL (flags 2), PUBCOMP or UNSUBACK."""
    return bytes(((ptype << 4) | _FIXED_FLAGS.get(ptype, 0), 2)) + packet_id.to_bytes(2, "big")


def encode_suback(packet_id: int, return_codes: tuple[int, ...] | list[int]) -> bytes:
    return _packet(SUBACK << 4, packet_id.to_bytes(2, "big") + bytes(return_codes))


PINGREQ_BYTES: Final = bytes((PINGREQ << 4, 0))
PINGRESP_BYTES: Final = bytes((PINGRESP << 4, 0))
DISCONNECT_BYTES: Final = bytes((DISCONNECT << 4, 0))


def encode_connect(c: Connect, *, level: int = PROTOCOL_LEVEL) -> bytes:
    """A client's CONNECT (tests, the benchmark's client)."""
    flags = 0x02 if c.clean_session else 0
    payload = _str(c.client_id.encode())
    if c.will is not None:
        flags |= 0x04 | (c.will.qos << 3) | (0x20 if c.will.retain else 0)
        payload += _str(c.will.topic) + _str(c.will.payload)
    if c.username is not None:
        flags |= 0x80
        payload += _str(c.username.encode())
    if c.password is not None:
        flags |= 0x40
        payload += _str(c.password)
    head = _str(PROTOCOL_NAME) + bytes((level, flags)) + c.keepalive.to_bytes(2, "big")
    return _packet(CONNECT << 4, head + payload)


def encode_subscribe(packet_id: int, filters: list[tuple[bytes, int]] | tuple[tuple[bytes, int], ...]) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"".join(_str(f) + bytes((q,)) for f, q in filters)
    return _packet((SUBSCRIBE << 4) | 2, body)


def encode_unsubscribe(packet_id: int, filters: list[bytes] | tuple[bytes, ...]) -> bytes:
    return _packet((UNSUBSCRIBE << 4) | 2, packet_id.to_bytes(2, "big") + b"".join(_str(f) for f in filters))


def encode(packet: Packet) -> bytes:
    """Any packet as bytes (the inverse of :meth:`Decoder.feed`, for tests and the benchmark)."""
    if isinstance(packet, Publish):
        return encode_publish(packet.topic, packet.payload, packet.qos, retain=packet.retain, dup=packet.dup,
                              packet_id=packet.packet_id)
    if isinstance(packet, Ack):
        return encode_ack(packet.type, packet.packet_id)
    if isinstance(packet, Connect):
        return encode_connect(packet)
    if isinstance(packet, ConnAck):
        return encode_connack(packet.session_present, packet.return_code)
    if isinstance(packet, Subscribe):
        return encode_subscribe(packet.packet_id, packet.filters)
    if isinstance(packet, SubAck):
        return encode_suback(packet.packet_id, packet.return_codes)
    if isinstance(packet, Unsubscribe):
        return encode_unsubscribe(packet.packet_id, packet.filters)
    return bytes((packet.type << 4, 0))
