"""Trace text for MQTT packets, as nats-server's MQTT listener writes it with ``-V`` (server/mqtt.go:
``mqttParse``'s ``traceInOp``/``traceOutOp``, ``mqttConnectTrace``, ``mqttPubTrace``,
``mqttSubscribeTrace``), so a trace reads the same from either broker. Sans-IO: text only.

The caller writes ``<tag> - <<- [<text>]`` for what a client sent and ``<tag> - ->> [<text>]`` for what
it is sent, and after an inbound PUBLISH the :func:`payload` line. Passwords are never written
(``password=****``).
"""

from __future__ import annotations

from typing import Final

from edge.protocol import mqtt as P
from edge.protocol.gofmt import go_duration, go_quote
from edge.protocol.mqtt_topics import TopicError, filter_subjects

__all__ = ["inbound", "outbound", "payload", "publish"]

_ACK_NAMES: Final = {P.PUBACK: "PUBACK", P.PUBREC: "PUBREC", P.PUBREL: "PUBREL", P.PUBCOMP: "PUBCOMP",
                     P.UNSUBACK: "UNSUBACK"}
_SIMPLE_NAMES: Final = {P.PINGREQ: "PINGREQ", P.PINGRESP: "PINGRESP", P.DISCONNECT: "DISCONNECT"}


def _go_bool(value: bool) -> str:
    return "true" if value else "false"


def _filter_subject(topic_filter: bytes) -> str:
    try:
        return filter_subjects(topic_filter)[0].decode(errors="replace")
    except TopicError:
        return ""


def publish(topic: bytes, size: int, qos: int, retain: bool, dup: bool, packet_id: int) -> str:
    """``PUBLISH <topic> dup=<b> QoS=<q> retain=<b> size=<n>[ pi=<id>]`` (mqttPubTrace)."""
    pi = f" pi={packet_id}" if packet_id > 0 else ""
    return (f"PUBLISH {topic.decode(errors='replace')} dup={_go_bool(dup)} QoS={qos} retain={_go_bool(retain)} "
            f"size={size}{pi}")


def payload(data: bytes) -> str:
    """The line after an inbound PUBLISH's: ``MSG_PAYLOAD: ["<go-quoted payload>"]`` (mqttTraceMsg)."""
    return f"MSG_PAYLOAD: [{go_quote(data)}]"


def inbound(p: P.Packet) -> str:
    """What a client sent."""
    if type(p) is P.Publish:
        return publish(p.topic, len(p.payload), p.qos, p.retain, p.dup, p.packet_id)
    if type(p) is P.Ack:
        return f"{_ACK_NAMES.get(p.type, str(p.type))} pi={p.packet_id}"
    if type(p) is P.Connect:
        # keepAlive is nats-server's read deadline: 1.5 times the client's keep alive [MQTT-3.1.2-24].
        text = f"CONNECT clientID={p.client_id}"
        if p.keepalive:
            text += f" keepAlive={go_duration(p.keepalive * 1.5)}"
        if p.will is not None:
            will = p.will
            text += f" will=(topic={will.topic.decode(errors='replace')} QoS={will.qos} retain={_go_bool(will.retain)})"
        if p.clean_session:
            text += " clean"
        if p.username:
            text += f" username={p.username}"
        if p.password:
            text += " password=****"
        return text
    if type(p) is P.Subscribe:
        filters = ", ".join(f"{f.decode(errors='replace')} ({_filter_subject(f)}) QoS={qos}"
                            for f, qos in p.filters)
        return f"SUBSCRIBE [{filters}] pi={p.packet_id}"
    if type(p) is P.Unsubscribe:
        filters = ", ".join(f"{f.decode(errors='replace')} ({_filter_subject(f)})" for f in p.filters)
        return f"UNSUBSCRIBE [{filters}] pi={p.packet_id}"
    if type(p) is P.Simple:
        return _SIMPLE_NAMES.get(p.type, str(p.type))
    return type(p).__name__.upper()


def outbound(data: bytes) -> str:
    """A control packet the broker sends (CONNACK, the acks, SUBACK, PINGRESP), from its encoded bytes;
    PUBLISH is traced by the caller with :func:`publish` (it has the fields at hand)."""
    if not data:
        return ""
    ptype = data[0] >> 4
    if ptype == P.CONNACK and len(data) >= 4:
        return f"CONNACK sp={_go_bool(bool(data[2] & 1))} rc={data[3]}"
    if ptype in _ACK_NAMES and len(data) >= 4:
        return f"{_ACK_NAMES[ptype]} pi={int.from_bytes(data[2:4], 'big')}"
    if ptype == P.SUBACK:
        i = 1
        while i < len(data) and data[i] & 0x80:  # the remaining length's continuation bytes
            i += 1
        return f"SUBACK pi={int.from_bytes(data[i + 1:i + 3], 'big')}"
    return _SIMPLE_NAMES.get(ptype, str(ptype))
