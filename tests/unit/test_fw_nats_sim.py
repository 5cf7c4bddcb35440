"""Device-side NATS encoders, the server-op parser, and the simulator."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_bridge.codecs import get_codec
from firmware_bridge.frames import FrameDecoder, encode_frame
from firmware_bridge.nats import (
    Err,
    Info,
    Msg,
    Ok,
    Ping,
    Pong,
    ServerOpParser,
    encode_connect,
    encode_pub,
    encode_sub,
    encode_unsub,
)
from firmware_bridge.readings import Reading
from firmware_bridge.simulator import Simulator
from tests.unit.fw.split import cut, split_points, ways


def test_encoders() -> None:
    assert encode_pub("ok.a", b"hi") == b"PUB ok.a 2\r\nhi\r\n"
    assert encode_pub("svc", b"", reply="_INBOX.x.1") == b"PUB svc _INBOX.x.1 0\r\n\r\n"
    assert encode_sub("cmd.>", 3) == b"SUB cmd.> 3\r\n"
    assert encode_sub("w", 4, queue="q") == b"SUB w q 4\r\n"
    assert encode_unsub(4) == b"UNSUB 4\r\n" and encode_unsub(4, 2) == b"UNSUB 4 2\r\n"
    assert encode_connect("dev1") == (
        b'CONNECT {"verbose":false,"pedantic":false,"name":"dev1","lang":"c","version":"0.1.0","protocol":1}\r\n'
    )
    for bad in ("", "a b", "a\r\n"):
        with pytest.raises(ValueError, match="subject"):
            encode_pub(bad, b"")


SERVER = (
    b'INFO {"server_id":"x","headers":true} \r\n'
    b"+OK\r\nPING\r\npong\r\n"
    b"MSG cmd.x 1 2\r\nhi\r\n"
    b"MSG\tcmd.y  7 re.1 3\nabc\r\n"
    b"HMSG h.x 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    b"MSG bad 1 x\r\n"
    b"NOPE\r\n"
    b"MSG a 1 2\r\nhiX\r\n"  # payload not followed by CRLF; the parser resyncs after the payload
    b"-ERR 'Stale Connection'\r\n"
)


def test_server_op_parser_every_way() -> None:
    expected = [
        Info('{"server_id":"x","headers":true}'),
        Ok(),
        Ping(),
        Pong(),
        Msg("cmd.x", 1, None, b"hi"),
        Msg("cmd.y", 7, "re.1", b"abc"),
        Msg("h.x", 2, None, b"hi", b"NATS/1.0\r\n\r\n"),
        Err("Stale Connection"),
    ]
    for chunks in ways(SERVER):
        p = ServerOpParser()
        assert [op for c in chunks for op in p.feed(c)] == expected
        assert (p.ops_ok, p.lines_bad, p.overflows) == (8, 4, 0)


def test_server_op_parser_limits() -> None:
    p = ServerOpParser(max_control_line=20, max_payload=4)
    ops = p.feed(b"X" * 50 + b"\r\nMSG a 1 10\r\n0123456789\r\nPING\r\n")
    assert ops == [Ping()] and p.overflows == 2


@given(st.binary(max_size=500), split_points)
def test_server_op_parser_garbage(garbage: bytes, points: list[int]) -> None:
    p = ServerOpParser(max_control_line=64, max_payload=64)
    for chunk in cut(garbage, points):
        p.feed(chunk)
    assert len(p._buf) <= 64 + 64 + 2 + 64


@pytest.mark.parametrize("codec", ["nats", "frames", "jsonl", "nmea", "lines"])
def test_simulator_output_decodes_with_its_codec(codec: str) -> None:
    sim = Simulator(codec, device="sim1", seed=42)  # type: ignore[arg-type]
    dec = get_codec(codec, sim.codec_options())
    out = []
    for i in range(20):
        out.extend(dec.feed(sim.next_chunk(1_790_000_000 + 5 * i)))
    counters = dec.counters()
    assert counters.get("lines_bad", 0) == 0 and counters.get("frames_bad", 0) == 0
    assert counters["bytes_dropped"] == 0
    if codec in ("jsonl", "lines"):
        assert len(out) == 80 and all(isinstance(r, Reading) for r in out)
        temps = [r.value for r in out if r.channel == "temperature"]
        assert all(isinstance(t, float) and 15 < t < 27 for t in temps)
        batt = [r.value for r in out if r.channel == "battery"]
        assert batt == sorted(batt, reverse=True)
    elif codec == "nmea":
        assert counters["lines_ok"] == 40
        lats = [r.value for r in out if r.channel == "lat"]
        assert len(lats) == 40 and all(abs(lat - 52.52) < 0.01 for lat in lats)
    else:
        stream = b"".join(out)
        parser = ServerOpParser()
        assert stream.startswith(b'CONNECT {"verbose":false,"pedantic":false,"name":"sim1","lang":"sim"')
        # The PUBs are well-formed: re-read them as MSGs by renaming the op.
        msgs = parser.feed(
            stream.split(b"\r\n", 1)[1]
            .replace(b"PUB sensors", b"MSG sensors")
            .replace(b"sim1.temperature ", b"sim1.temperature 1 ")
            .replace(b"sim1.humidity ", b"sim1.humidity 1 ")
            .replace(b"sim1.pressure ", b"sim1.pressure 1 ")
            .replace(b"sim1.battery ", b"sim1.battery 1 ")
        )
        assert len(msgs) == 80 and parser.lines_bad == 0
        first = msgs[0]
        assert isinstance(first, Msg) and first.subject == "sensors.sim1.temperature"
        assert json.loads(first.payload)["unit"] == "°C"


def test_simulator_is_deterministic_and_answers_ping() -> None:
    a, b = Simulator("jsonl", seed=7), Simulator("jsonl", seed=7)
    assert [a.next_chunk(t) for t in range(0, 100, 10)] == [b.next_chunk(t) for t in range(0, 100, 10)]
    assert Simulator("nats").receive(b"INFO {} \r\nPING\r\nMSG a 1 4\r\nPING\r\nPING\r\n") == b"PONG\r\n" * 2
    framed = Simulator("frames")
    reply = framed.receive(encode_frame(b"PING\r\n") + encode_frame(b"+OK\r\n"))
    assert FrameDecoder().feed(reply) == [b"PONG\r\n"]
    assert Simulator("lines").receive(b"PING\r\n") == b""
    assert Simulator("nats", subject_prefix="x.y").next_chunk(0).count(b"PUB x.y.") == 4
    with pytest.raises(ValueError, match="codec"):
        Simulator("bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device"):
        Simulator("nats", device="a.b")
