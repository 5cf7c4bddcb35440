"""MQTT sessions without sockets (edge.mqtt.sessions): the in-flight window, queue order, counted drops,
resume with DUP after a reconnect, and the journal bringing a session back. A real Server (never started:
no listener) routes between sessions; the device side is a recorder of what the session sends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge.config.mqtt import MQTTSettings
from edge.config.settings import Settings
from edge.core.server import Server
from edge.mqtt.sessions import SessionManager
from edge.protocol import mqtt as P


class Device:
    """Stands in for an MQTT connection: records PUBLISH and other packets in order."""

    def __init__(self) -> None:
        self.publishes: list[tuple[bytes, bytes, int, bool, int]] = []  # topic, payload, qos, dup, pid
        self.packets: list[bytes] = []

    def send_publish(self, topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, pid: int) -> None:
        self.publishes.append((topic, payload, qos, dup, pid))

    def send(self, data: bytes) -> None:
        self.packets.append(data)


async def _manager(tmp_path: Path, **kw: int) -> SessionManager:
    server = Server(Settings())
    m = SessionManager(server, MQTTSettings(port=1883, **kw), str(tmp_path))
    await asyncio.to_thread(m.journal.open)  # as the listener does: off the loop
    m.restore()
    return m


async def test_window_order_acks_and_drops(tmp_path: Path) -> None:
    m = await _manager(tmp_path, max_ack_pending=2, max_session_msgs=4)
    sub, present = m.attach("sub", clean=False)
    assert sub is not None and not present
    dev = Device()
    sub.conn = dev  # type: ignore[assignment]
    sub.subscribe(b"t/#", 1)
    pub, _ = m.attach("pub", clean=True)
    assert pub is not None
    for i in range(6):
        pub.publish(b"t.x", b"%d" % i, 1)
    # Two in flight, four held at most: 0 and 1 in flight; 4 and 5 push out 2 and 3 (the oldest not in flight).
    assert [(p[1], p[4]) for p in dev.publishes] == [(b"0", 1), (b"1", 2)]
    assert m.counters.dropped_session_full == 2
    sub.on_ack(P.PUBACK, 1)
    sub.on_ack(P.PUBACK, 2)
    assert [(p[1], p[4]) for p in dev.publishes] == [(b"0", 1), (b"1", 2), (b"4", 3), (b"5", 4)]
    sub.on_ack(P.PUBACK, 3)
    sub.on_ack(P.PUBACK, 4)
    assert sub.state.messages == {} and not sub.inflight
    await m.close()


async def test_resume_resends_in_flight_with_dup_and_survives_reopen(tmp_path: Path) -> None:
    m = await _manager(tmp_path)
    sub, _ = m.attach("keep", clean=False)
    assert sub is not None
    dev = Device()
    sub.conn = dev  # type: ignore[assignment]
    sub.subscribe(b"a", 2)
    pub, _ = m.attach("p", clean=True)
    assert pub is not None
    pub.publish(b"a", b"one", 1)
    pub.publish(b"a", b"two", 2)
    assert [(p[1], p[2], p[3]) for p in dev.publishes] == [(b"one", 1, False), (b"two", 2, False)]
    sub.on_ack(P.PUBREC, 2)  # the QoS 2 message is released: PUBREL owed until PUBCOMP
    assert dev.packets == [P.encode_ack(P.PUBREL, 2)]
    sub.conn = None  # the device went away without acknowledging "one"
    sub.inflight.clear()
    await m.close()

    m2 = await _manager(tmp_path)  # the broker restarted: the journal brings the session back
    back = m2.sessions["keep"]
    assert back.persistent and back.state.subs == {b"a": 2}
    dev2 = Device()
    back.conn = dev2  # type: ignore[assignment]
    back.resume()
    assert dev2.publishes == [(b"a", b"one", 1, True, 1)]  # same packet id, DUP set
    assert dev2.packets == [P.encode_ack(P.PUBREL, 2)]  # the QoS 2 flow goes on where it stopped
    back.on_ack(P.PUBACK, 1)
    back.on_ack(P.PUBCOMP, 2)
    assert back.state.messages == {}
    await m2.close()
