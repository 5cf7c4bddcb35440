"""MQTT clients for tests: paho-mqtt wrapped so a test can wait on what arrived, and a raw-socket client
(our codec, edge.protocol.mqtt) for what paho will not send: malformed packets, abrupt closes, silence."""

from __future__ import annotations

import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.protocol import mqtt as P

TIMEOUT = 10.0
# paho 2 reports a 3.1.1 CONNACK return code as an MQTT 5 reason code; back to the 3.1.1 number.
_V3_RC = {0: 0, 132: 1, 133: 2, 136: 3, 134: 4, 135: 5}


@dataclass
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class Paho:
    """A connected paho client (network loop in its thread) and what it received, in order."""

    client: paho.Client
    messages: queue.Queue[Received] = field(default_factory=queue.Queue)
    connack: queue.Queue[tuple[bool, int]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    disconnected: threading.Event = field(default_factory=threading.Event)
    session_present: bool = False

    def get(self, timeout: float = TIMEOUT) -> Received:
        return self.messages.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        """True if nothing arrives within ``seconds`` (for 'must not be delivered' checks only)."""
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def subscribe(self, topic: str, qos: int = 0) -> list[int]:
        result, _ = self.client.subscribe(topic, qos)
        assert result == paho.MQTT_ERR_SUCCESS
        return self.subacks.get(timeout=TIMEOUT)

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos, retain)
        info.wait_for_publish(TIMEOUT)  # QoS 1/2: until the PUBACK/PUBCOMP arrived
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def paho_client(port: int, client_id: str = "", *, clean: bool = True, username: str | None = None,
                password: str | None = None, will: tuple[str, bytes, int, bool] | None = None,
                keepalive: int = 60, expect_rc: int = 0, ca_file: str | None = None) -> Paho:
    """Connect and wait for the CONNACK (asserting its return code); the caller closes it."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
                    reconnect_on_failure=False)
    p = Paho(c)
    if username is not None:
        c.username_pw_set(username, password)
    if ca_file is not None:
        c.tls_set(ca_certs=ca_file)
    if will is not None:
        c.will_set(will[0], will[1], will[2], will[3])

    def on_connect(_c: Any, _u: Any, flags: Any, rc: Any, _props: Any = None) -> None:
        p.connack.put((bool(flags.session_present), _V3_RC.get(rc.value, rc.value)))

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        p.messages.put(Received(msg.topic, msg.payload, msg.qos, bool(msg.retain)))

    def on_subscribe(_c: Any, _u: Any, _mid: Any, codes: Any, _props: Any = None) -> None:
        p.subacks.put([int(getattr(rc, "value", rc)) for rc in codes])

    def on_disconnect(*_a: Any) -> None:
        p.disconnected.set()

    c.on_connect = on_connect
    c.on_message = on_message
    c.on_subscribe = on_subscribe
    c.on_disconnect = on_disconnect
    c.connect("127.0.0.1", port, keepalive)
    c.loop_start()
    try:
        present, rc = p.connack.get(timeout=TIMEOUT)
    except BaseException:
        c.loop_stop()
        raise
    assert rc == expect_rc, f"CONNACK return code {rc}, expected {expect_rc}"
    if rc:
        c.loop_stop()
    p.session_present = present
    return p


class RawMQTT:
    """A blocking socket speaking MQTT through our codec, for malformed input and abrupt closes."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.decoder = P.Decoder(server=False)
        self.pending: list[P.Packet] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def connect(self, client_id: str = "raw", *, clean: bool = True, keepalive: int = 0,
                will: P.Will | None = None, username: str | None = None, password: bytes | None = None) -> P.ConnAck:
        self.send(P.encode_connect(P.Connect(client_id, clean, keepalive, will, username, password)))
        ack = self.read()
        assert isinstance(ack, P.ConnAck)
        return ack

    def read(self, timeout: float = TIMEOUT) -> P.Packet | None:
        """The next packet, or None when the server closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = self.sock.recv(65536)
            if not data:
                return None
            self.pending += self.decoder.feed(data)
        return self.pending.pop(0)

    def closed_by_server(self, timeout: float = TIMEOUT) -> bool:
        """Read until the server closes; True if it did within ``timeout`` (packets before it are dropped)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.read(deadline - time.monotonic()) is None:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()
