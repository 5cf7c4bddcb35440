"""The MQTT 3.1.1 packet codec (edge.protocol.mqtt): round trips, the malformed packets the spec closes on,
and hypothesis over the decoder (any bytes: a packet list or MalformedPacket/ConnectRefused, nothing else;
any split of a valid stream: the same packets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.protocol import mqtt as P

PACKETS: list[P.Packet] = [
    P.Connect("dev-1", True, 60),
    P.Connect("dev 2 with space", False, 0, P.Will(b"dev/2/status", b"offline", 1, True), "alice", b"s3cret"),
    P.Connect("", True, 10, None, "u", None),
    P.Publish(b"a/b", b"hello"),
    P.Publish(b"a/b", b"x" * 300, 1, retain=True, packet_id=7),
    P.Publish(b"a/b", b"", 2, dup=True, packet_id=65535),
    P.Ack(P.PUBACK, 1), P.Ack(P.PUBREC, 2), P.Ack(P.PUBREL, 3), P.Ack(P.PUBCOMP, 4),
    P.Subscribe(5, ((b"a/#", 1), (b"+/b", 2))),
    P.Unsubscribe(6, (b"a/#",)),
    P.Simple(P.PINGREQ), P.Simple(P.DISCONNECT),
]
SERVER_PACKETS: list[P.Packet] = [
    P.ConnAck(True, 0), P.ConnAck(False, 5), P.SubAck(5, (0, 1, 2, 0x80)), P.Ack(P.UNSUBACK, 9),
    P.Simple(P.PINGRESP), P.Publish(b"x", b"y", 1, packet_id=3),
]


@pytest.mark.parametrize("packet", PACKETS, ids=lambda p: type(p).__name__)
def test_client_packets_round_trip(packet: P.Packet) -> None:
    assert P.Decoder(server=True).feed(P.encode(packet)) == [packet]


@pytest.mark.parametrize("packet", SERVER_PACKETS, ids=lambda p: type(p).__name__)
def test_server_packets_round_trip(packet: P.Packet) -> None:
    assert P.Decoder(server=False).feed(P.encode(packet)) == [packet]


def test_exact_bytes_of_common_packets() -> None:
    assert P.encode_connack(False, 0) == b"\x20\x02\x00\x00"
    assert P.encode_ack(P.PUBREL, 258) == b"\x62\x02\x01\x02"
    assert P.encode_publish(b"a", b"hi", 1, packet_id=1) == b"\x32\x07\x00\x01a\x00\x01hi"
    assert P.encode_suback(1, [0, 0x80]) == b"\x90\x04\x00\x01\x00\x80"
    assert P.PINGRESP_BYTES == b"\xd0\x00"
    # Remaining length 321 = 0xC1 0x02 [MQTT-2.2.3 example].
    assert P.encode_publish(b"t", b"x" * 318)[:3] == b"\x30\xc1\x02"


def _connect_body(name: bytes = b"MQTT", level: int = 4, flags: int = 2, rest: bytes = b"\x00\x00\x00\x01c") -> bytes:
    body = len(name).to_bytes(2, "big") + name + bytes((level, flags)) + rest
    return bytes((0x10, len(body))) + body


MALFORMED = {
    "remaining length of five bytes": b"\x30\xff\xff\xff\xff\x01",
    "reserved flags on SUBSCRIBE": b"\x80\x06\x00\x01\x00\x01a\x00",
    "reserved flags on PUBREL": b"\x60\x02\x00\x01",
    "reserved flags on PINGREQ": b"\xc1\x00",
    "PUBLISH QoS 3": b"\x36\x05\x00\x01a\x00\x01",
    "PUBLISH with a wildcard": b"\x30\x03\x00\x01#",
    "PUBLISH with an empty topic": b"\x30\x02\x00\x00",
    "PUBLISH QoS 1 with packet id 0": b"\x32\x05\x00\x01a\x00\x00",
    "topic with U+0000": b"\x30\x05\x00\x03a\x00b",
    "topic not UTF-8": b"\x30\x04\x00\x02\xc3\x28",
    "CONNACK from a client": b"\x20\x02\x00\x00",
    "SUBACK from a client": b"\x90\x03\x00\x01\x00",
    "reserved packet type 0": b"\x00\x00",
    "reserved packet type 15": b"\xf0\x00",
    "PUBACK of three bytes": b"\x40\x03\x00\x01\x00",
    "PUBACK with packet id 0": b"\x40\x02\x00\x00",
    "PUBREL without its flags": b"\x60\x02\x00\x01",
    "PUBLISH topic past the end": b"\x30\x03\x00\x05a",
    "PUBLISH QoS 1 without a packet id": b"\x32\x03\x00\x01a",
    "SUBSCRIBE without filters": b"\x82\x02\x00\x01",
    "SUBSCRIBE QoS 3": b"\x82\x06\x00\x01\x00\x01a\x03",
    "SUBSCRIBE reserved QoS bits": b"\x82\x06\x00\x01\x00\x01a\x41",
    "UNSUBSCRIBE without filters": b"\xa2\x02\x00\x01",
    "PINGREQ with a body": b"\xc0\x01\x00",
    "protocol name MQIsdp": _connect_body(b"MQIsdp", 3),
    "protocol name mqtt": _connect_body(b"mqtt"),
    "CONNECT reserved flag": _connect_body(flags=3),
    "will QoS without will flag": _connect_body(flags=0x0A),
    "will retain without will flag": _connect_body(flags=0x22),
    "password without user name": _connect_body(flags=0x42),
    "CONNECT cut short": _connect_body(rest=b"\x00"),
    "CONNECT with trailing bytes": _connect_body(rest=b"\x00\x00\x00\x01cZ"),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_packets_raise(data: bytes) -> None:
    with pytest.raises(P.MalformedPacket):
        P.Decoder(server=True).feed(data)


# PUBLISHes to the topics the MALFORMED cases use: afterwards the decoder takes its fast path for them.
WARM_UP = P.encode_publish(b"a", b"warm") + P.encode_publish(b"a", b"", 1, packet_id=1)


def _warm_decoder() -> P.Decoder:
    d = P.Decoder(server=True)
    assert d.feed(WARM_UP) == [P.Publish(b"a", b"warm"), P.Publish(b"a", b"", 1, packet_id=1)]
    return d


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_the_fast_paths_refuse_what_the_full_decode_refuses(data: bytes) -> None:
    with pytest.raises(P.MalformedPacket) as fresh:
        P.Decoder(server=True).feed(data)
    with pytest.raises(P.MalformedPacket) as warm:
        _warm_decoder().feed(data)
    assert str(warm.value) == str(fresh.value)


# Packets shaped like the fast paths' input: PUBLISH or ack first bytes (any flags), a short length, a
# field that often names the known topic "a", then anything.
FAST_PATH_INPUT = st.builds(
    lambda first, n, field, rest: bytes((first, n)) + field + rest,
    st.integers(0x30, 0x7F), st.integers(0, 8), st.sampled_from([b"\x00\x01a", b"\x00\x01", b"\x00\x02a", b""]),
    st.binary(max_size=8),
)


@settings(max_examples=400)
@given(st.lists(FAST_PATH_INPUT, min_size=1, max_size=4).map(b"".join))
def test_the_fast_paths_decode_any_bytes_as_the_full_decode_does(data: bytes) -> None:
    def outcome(d: P.Decoder) -> object:
        try:
            return d.feed(data)
        except (P.MalformedPacket, P.ConnectRefused) as exc:
            return type(exc), str(exc)

    assert outcome(_warm_decoder()) == outcome(P.Decoder(server=True))


def test_a_level_5_connect_is_refused_with_return_code_1() -> None:
    with pytest.raises(P.ConnectRefused) as info:
        P.Decoder().feed(_connect_body(level=5))
    assert info.value.return_code == P.REFUSED_PROTOCOL_VERSION


def test_an_empty_client_id_without_clean_session_is_refused_with_return_code_2() -> None:
    with pytest.raises(P.ConnectRefused) as info:
        P.Decoder().feed(_connect_body(flags=0, rest=b"\x00\x00\x00\x00"))
    assert info.value.return_code == P.REFUSED_IDENTIFIER
    assert P.Decoder().feed(_connect_body(flags=2, rest=b"\x00\x00\x00\x00")) == [P.Connect("", True, 0)]


def test_an_oversize_packet_is_refused_from_its_fixed_header() -> None:
    d = P.Decoder(max_packet=100)
    with pytest.raises(P.MalformedPacket, match="exceeds the limit"):
        d.feed(b"\x30\xe5\x00")  # remaining length 101: refused before any of the body arrives
    assert P.Decoder(max_packet=100).feed(P.encode_publish(b"t", b"x" * 97)) != []


def test_partial_input_waits_for_the_rest() -> None:
    data = P.encode(PACKETS[1]) + P.encode(PACKETS[4])
    d = P.Decoder()
    assert d.feed(data[:1]) == []
    assert d.feed(data[1:40]) == []
    assert d.feed(data[40:]) == [PACKETS[1], PACKETS[4]]
    assert d.buffered == 0


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_a_protocol_error(data: bytes) -> None:
    for server in (True, False):
        try:
            packets = P.Decoder(server=server, max_packet=1000).feed(data)
        except (P.MalformedPacket, P.ConnectRefused):
            continue
        for p in packets:  # what decodes re-encodes to something that decodes to the same packet
            assert P.Decoder(server=server).feed(P.encode(p)) == [p]


@settings(max_examples=200)
@given(st.lists(st.sampled_from(PACKETS), min_size=1, max_size=8), st.lists(st.integers(1, 50), max_size=20))
def test_any_split_of_a_valid_stream_gives_the_same_packets(packets: list[P.Packet], cuts: list[int]) -> None:
    data = b"".join(P.encode(p) for p in packets)
    d = P.Decoder()
    got: list[P.Packet] = []
    pos = 0
    for n in cuts:
        got += d.feed(data[pos:pos + n])
        pos += n
    got += d.feed(data[pos:])
    assert got == packets


def test_the_fast_path_topic_cache_is_bounded() -> None:
    d = P.Decoder(server=True)
    many = [b"t/%d" % k for k in range(P.TOPIC_CACHE_MAX + 1)]
    long = b"x" * (P.TOPIC_CACHE_LEN + 1)
    data = b"".join(P.encode_publish(t, b"p") for t in [*many, long])
    assert d.feed(data) == [P.Publish(t, b"p") for t in [*many, long]]
    assert d._topics == {many[-1]}  # cleared when full; a topic past TOPIC_CACHE_LEN is not kept
    assert d.feed(data + data) == [P.Publish(t, b"p") for t in [*many, long] * 2]
    assert len(d._topics) <= P.TOPIC_CACHE_MAX
