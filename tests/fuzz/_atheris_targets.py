"""atheris fuzz targets for the byte-facing decoders, and their seed corpora.

Run one target in a child process (atheris takes over the interpreter's tracing and exits the process
when it is done)::

    python -m tests.fuzz._atheris_targets <target> [libFuzzer flags] [corpus dir]

Each ``make_<target>()`` imports the project code it exercises, so the caller can wrap it in
``atheris.instrument_imports()``, and returns the one-input test function. That function lets out
only what the module's contract allows for malformed input and asserts the module's documented
invariants (bounds on buffered bytes, counter identities, round trips); anything else escaping is a
finding. ``seeds(target)`` builds a few valid inputs with the project's own encoders.

Input layout for the stream decoders: byte 0 seeds the split of the rest into ``feed()`` chunks of
1..97 bytes, so a seed is ``bytes([k]) + wire_bytes`` and mutations keep most of the wire bytes intact.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any

TestOneInput = Callable[[bytes], None]

# Small limits, so the fuzzer reaches them with inputs of a few KiB.
MAX_CONTROL_LINE = 256
LEAF_MAX_CONTROL_LINE = 16  # x16 on a leaf link (LEAF_CONTROL_LINE_FACTOR): 256
MAX_PAYLOAD = 1024
FRAME_MAX_PAYLOAD = 64
MQTT_MAX_PACKET = 2048


def _chunks(data: bytes) -> Iterator[bytes]:
    """Split ``data[1:]`` into chunks of 1..97 bytes, the sizes drawn from a PRNG seeded by ``data[0]``."""
    if not data:
        return
    rng = random.Random(data[0])
    pos, n = 1, len(data)
    while pos < n:
        step = rng.randint(1, 97)
        yield data[pos : pos + step]
        pos += step


class _Sink:
    """A parser handler that accepts every op and checks what the parser hands it."""

    def __init__(self, max_payload: int) -> None:
        self.max_payload = max_payload

    def _payload(self, payload: Any, header_len: int = 0) -> None:
        assert isinstance(payload, bytes), type(payload)
        assert len(payload) <= self.max_payload, (len(payload), self.max_payload)
        assert 0 <= header_len <= len(payload), (header_len, len(payload))

    def on_pub(self, subject: bytes, reply: bytes | None, payload: bytes) -> None:
        self._payload(payload)

    def on_hpub(self, subject: bytes, reply: bytes | None, header_len: int, data: bytes) -> None:
        self._payload(data, header_len)

    def on_lmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], payload: bytes) -> None:
        self._payload(payload)

    def on_lhmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], header_len: int, data: bytes) -> None:
        self._payload(data, header_len)

    def on_connect(self, options: dict[str, Any], raw: bytes = b"") -> None:
        assert isinstance(options, dict)

    def on_info(self, options: dict[str, Any]) -> None:
        assert isinstance(options, dict)

    def __getattr__(self, name: str) -> Callable[..., None]:
        # on_sub, on_unsub, on_ls_plus, on_ls_minus, on_ping, on_pong, on_ok, on_err
        if not name.startswith("on_"):
            raise AttributeError(name)
        return lambda *args: None


def _make_parser(kind: str, max_control_line: int) -> TestOneInput:
    from edge.protocol.errors import ProtocolError
    from edge.protocol.parser import Parser

    def one(data: bytes) -> None:
        p = Parser(_Sink(MAX_PAYLOAD), kind=kind, max_control_line=max_control_line, max_payload=MAX_PAYLOAD)
        # Documented bound (parser.py): never more than max_control_line + max_payload + 2 bytes of a
        # partial op; p.max_control_line already includes the x16 of a leaf link.
        bound = p.max_control_line + p.max_payload + 2
        for chunk in _chunks(data):
            try:
                p.feed(chunk)
            except ProtocolError:
                return  # the connection is closed: nothing more is fed
            assert p.buffered <= bound, (p.buffered, bound)

    return one


def make_client() -> TestOneInput:
    return _make_parser("client", MAX_CONTROL_LINE)


def make_leaf() -> TestOneInput:
    return _make_parser("leaf", LEAF_MAX_CONTROL_LINE)


def make_frames() -> TestOneInput:
    from firmware_bridge.frames import FrameDecoder, encode_frame

    def one(data: bytes) -> None:
        dec = FrameDecoder(max_payload=FRAME_MAX_PAYLOAD)
        for chunk in _chunks(data):
            # Contract: feed() never raises on bad input.
            for payload in dec.feed(chunk):
                assert isinstance(payload, bytes)
                assert len(payload) <= dec.max_payload, (len(payload), dec.max_payload)
            assert dec.pending <= dec.max_encoded, (dec.pending, dec.max_encoded)
        c = dec.counters()
        assert c["frames_bad"] == c["cobs_errors"] + c["crc_errors"] + c["too_short"] + c["overflows"], c
        # Resynchronisation: after any noise, a delimiter then a good frame yields that frame's payload.
        probe = data[-FRAME_MAX_PAYLOAD:]
        out = dec.feed(b"\x00" + encode_frame(probe))
        assert out and out[-1] == probe, (out, probe)
        assert dec.pending == 0, dec.pending

    return one


def make_cobs() -> TestOneInput:
    from firmware_bridge.cobs import CobsDecodeError, cobs_decode, cobs_encode

    def one(data: bytes) -> None:
        try:
            cobs_decode(data)
        except CobsDecodeError:
            pass
        enc = cobs_encode(data)
        assert 0 not in enc
        assert len(enc) <= len(data) + len(data) // 254 + 1, (len(enc), len(data))
        assert cobs_decode(enc) == data

    return one


def make_record() -> TestOneInput:
    from edge.store.record import encode_record, scan_index, scan_records

    def fix_crcs(buf: bytearray, pos: int) -> None:
        # The fuzzer cannot forge a CRC-32: rewrite each frame's, so that it gets past the check.
        while pos + 8 <= len(buf):
            length = int.from_bytes(buf[pos + 4 : pos + 8], "little")
            end = pos + 8 + length
            if length < 24 or end > len(buf):
                return
            buf[pos : pos + 4] = zlib.crc32(buf[pos + 4 : end]).to_bytes(4, "little")
            pos = end

    def one(data: bytes) -> None:
        # Byte 0: bit 7 sets max_records (bits 0-2), bit 6 an offset (bits 0-4), bit 5 fixes up the CRCs.
        if not data:
            return
        flags, buf = data[0], data[1:]
        n = len(buf)
        offset = min(flags & 0x1F, n) if flags & 0x40 else 0
        max_records = (flags & 0x07) if flags & 0x80 else None
        if flags & 0x20:
            fixed = bytearray(buf)
            fix_crcs(fixed, offset)
            buf = bytes(fixed)
        # Contract: never raises on any content of buf.
        recs, end, err = scan_records(buf, offset, max_records)
        assert offset <= end <= n, (offset, end, n)
        if err is None:
            assert end == n or (max_records is not None and len(recs) == max_records), (end, n, len(recs))
        else:
            assert err.offset == end and err.kind in ("truncated", "corrupt"), err
        # What was decoded re-encodes to exactly the bytes it came from.
        again = b"".join(encode_record(r.seq, r.ts_ns, r.subject, r.reply, r.headers, r.payload) for r in recs)
        assert again == buf[offset:end]
        if max_records is None:
            infos, iend, ierr = scan_index(buf, offset)
            assert (iend, ierr) == (end, err), (iend, ierr, end, err)
            assert [(i.seq, i.ts_ns) for i in infos] == [(r.seq, r.ts_ns) for r in recs]

    return one


def make_mqtt() -> TestOneInput:
    from edge.protocol.mqtt import ConnectRefused, Decoder, MalformedPacket, Publish, encode_publish

    def one(data: bytes) -> None:
        dec = Decoder(server=True, max_packet=MQTT_MAX_PACKET)
        try:
            for chunk in _chunks(data):
                # Contract: feed() returns packets or raises MalformedPacket/ConnectRefused, nothing else.
                for pkt in dec.feed(chunk):
                    if isinstance(pkt, Publish):
                        assert len(pkt.payload) <= MQTT_MAX_PACKET
                        # A decoded PUBLISH re-encodes to a packet that decodes to the same PUBLISH.
                        again = Decoder(server=True).feed(encode_publish(
                            pkt.topic, pkt.payload, pkt.qos, retain=pkt.retain, dup=pkt.dup, packet_id=pkt.packet_id))
                        assert again == [pkt], (again, pkt)
                # The decoder holds at most one incomplete packet: header (5) + the largest body allowed.
                assert dec.buffered <= MQTT_MAX_PACKET + 5 + 97, dec.buffered
        except (MalformedPacket, ConnectRefused):
            pass

    return one


TARGETS: dict[str, Callable[[], TestOneInput]] = {
    "client": make_client,
    "leaf": make_leaf,
    "frames": make_frames,
    "cobs": make_cobs,
    "record": make_record,
    "mqtt": make_mqtt,
}


def seeds(target: str) -> list[bytes]:
    """A few valid inputs for ``target``, built with the project's own encoders."""
    if target == "client":
        from firmware_bridge.nats import PING, encode_connect, encode_pub, encode_sub, encode_unsub

        return [
            b"\x07" + encode_connect(name="dev1") + PING,
            b"\x11" + encode_pub("sensors.t1", b"21.5") + encode_pub("svc.x", b"", reply="_INBOX.1"),
            b"\x2a" + encode_sub("a.*", 1, queue="q") + encode_unsub(1, 5) + encode_sub("b.>", 2),
            b"\x05HPUB a 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            b"\x3c" + encode_pub("big", bytes(range(256)) * 3 + b"z" * 250, reply="r" * 200),  # near both limits
        ]
    if target == "leaf":
        from edge.protocol.encode import encode_lmsg, encode_ls_minus, encode_ls_plus

        big = b"NATS/1.0\r\n\r\n" + b"p" * 1000  # near max_payload
        msgs = b"".join((
            encode_lmsg(b"a.b", None, [], 0, b"hello"),
            encode_lmsg(b"a.c", b"_INBOX.x", [], 12, b"NATS/1.0\r\n\r\nhi"),
            encode_lmsg(b"q.s", b"_INBOX.y", [b"g1", b"g2"], 0, b"x"),
            encode_lmsg(b"q.t", None, [b"g1"], 12, b"NATS/1.0\r\n\r\nhi"),
            encode_lmsg(b"big", b"r" * 100, [b"q" * 100], 12, big),
        ))
        return [
            b'\x03INFO {"server_id":"hub","headers":true}\r\nPING\r\n',
            b"\x13" + encode_ls_plus(b"a.*", None, 1) + encode_ls_plus(b"w.>", b"q", 3)
            + encode_ls_minus(b"w.>", b"q"),
            b"\x21" + msgs,
        ]
    if target in ("frames", "cobs"):
        from firmware_bridge.frames import encode_frame
        from firmware_bridge.nats import encode_pub

        pub = encode_pub("s.t", b"42")
        if target == "cobs":
            return [bytes(range(256)), pub, b"\x00" * 3]
        return [
            b"\x01" + encode_frame(pub) + encode_frame(b"PING\r\n"),
            b"\x09\x00" + encode_frame(b"") + b"noise" + b"\x00" + encode_frame(bytes(range(60))),
        ]
    if target == "record":
        from edge.store.record import encode_record

        r1 = encode_record(1, 1_700_000_000_000_000_000, b"sensors.t1", b"", b"", b"21.5")
        r2 = encode_record(2, 1_700_000_000_000_000_001, b"a", b"_INBOX.1", b"NATS/1.0\r\nK: v\r\n\r\n", b"x" * 40)
        return [b"\x00" + r1 + r2, b"\x00" + r1 + r2[:-3], b"\x81" + r1 + r2, b"\x20" + r2 + r1]
    if target == "mqtt":
        from edge.protocol.mqtt import (
            Connect,
            encode_connect,
            encode_publish,
            encode_subscribe,
            encode_unsubscribe,
        )

        hello = encode_connect(Connect("dev-1", True, 30, username="u", password=b"p"))
        return [
            b"\x05" + hello + encode_subscribe(1, [(b"home/#", 1), (b"a/+/b", 0)]) + b"\xc0\x00",
            b"\x0b" + hello + encode_publish(b"home/kitchen/temp", b"21.5", 1, packet_id=7)
            + encode_publish(b"r", b"x" * 1500, 0, retain=True) + encode_unsubscribe(2, [b"home/#"]) + b"\xe0\x00",
        ]
    raise KeyError(target)


def main(argv: list[str]) -> None:
    import atheris

    target = argv[1]
    with atheris.instrument_imports(include=["edge", "firmware_bridge"]):
        one = TARGETS[target]()
    atheris.Setup([argv[0], *argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
