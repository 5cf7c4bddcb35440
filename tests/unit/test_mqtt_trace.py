"""The -V trace text of MQTT packets (edge.protocol.mqtt_trace): exact strings, as nats-server 2.15 writes
them (the side-by-side comparison with a real nats-server is
tests/integration/test_mqtt.py::test_trace_reads_as_nats_servers)."""

from __future__ import annotations

import pytest

from edge.protocol import mqtt as P
from edge.protocol import mqtt_trace as T


@pytest.mark.parametrize(("packet", "text"), [
    (P.Connect("c1", True, 30, P.Will(b"w/x.y", b"bye", 1, True), "u", b"p"),
     "CONNECT clientID=c1 keepAlive=45s will=(topic=w/x.y QoS=1 retain=true) clean username=u password=****"),
    (P.Connect("c2", False, 0), "CONNECT clientID=c2"),
    (P.Publish(b"a/b", b"hello", 1, retain=False, dup=True, packet_id=9),
     "PUBLISH a/b dup=true QoS=1 retain=false size=5 pi=9"),
    (P.Publish(b"q/r", b"x"), "PUBLISH q/r dup=false QoS=0 retain=false size=1"),
    (P.Ack(P.PUBACK, 3), "PUBACK pi=3"), (P.Ack(P.PUBREC, 4), "PUBREC pi=4"),
    (P.Ack(P.PUBREL, 5), "PUBREL pi=5"), (P.Ack(P.PUBCOMP, 6), "PUBCOMP pi=6"),
    (P.Subscribe(7, ((b"a/#", 1), (b"b/+/c", 0))), "SUBSCRIBE [a/# (a.>) QoS=1, b/+/c (b.*.c) QoS=0] pi=7"),
    (P.Unsubscribe(8, (b"b/+/c",)), "UNSUBSCRIBE [b/+/c (b.*.c)] pi=8"),
    (P.Simple(P.PINGREQ), "PINGREQ"), (P.Simple(P.DISCONNECT), "DISCONNECT"),
])
def test_inbound(packet: P.Packet, text: str) -> None:
    assert T.inbound(packet) == text


@pytest.mark.parametrize(("data", "text"), [
    (P.encode_connack(False, 0), "CONNACK sp=false rc=0"),
    (P.encode_connack(True, 0), "CONNACK sp=true rc=0"),
    (P.encode_connack(False, P.REFUSED_NOT_AUTHORIZED), "CONNACK sp=false rc=5"),
    (P.encode_ack(P.PUBACK, 9), "PUBACK pi=9"),
    (P.encode_ack(P.PUBCOMP, 65535), "PUBCOMP pi=65535"),
    (P.encode_ack(P.UNSUBACK, 8), "UNSUBACK pi=8"),
    (P.encode_suback(7, (1, 0)), "SUBACK pi=7"),
    (P.encode_suback(300, (0,) * 200), "SUBACK pi=300"),  # a two-byte remaining length
    (P.PINGRESP_BYTES, "PINGRESP"),
])
def test_outbound(data: bytes, text: str) -> None:
    assert T.outbound(data) == text


def test_payload_line() -> None:
    assert T.payload(b'{"t":21.5}\n') == 'MSG_PAYLOAD: ["{\\"t\\":21.5}\\n"]'
