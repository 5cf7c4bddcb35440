"""The MicroPython client under CPython, byte for byte against the Python codecs.

An in-memory fake UART stands in for machine.UART; real pty tests come with the serial adapter.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.cobs import cobs_encode
from firmware_bridge.crc16 import crc16_ccitt_false
from firmware_bridge.frames import FrameDecoder, encode_frame
from firmware_bridge.micropython import nats_serial as mp
from firmware_bridge.nats import encode_connect, encode_pub, encode_sub, encode_unsub
from tests.unit.fw.split import bytewise, cut, split_points


class FakeUart:
    """machine.UART's any()/read(n)/write(b); rx is what the gateway sent, tx what the device wrote."""

    def __init__(self) -> None:
        self.rx = bytearray()
        self.tx = bytearray()
        self.responder = None

    def any(self) -> int:
        return len(self.rx)

    def read(self, n: int) -> bytes | None:
        data = bytes(self.rx[:n])
        del self.rx[:n]
        return data or None

    def write(self, data: bytes) -> int:
        self.tx += data
        if self.responder is not None:
            self.responder(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.tx)
        self.tx.clear()
        return out


class Clock:
    def __init__(self) -> None:
        self.now = 1000

    def __call__(self) -> int:
        self.now += 7  # every look at the clock advances it: request() loops terminate without sleeping
        return self.now


def client(mode: str) -> tuple[mp.NatsSerial, FakeUart]:
    uart = FakeUart()
    return mp.NatsSerial(uart, mode=mode, inbox="_INBOX.t", clock=Clock()), uart


def wire(mode: str, ops: bytes | list[bytes]) -> bytes:
    ops = [ops] if isinstance(ops, bytes) else ops
    return b"".join(encode_frame(o) if mode == "frames" else o for o in ops)


@given(st.binary(max_size=700))
def test_crc_and_cobs_match_python_codecs(data: bytes) -> None:
    assert mp.crc16(data) == crc16_ccitt_false(data)
    assert mp.cobs_encode(data) == cobs_encode(data)
    assert mp.cobs_decode(mp.cobs_encode(data)) == data
    assert mp.encode_frame(data) == encode_frame(data)


@pytest.mark.parametrize("mode", ["nats", "frames"])
def test_outgoing_ops_are_byte_exact(mode: str) -> None:
    nc, uart = client(mode)
    nc.connect("node7")
    nc.publish("sensors.node7.t", b"21.5")
    nc.publish("svc", "text", reply="r.1")
    sid = nc.subscribe("cmd.>", lambda m: None)
    sid2 = nc.subscribe("work", lambda m: None, queue="q")
    nc.unsubscribe(sid2, 5)
    nc.unsubscribe(sid)
    expected = [
        encode_connect("node7", lang="micropython"),
        encode_pub("sensors.node7.t", b"21.5"),
        encode_pub("svc", b"text", reply="r.1"),
        encode_sub("cmd.>", 1),
        encode_sub("work", 2, queue="q"),
        encode_unsub(2, 5),
        encode_unsub(1),
    ]
    assert uart.take() == wire(mode, expected)
    if mode == "frames":
        assert FrameDecoder().feed(wire(mode, expected)) == expected


def test_connect_json_escaping_matches_json_module() -> None:
    nc, uart = client("nats")
    name = 'a"b\\c\n\x01é\U0001f600'
    nc.connect(name)
    assert uart.take() == encode_connect(name, lang="micropython")


INCOMING = [
    b'INFO {"server_id":"x","max_payload":1048576} \r\n',
    b"PING\r\n",
    b"MSG cmd.led 1 _INBOX.gw.1 2\r\non\r\n",
    b"+OK\r\n",
    b"HMSG cmd.led 1 12 15\r\nNATS/1.0\r\n\r\noff\r\n",
    b"MSG other 99 1\r\nx\r\n",  # unknown sid: ignored
    b"-ERR 'Permissions Violation for Publish to \"x\"'\r\n",
]


@pytest.mark.parametrize("mode", ["nats", "frames"])
@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_incoming_msgs_ping_and_replies(mode: str, how: str) -> None:
    nc, uart = client(mode)
    got = []

    def on_cmd(msg: mp.Msg) -> None:
        got.append((msg.subject, msg.sid, msg.reply, msg.data))
        msg.respond(b"ok:" + msg.data)

    assert nc.subscribe("cmd.>", on_cmd) == 1
    uart.take()
    data = wire(mode, INCOMING)
    handled = 0
    for chunk in [data] if how == "whole" else bytewise(data):
        uart.rx += chunk
        handled += nc.poll()
    assert handled == 2 and nc.msgs_in == 2
    assert got == [("cmd.led", 1, "_INBOX.gw.1", b"on"), ("cmd.led", 1, None, b"off")]
    assert uart.take() == wire(mode, [b"PONG\r\n", encode_pub("_INBOX.gw.1", b"ok:on")])
    assert nc.errors == 1 and nc.last_error == 'Permissions Violation for Publish to "x"'
    assert (nc.overflows, nc.lines_bad, nc.frames_bad) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["nats", "frames"])
def test_request_gets_its_reply(mode: str) -> None:
    nc, uart = client(mode)

    def gateway(written: bytes) -> None:
        # Answer the PUB carrying a reply subject, as a responder behind the gateway would.
        if b"PUB svc.time _INBOX.t.1 3" in written:
            uart.rx += wire(mode, [b"MSG other.sub 5 1\r\nz\r\n", b"MSG _INBOX.t.1 1 5\r\n12:00\r\n"])

    uart.responder = gateway
    assert nc.request("svc.time", b"now", timeout_ms=500) == b"12:00"
    assert uart.take() == wire(mode, [encode_sub("_INBOX.t.*", 1), encode_pub("svc.time", b"now", "_INBOX.t.1")])
    uart.responder = None
    assert nc.request("svc.time", b"now", timeout_ms=50) is None  # nobody answers: times out
    assert uart.take() == wire(mode, encode_pub("svc.time", b"now", "_INBOX.t.2"))
    uart.rx += wire(mode, b"MSG _INBOX.t.2 1 4\r\nlate\r\n")
    assert nc.poll() == 1 and nc._replies == {}  # a late reply is dropped


def test_limits_and_garbage_are_counted() -> None:
    nc, uart = client("nats")
    nc.max_line, nc.max_payload = 40, 8
    got = []
    nc.subscribe("a", lambda m: got.append(m.data))
    uart.rx += b"X" * 100 + b"\r\nMSG a 1 20\r\n" + b"y" * 20 + b"\r\nBOGUS\r\nMSG a 1 zz\r\nMSG a 1 2\r\nok\r\n"
    nc.poll()
    assert got == [b"ok"]
    assert (nc.overflows, nc.lines_bad) == (2, 2)

    fnc, fuart = client("frames")
    fgot = []
    fnc.subscribe("a", lambda m: fgot.append(m.data))
    bad = bytearray(encode_frame(b"MSG a 1 1\r\nx\r\n"))
    bad[2] ^= 0xFF
    fuart.rx += b"\x00\x05ab\x00" + bytes(bad) + encode_frame(b"MSG a 1 2\r\nok\r\n")
    fnc.poll()
    assert fgot == [b"ok"] and fnc.frames_bad == 2


@given(st.binary(max_size=600), split_points, st.sampled_from(["nats", "frames"]))
def test_garbage_never_raises(garbage: bytes, points: list[int], mode: str) -> None:
    nc, _uart = client(mode)
    nc.subscribe("a", lambda m: None)
    for chunk in cut(garbage, points):
        nc.feed(chunk)
    assert len(nc._buf) <= nc.max_line + nc.max_payload + 2
    nc.feed(wire(mode, b"\r\n"))


def test_bad_arguments() -> None:
    nc, _ = client("nats")
    with pytest.raises(ValueError, match="subject"):
        nc.publish("a b", b"")
    with pytest.raises(ValueError, match="mode"):
        mp.NatsSerial(FakeUart(), mode="x")
