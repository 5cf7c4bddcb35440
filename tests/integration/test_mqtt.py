"""The MQTT listener end to end: a real nats-edge subprocess with ``[mqtt]``, real paho-mqtt clients, the
mosquitto_pub/mosquitto_sub commands and nats-py on the NATS side."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import socket
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from edge.protocol import mqtt as P
from tests.support.guarded_broker import MARK
from tests.support.mqtt import Paho, RawMQTT, paho_client
from tests.support.natsclient import flush
from tests.support.processes import GUARD_ENV, ServerProcess, free_port, start_nats_edge, wait_for
from tests.support.waiting import async_wait_for

MOSQUITTO = shutil.which("mosquitto_pub") is not None and shutil.which("mosquitto_sub") is not None
needs_mosquitto = pytest.mark.skipif(not MOSQUITTO, reason="mosquitto-clients not installed (.ci/run installs it)")


class Edge:
    """A nats-edge with an MQTT port; ``restart`` keeps the same config (and state directory)."""

    def __init__(self, workdir: Path, extra: str = "", mqtt_extra: str = "") -> None:
        self.workdir = workdir
        self.mqtt_port = free_port()
        self.conf = workdir / "edge.toml"
        self.conf.write_text(f'server_name = "gw1"\nstate_dir = "{workdir / "state"}"\nhttp_port = -1\n{extra}\n'
                             f"[mqtt]\nport = {self.mqtt_port}\n{mqtt_extra}\n")
        self.proc: ServerProcess | None = None
        self.start()

    def start(self) -> None:
        # The loop-blocking guard is armed in the broker: the MQTT code must never block its loop.
        self.proc = start_nats_edge(self.workdir, "-c", str(self.conf), env={GUARD_ENV: "1"})
        wait_for(self._mqtt_up, 10, "the MQTT port to accept connections")

    def _mqtt_up(self) -> bool:
        return _listening(self.mqtt_port)

    @property
    def url(self) -> str:
        assert self.proc is not None
        return self.proc.url

    def log(self) -> str:
        assert self.proc is not None
        return self.proc.log()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            if sig == signal.SIGKILL:
                self.proc.kill()
            else:
                self.proc.stop(sig)
            log = self.proc.log()
            assert MARK not in log, log


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    e = Edge(tmp_path)
    yield e
    e.stop()


@pytest.fixture
def clients() -> Iterator[list[Paho]]:
    made: list[Paho] = []
    yield made
    for c in made:
        c.close()


def _connect(made: list[Paho], port: int, client_id: str = "", **kw: object) -> Paho:
    c = paho_client(port, client_id, **kw)  # type: ignore[arg-type]
    made.append(c)
    return c


# -- interop with NATS clients --------------------------------------------------------------------


async def test_paho_publish_reaches_nats_subscriber_with_converted_subject(edge: Edge, clients: list[Paho]) -> None:
    nc = await nats.connect(edge.url)
    try:
        sub = await nc.subscribe(">")
        await nc.flush()
        pub = _connect(clients, edge.mqtt_port, "pub")
        await asyncio.to_thread(pub.publish, "home/kitchen.light/state", b"on", 1)
        msg = await sub.next_msg(timeout=5)
        assert msg.subject == "home.kitchen//light.state"
        assert msg.data == b"on"
        assert msg.headers == {"Nmqtt-Pub": "1"}  # the QoS, as nats-server writes it
    finally:
        await nc.close()


async def test_nats_publish_reaches_paho_subscriber_at_qos_0(edge: Edge, clients: list[Paho]) -> None:
    sub = _connect(clients, edge.mqtt_port, "sub")
    assert await asyncio.to_thread(sub.subscribe, "cmd/+/set", 1) == [1]
    nc = await nats.connect(edge.url)
    try:
        await nc.publish("cmd.lamp.set", b"off")
        await nc.publish("cmd.lamp.other", b"not for it")
        await nc.flush()
    finally:
        await nc.close()
    got = await asyncio.to_thread(sub.get)
    assert (got.topic, got.payload, got.qos, got.retain) == ("cmd/lamp/set", b"off", 0, False)


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_paho_to_paho_at_each_qos(edge: Edge, clients: list[Paho], qos: int) -> None:
    sub = _connect(clients, edge.mqtt_port, "s")
    assert await asyncio.to_thread(sub.subscribe, "t/#", 2) == [2]
    pub = _connect(clients, edge.mqtt_port, "p")
    for i in range(20):
        await asyncio.to_thread(pub.publish, f"t/{i}", b"%d" % i, qos)
    got = [await asyncio.to_thread(sub.get) for _ in range(20)]
    assert [(m.topic, m.payload, m.qos) for m in got] == [(f"t/{i}", b"%d" % i, qos) for i in range(20)]


async def test_multi_level_wildcard_also_matches_the_parent_level(edge: Edge, clients: list[Paho]) -> None:
    sub = _connect(clients, edge.mqtt_port, "s")
    await asyncio.to_thread(sub.subscribe, "a/#", 0)
    pub = _connect(clients, edge.mqtt_port, "p")
    for topic in ("a", "a/b", "ab", "$SYS/x"):
        await asyncio.to_thread(pub.publish, topic, topic.encode(), 1)
    got = [(await asyncio.to_thread(sub.get)).topic for _ in range(2)]
    assert got == ["a", "a/b"]


def _subscriptions(edge: Edge) -> int:
    """The broker's subscription count (/subsz): how a test knows a subscriber outside it is ready."""
    return int(_monitor(edge, "/subsz")["num_subscriptions"])


@needs_mosquitto
async def test_mosquitto_clients_and_nats_py_both_ways(edge: Edge) -> None:
    nc = await nats.connect(edge.url)
    try:
        nats_sub = await nc.subscribe("sensors.>")
        await nc.flush()
        before = _subscriptions(edge)
        mosq_sub = await asyncio.create_subprocess_exec(
            "mosquitto_sub", "-p", str(edge.mqtt_port), "-t", "actuators/#", "-q", "1", "-C", "1", "-v",
            stdout=asyncio.subprocess.PIPE)
        try:
            # actuators/# is two subscriptions: actuators.> and actuators.
            await async_wait_for(lambda: _subscriptions(edge) >= before + 2, 10, "mosquitto_sub's subscription")
            await nc.publish("actuators.valve", b"open")
            await nc.flush()
            out, _ = await asyncio.wait_for(mosq_sub.communicate(), 10)
        finally:
            if mosq_sub.returncode is None:
                mosq_sub.kill()
                await mosq_sub.wait()
        assert out == b"actuators/valve open\n"
        mosq_pub = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-p", str(edge.mqtt_port), "-t", "sensors/t1", "-m", "21.5", "-q", "2")
        assert await asyncio.wait_for(mosq_pub.wait(), 10) == 0
        msg = await nats_sub.next_msg(timeout=5)
        assert (msg.subject, msg.data) == ("sensors.t1", b"21.5")
    finally:
        await nc.close()


# -- retained messages ----------------------------------------------------------------------------


async def test_retained_store_deliver_on_subscribe_and_clear(edge: Edge, clients: list[Paho]) -> None:
    pub = _connect(clients, edge.mqtt_port, "p")
    await asyncio.to_thread(pub.publish, "dev/1/status", b"online", 1, True)
    await asyncio.to_thread(pub.publish, "dev/2/status", b"offline", 0, True)
    s1 = _connect(clients, edge.mqtt_port, "s1")
    await asyncio.to_thread(s1.subscribe, "dev/+/status", 1)
    got = sorted([await asyncio.to_thread(s1.get) for _ in range(2)], key=lambda m: m.topic)
    assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == [
        ("dev/1/status", b"online", 1, True), ("dev/2/status", b"offline", 0, True)]
    await asyncio.to_thread(pub.publish, "dev/1/status", b"", 1, True)  # clears it
    live = await asyncio.to_thread(s1.get)
    assert (live.topic, live.payload, live.retain) == ("dev/1/status", b"", False)  # delivered as normal
    s2 = _connect(clients, edge.mqtt_port, "s2")
    await asyncio.to_thread(s2.subscribe, "dev/#", 0)
    only = await asyncio.to_thread(s2.get)
    assert (only.topic, only.payload, only.retain) == ("dev/2/status", b"offline", True)
    assert await asyncio.to_thread(s2.none_within, 0.3)


# -- will, keepalive, takeover, client ids --------------------------------------------------------


async def test_will_published_on_abrupt_close_not_on_disconnect(edge: Edge) -> None:
    nc = await nats.connect(edge.url)
    try:
        sub = await nc.subscribe("dev.*.will")
        await nc.flush()
        raw = RawMQTT(edge.mqtt_port)
        assert raw.connect("w1", will=P.Will(b"dev/w1/will", b"gone", 1, False)).return_code == 0
        raw.close()  # no DISCONNECT
        msg = await sub.next_msg(timeout=5)
        assert (msg.subject, msg.data) == ("dev.w1.will", b"gone")
        polite = RawMQTT(edge.mqtt_port)
        assert polite.connect("w2", will=P.Will(b"dev/w2/will", b"gone", 0, False)).return_code == 0
        polite.send(P.DISCONNECT_BYTES)
        assert polite.closed_by_server()
        polite.close()
        with pytest.raises(TimeoutError):
            await sub.next_msg(timeout=0.5)
    finally:
        await nc.close()


async def test_keepalive_times_out_after_one_and_a_half_periods_and_sends_the_will(edge: Edge) -> None:
    nc = await nats.connect(edge.url)
    try:
        sub = await nc.subscribe("ka.>")
        await nc.flush()
        raw = RawMQTT(edge.mqtt_port)
        assert raw.connect("ka", keepalive=1, will=P.Will(b"ka/dead", b"x", 0, False)).return_code == 0
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await asyncio.to_thread(raw.closed_by_server, 5)
        elapsed = loop.time() - t0
        raw.close()
        assert 1.4 <= elapsed < 3.0
        assert (await sub.next_msg(timeout=5)).subject == "ka.dead"
    finally:
        await nc.close()


async def test_pingreq_keeps_the_connection_alive(edge: Edge) -> None:
    raw = RawMQTT(edge.mqtt_port)
    try:
        assert raw.connect("pinger", keepalive=1).return_code == 0
        for _ in range(3):
            raw.send(P.PINGREQ_BYTES)
            assert raw.read(1.2) == P.Simple(P.PINGRESP)
    finally:
        raw.close()


async def test_second_connection_with_the_same_client_id_takes_over(edge: Edge, clients: list[Paho]) -> None:
    first = _connect(clients, edge.mqtt_port, "same id with spaces")
    second = _connect(clients, edge.mqtt_port, "same id with spaces")
    assert await asyncio.to_thread(first.disconnected.wait, 5)
    assert not second.disconnected.is_set()
    assert await asyncio.to_thread(second.subscribe, "x", 0) == [0]


async def test_client_id_rules(edge: Edge) -> None:
    raw = RawMQTT(edge.mqtt_port)
    assert raw.connect("", clean=True).return_code == 0  # a zero-length id with clean session gets one
    raw.close()
    raw = RawMQTT(edge.mqtt_port)
    assert raw.connect("", clean=False).return_code == P.REFUSED_IDENTIFIER
    assert raw.closed_by_server()
    raw.close()


# -- malformed input ------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"\x30\xff\xff\xff\xff\x01",  # remaining length of five bytes
    b"\x82\x06\x00\x01\x00\x01a\x03",  # SUBSCRIBE QoS 3
    b"\xc1\x00",  # reserved flags
    b"\x30\x03\x00\x01#",  # wildcard in a topic name
], ids=["remaining-length", "subscribe-qos-3", "reserved-flags", "wildcard-topic"])
async def test_malformed_packets_close_the_connection(edge: Edge, data: bytes) -> None:
    raw = RawMQTT(edge.mqtt_port)
    try:
        assert raw.connect("m").return_code == 0
        raw.send(data)
        assert raw.closed_by_server()
    finally:
        raw.close()


async def test_connect_rules(edge: Edge) -> None:
    level5 = RawMQTT(edge.mqtt_port)
    level5.send(P.encode_connect(P.Connect("v5", True, 0), level=5))
    assert level5.read() == P.ConnAck(False, P.REFUSED_PROTOCOL_VERSION)
    assert level5.closed_by_server()
    level5.close()
    first = RawMQTT(edge.mqtt_port)
    first.send(P.encode_subscribe(1, [(b"a", 0)]))  # before CONNECT
    assert first.closed_by_server()
    first.close()
    twice = RawMQTT(edge.mqtt_port)
    assert twice.connect("twice").return_code == 0
    twice.send(P.encode_connect(P.Connect("twice", True, 0)))
    assert twice.closed_by_server()
    twice.close()
    oversize = RawMQTT(edge.mqtt_port)
    assert oversize.connect("big").return_code == 0
    oversize.send(P.encode_publish(b"big", b"x" * (1024 * 1024 + 1)))  # default max_payload is 1 MB
    assert oversize.closed_by_server()
    oversize.close()


# -- persistent sessions across SIGKILL -----------------------------------------------------------


async def test_persistent_qos1_session_survives_sigkill_with_nothing_lost(edge: Edge, clients: list[Paho]) -> None:
    sub = paho_client(edge.mqtt_port, "keeper", clean=False)
    assert await asyncio.to_thread(sub.subscribe, "q/#", 1) == [1]
    sub.close()
    pub = paho_client(edge.mqtt_port, "pusher")
    for i in range(50):
        await asyncio.to_thread(pub.publish, f"q/{i}", b"%d" % i, 1)  # each waits for its PUBACK
    pub.close()
    edge.stop(signal.SIGKILL)
    edge.start()
    back = _connect(clients, edge.mqtt_port, "keeper", clean=False)
    assert back.session_present
    got = [await asyncio.to_thread(back.get) for _ in range(50)]
    assert sorted(int(m.payload) for m in got) == list(range(50))
    assert {m.qos for m in got} == {1}
    assert await asyncio.to_thread(back.none_within, 0.3)  # all acknowledged: nothing comes twice


async def test_unacknowledged_delivery_is_resent_with_dup_after_reconnect(edge: Edge) -> None:
    raw = RawMQTT(edge.mqtt_port)
    assert raw.connect("lazy", clean=False).return_code == 0
    raw.send(P.encode_subscribe(1, [(b"r/+", 1)]))
    assert raw.read() == P.SubAck(1, (1,))
    nc = await nats.connect(edge.url)
    try:
        # A QoS 1 message as an MQTT publisher sends it: header Nmqtt-Pub: 1.
        await nc.publish("r.x", b"hello", headers={"Nmqtt-Pub": "1"})
        await nc.flush()
    finally:
        await nc.close()
    first = raw.read()
    assert isinstance(first, P.Publish) and (first.qos, first.dup, first.payload) == (1, False, b"hello")
    raw.close()  # no PUBACK
    again = RawMQTT(edge.mqtt_port)
    try:
        assert again.connect("lazy", clean=False) == P.ConnAck(True, 0)
        resent = again.read()
        assert isinstance(resent, P.Publish)
        assert (resent.topic, resent.payload, resent.qos, resent.dup, resent.packet_id) == (
            b"r/x", b"hello", 1, True, first.packet_id)
        again.send(P.encode_ack(P.PUBACK, resent.packet_id))
    finally:
        again.close()


async def test_qos2_inbound_exactly_once_across_resend(edge: Edge) -> None:
    nc = await nats.connect(edge.url)
    try:
        sub = await nc.subscribe("once")
        await nc.flush()
        raw = RawMQTT(edge.mqtt_port)
        assert raw.connect("q2", clean=False).return_code == 0
        raw.send(P.encode_publish(b"once", b"1", 2, packet_id=9))
        assert raw.read() == P.Ack(P.PUBREC, 9)
        raw.send(P.encode_publish(b"once", b"1", 2, dup=True, packet_id=9))  # resent before PUBREL
        assert raw.read() == P.Ack(P.PUBREC, 9)
        raw.send(P.encode_ack(P.PUBREL, 9))
        assert raw.read() == P.Ack(P.PUBCOMP, 9)
        raw.close()
        assert (await sub.next_msg(timeout=5)).data == b"1"
        with pytest.raises(TimeoutError):
            await sub.next_msg(timeout=0.3)
    finally:
        await nc.close()


# -- auth and permissions -------------------------------------------------------------------------

AUTH = """
[authorization]
users = [
  {user = "dev", password = "pw", permissions = {publish = ["sensors.>"], subscribe = ["cmd.>"]}},
  {user = "anon", password = "x", permissions = {publish = ["anon.>"], subscribe = ["anon.>"]}},
  {user = "ops", password = "ops"},
]
"""


async def test_users_and_permissions_are_the_brokers(tmp_path: Path, clients: list[Paho]) -> None:
    edge = Edge(tmp_path, AUTH, 'no_auth_user = "anon"')
    try:
        paho_client(edge.mqtt_port, "bad", username="dev", password="wrong", expect_rc=P.REFUSED_NOT_AUTHORIZED)
        paho_client(edge.mqtt_port, "nobody", username="nobody", password="x", expect_rc=P.REFUSED_NOT_AUTHORIZED)
        dev = _connect(clients, edge.mqtt_port, "dev1", username="dev", password="pw")
        assert await asyncio.to_thread(dev.subscribe, "cmd/#", 1) == [1]
        assert await asyncio.to_thread(dev.subscribe, "secrets/#", 1) == [0x80]
        anon = _connect(clients, edge.mqtt_port, "anon1")  # no user name: [mqtt] no_auth_user
        assert await asyncio.to_thread(anon.subscribe, "cmd/#", 0) == [0x80]
        assert await asyncio.to_thread(anon.subscribe, "anon/#", 0) == [0]
        nc = await nats.connect(edge.url, user="ops", password="ops")
        try:
            everything = await nc.subscribe(">")
            await nc.flush()
            await asyncio.to_thread(dev.publish, "cmd/x", b"denied", 1)  # acknowledged, not routed
            await asyncio.to_thread(dev.publish, "sensors/t", b"ok", 1)
            msg = await everything.next_msg(timeout=5)
            assert (msg.subject, msg.data) == ("sensors.t", b"ok")
            await nc.publish("cmd.lamp", b"on")
            await nc.flush()
            got = await asyncio.to_thread(dev.get)
            assert (got.topic, got.payload) == ("cmd/lamp", b"on")
        finally:
            await nc.close()
    finally:
        edge.stop()


async def test_max_connections_counts_mqtt_and_nats_clients_alike(tmp_path: Path, clients: list[Paho]) -> None:
    """One max_connections for both protocols, as nats-server counts its MQTT clients: at the limit an
    MQTT connection is closed at once (no CONNACK: MQTT has none before a CONNECT) and a NATS client
    gets nats-server's -ERR; a freed slot takes the next client of either kind."""
    edge = Edge(tmp_path, "max_connections = 2")
    try:
        _connect(clients, edge.mqtt_port, "m1")
        nc = await nats.connect(edge.url)
        try:
            refused = RawMQTT(edge.mqtt_port)
            try:
                assert refused.closed_by_server()
            finally:
                refused.close()
            with socket.create_connection(("127.0.0.1", edge.proc.port if edge.proc else 0), timeout=5) as s:
                s.settimeout(5)
                data = b""
                while b"-ERR" not in data or not data.endswith(b"\r\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                assert data.split(b"\r\n")[1] == b"-ERR 'maximum connections exceeded'", data
            varz = await asyncio.to_thread(_varz, edge)
            assert varz["connections"] == 2 and varz["max_connections"] == 2
            clients.pop().close()  # the MQTT client leaves: its slot is free again

            async def one_left() -> bool:
                return (await asyncio.to_thread(_varz, edge))["connections"] == 1

            await async_wait_for(one_left, 5, "the MQTT slot to be released")
            again = _connect(clients, edge.mqtt_port, "m2")
            assert await asyncio.to_thread(again.subscribe, "x/#", 0) == [0]
        finally:
            await nc.close()
        assert "mqtt 127.0.0.1:" in edge.log() and "maximum connections (2) exceeded" in edge.log()
    finally:
        edge.stop()


RELOADED_AUTH = """
[authorization]
users = [
  {user = "dev", password = "pw", permissions = {publish = ["sensors.>"], subscribe = ["cmd.lamp.>"]}},
  {user = "ops", password = "ops"},
]
"""


async def test_a_reload_rechecks_connected_mqtt_clients(tmp_path: Path, clients: list[Paho]) -> None:
    """SIGHUP with a user removed and another's permissions narrowed: the removed user's MQTT client is
    closed without its will, the other stays connected and loses exactly the subscription now denied
    (as NATS clients do on a reload, and nats-server's reloadAuthorization does for all clients)."""
    edge = Edge(tmp_path, AUTH)
    try:
        dev = _connect(clients, edge.mqtt_port, "dev1", username="dev", password="pw")
        anon = _connect(clients, edge.mqtt_port, "anon1", username="anon", password="x",
                        will=("anon/will", b"gone", 0, False))
        assert await asyncio.to_thread(dev.subscribe, "cmd/#", 0) == [0]
        assert await asyncio.to_thread(dev.subscribe, "cmd/lamp/#", 0) == [0]
        nc = await nats.connect(edge.url, user="ops", password="ops")
        try:
            wills = await nc.subscribe("anon.>")
            await flush(nc)
            assert edge.proc is not None
            edge.conf.write_text(edge.conf.read_text().replace(AUTH, RELOADED_AUTH))
            edge.proc.proc.send_signal(signal.SIGHUP)
            await async_wait_for(lambda: "Authorization reloaded: 1 client(s) closed, 1 subscription(s) removed"
                                 in edge.log(), 10, "the reload to recheck the MQTT clients")
            assert await asyncio.to_thread(anon.disconnected.wait, 5)
            assert "removed: the reloaded permissions deny it" in edge.log()
            # cmd/# is gone, cmd/lamp/# stays. In order on one connection: cmd.fan (would come first
            # through cmd/#) is not delivered, cmd.lamp.1 is, once (a copy via cmd/# would precede cmd.lamp.2).
            await nc.publish("cmd.fan", b"no")
            await nc.publish("cmd.lamp.1", b"yes")
            await nc.publish("cmd.lamp.2", b"end")
            await nc.publish("anon.end", b"end")
            await flush(nc)
            got = [await asyncio.to_thread(dev.get) for _ in range(2)]
            assert [(m.topic, m.payload) for m in got] == [("cmd/lamp/1", b"yes"), ("cmd/lamp/2", b"end")]
            first = await wills.next_msg(timeout=5)  # the revoked client's will would have come first
            assert (first.subject, first.data) == ("anon.end", b"end")
            assert not dev.disconnected.is_set()
        finally:
            await nc.close()
        # The removed user cannot come back; the remaining one can.
        paho_client(edge.mqtt_port, "anon2", username="anon", password="x", expect_rc=P.REFUSED_NOT_AUTHORIZED)
    finally:
        edge.stop()


async def test_a_command_from_an_mqtt_client_is_audited_with_its_client_id(tmp_path: Path, clients: list[Paho]) -> None:
    """An MQTT device publishing on a command topic runs the command (the demo adapter's ``ping``); the
    audit event names the MQTT client and its user as the requester."""
    edge = Edge(tmp_path, AUTH.replace('{user = "ops", password = "ops"},', '{user = "ops", password = "ops"},\n'
                '  {user = "panel", password = "p"},') + '[[adapters.demo]]\nname = "demo"\ninterval = "1h"\n')
    try:
        nc = await nats.connect(edge.url, user="ops", password="ops")
        try:
            events = await nc.subscribe("evt.gw1.demo.demo1.command")
            await flush(nc)

            async def served() -> bool:  # the demo adapter starts after the broker
                try:
                    reply = await nc.request("cmd.gw1.demo.demo1.ping", b"", timeout=1)
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
                    return False
                return json.loads(reply.data) == {"ok": True, "result": "pong"}

            await async_wait_for(served, 20, "the demo adapter to serve commands")
            first = json.loads((await events.next_msg(timeout=5)).data)
            assert first["by"]["kind"] == "client" and first["by"]["user"] == "ops"
            panel = _connect(clients, edge.mqtt_port, "panel-1", username="panel", password="p")
            await asyncio.to_thread(panel.publish, "cmd/gw1/demo/demo1/ping", b"", 1)
            evt = json.loads((await events.next_msg(timeout=5)).data)
            assert (evt["action"], evt["ok"], evt["by"]) == (
                "ping", True, {"kind": "mqtt", "client_id": "panel-1", "user": "panel", "ip": "127.0.0.1"})
        finally:
            await nc.close()
    finally:
        edge.stop()


# -- the same conversion as nats-server's own MQTT listener ---------------------------------------

SAME_TOPICS = ["foo/bar", "/foo/bar/", "foo//bar", "foo.bar/baz", "a/b.c/d", "x", "dev/ünï/çødé", "trailing/"]
SAME_SUBJECTS = ["foo.bar", "/.foo.bar./", "foo./.bar", "foo//bar.baz", "plain"]


async def _subjects_seen(nats_url: str, mqtt_port: int, client_id: str) -> list[str]:
    """Publish each topic over MQTT (QoS 1), collect the subjects a NATS ``>`` subscriber sees."""
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.subscribe(">")
        await nc.flush()
        pub = paho_client(mqtt_port, client_id)
        try:
            for topic in SAME_TOPICS:
                await asyncio.to_thread(pub.publish, topic, b"x", 1)
        finally:
            pub.close()
        seen: list[str] = []
        while len(seen) < len(SAME_TOPICS):
            msg = await sub.next_msg(timeout=5)
            if not msg.subject.startswith("$"):  # nats-server's own $MQTT/$JS traffic
                seen.append(msg.subject)
        return seen
    finally:
        await nc.close()


async def _topics_seen(nats_url: str, mqtt_port: int, client_id: str) -> list[str]:
    """Publish each subject over NATS, collect the topics an MQTT ``#`` subscriber sees."""
    sub = paho_client(mqtt_port, client_id)
    try:
        assert await asyncio.to_thread(sub.subscribe, "#", 0) == [0]
        nc = await nats.connect(nats_url)
        try:
            for subject in SAME_SUBJECTS:
                await nc.publish(subject, b"x")
            await nc.flush()
        finally:
            await nc.close()
        return [(await asyncio.to_thread(sub.get)).topic for _ in SAME_SUBJECTS]
    finally:
        sub.close()


async def test_same_topic_same_subject_as_nats_server(edge: Edge, tmp_path: Path) -> None:
    from tests.support.processes import start_nats_server

    port = free_port()
    (tmp_path / "ns").mkdir()
    hub = start_nats_server(tmp_path / "ns", config=(
        f'server_name: "ref"\njetstream {{ store_dir: "{tmp_path / "ns" / "js"}" }}\nmqtt {{ port: {port} }}\n'))
    try:
        wait_for(lambda: _listening(port), 10, "nats-server's MQTT port")
        reference = await _subjects_seen(hub.url, port, "ref-pub")
        ours = await _subjects_seen(edge.url, edge.mqtt_port, "edge-pub")
        assert ours == reference
        assert reference == ["foo.bar", "/.foo.bar./", "foo./.bar", "foo//bar.baz", "a.b//c.d", "x",
                             "dev.ünï.çødé", "trailing./"]
        assert await _topics_seen(edge.url, edge.mqtt_port, "edge-sub") == await _topics_seen(hub.url, port, "ref-sub")
    finally:
        hub.stop()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


# -- -V: the trace reads as nats-server's -------------------------------------------------------


def _traced_session(port: int) -> None:
    """One client's whole life, each step waited for: every packet type a client sends or is sent."""
    c = RawMQTT(port)
    try:
        assert c.connect("c1", keepalive=30, will=P.Will(b"w/x.y", b"bye", 1, True), username="u",
                         password=b"p").return_code == 0
        c.send(P.encode_subscribe(7, [(b"a/#", 1), (b"b/+/c", 0)]))
        assert c.read() == P.SubAck(7, (1, 0))
        c.send(P.encode_publish(b"a/b", b'say "hi"\n', 1, packet_id=9))
        got = {type(c.read()), type(c.read())}
        assert got == {P.Publish, P.Ack}  # its own message back, and the PUBACK (in either order)
        c.send(P.encode_publish(b"q/r", b"x", 0))
        c.send(bytes([P.PINGREQ << 4, 0]))
        assert c.read() == P.Simple(P.PINGRESP)
        c.send(P.encode_unsubscribe(8, [b"b/+/c"]))
        assert c.read() == P.Ack(P.UNSUBACK, 8)
        c.send(bytes([P.DISCONNECT << 4, 0]))
        assert c.closed_by_server()
    finally:
        c.close()


def _trace_lines(log: str) -> list[str]:
    """The client's trace lines without timestamp, pid, address and cid: ``"c1" - <<- [...]``."""
    out = []
    for line in log.splitlines():
        m = re.search(r'\[TRC\] 127\.0\.0\.1:\d+ - mid:\d+ - ("c1" - (?:<<-|->>) .*)$', line)
        if m:
            out.append(m.group(1))
    return out


def test_trace_reads_as_nats_servers(tmp_path: Path) -> None:
    """The same client session against nats-server 2.15 (with MQTT, which needs JetStream) and nats-edge,
    both with -V: what the client sent (<<-) is traced line for line the same, in the same order, and
    what it was sent (->>) the same lines (nats-server orders its PUBACK and the delivery either way).
    nats-server's internal <-> [DELSUB ...] lines have no counterpart here."""
    from tests.support.processes import start_nats_server

    ns_port = free_port()
    (tmp_path / "ns").mkdir()
    ns = start_nats_server(tmp_path / "ns", "-V", config=(
        f'server_name: "s1"\njetstream {{ store_dir: "{tmp_path / "ns" / "js"}" }}\nmqtt {{ port: {ns_port} }}\n'))
    try:
        wait_for(lambda: _listening(ns_port), 20, "nats-server's MQTT port")
        _traced_session(ns_port)
        wait_for(lambda: '"c1" - <<- [DISCONNECT]' in ns.log(), 10, "nats-server's DISCONNECT trace")
        theirs = _trace_lines(ns.log())
    finally:
        ns.stop()
    (tmp_path / "edge").mkdir()
    edge = Edge(tmp_path / "edge", "trace = true")
    try:
        _traced_session(edge.mqtt_port)
        wait_for(lambda: '"c1" - <<- [DISCONNECT]' in edge.log(), 10, "nats-edge's DISCONNECT trace")
        ours = _trace_lines(edge.log())
    finally:
        edge.stop()
    assert [ln for ln in ours if "<<-" in ln] == [ln for ln in theirs if "<<-" in ln]
    assert sorted(ln for ln in ours if "->>" in ln) == sorted(ln for ln in theirs if "->>" in ln)
    assert ours[0] == '"c1" - <<- [CONNECT clientID=c1 keepAlive=45s will=(topic=w/x.y QoS=1 retain=true) clean ' \
                      'username=u password=****]'
    assert ours[ours.index('"c1" - <<- [PUBLISH a/b dup=false QoS=1 retain=false size=9 pi=9]') + 1] == \
        r'"c1" - <<- MSG_PAYLOAD: ["say \"hi\"\n"]'  # the payload as Go's %q


# -- the outbox: QoS 1/2 acknowledged once durable ------------------------------------------------


async def test_qos1_on_a_store_forward_subject_is_acknowledged_once_in_the_outbox(tmp_path: Path) -> None:
    edge = Edge(tmp_path, '[store_forward]\nsubjects = ["telemetry.>"]\nfsync_interval = "50ms"\n')
    try:
        nc = await nats.connect(edge.url)
        try:
            local = await nc.subscribe("telemetry.>")
            await nc.flush()
            pub = paho_client(edge.mqtt_port, "meter")
            try:
                for i in range(30):
                    await asyncio.to_thread(pub.publish, "telemetry/meter/kwh", b"%d" % i, 1 + i % 2)
                await asyncio.to_thread(pub.publish, "local/only", b"x", 1)  # not covered: acknowledged at once
            finally:
                pub.close()
            first = await local.next_msg(timeout=5)  # local subscribers get it as well, without waiting
            assert (first.subject, first.data) == ("telemetry.meter.kwh", b"0")
            assert _varz(edge)["mqtt"]["outbox_acks"] == 30
        finally:
            await nc.close()
        edge.stop(signal.SIGKILL)  # every acknowledged message must be in the outbox already
        out = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge", "outbox", "--dir", str(tmp_path / "state" / "outbox"), "--json",
            stdout=asyncio.subprocess.PIPE)
        stdout, _ = await asyncio.wait_for(out.communicate(), 30)
        assert json.loads(stdout)["pending"] == 30
    finally:
        edge.stop()


# -- monitoring and `nats-edge mqtt` --------------------------------------------------------------


def _get(edge: Edge, path: str) -> bytes:
    assert edge.proc is not None
    with urllib.request.urlopen(edge.proc.url_of("monitoring") + path, timeout=5) as r:
        return r.read()  # type: ignore[no-any-return]


def _monitor(edge: Edge, path: str) -> dict[str, Any]:
    return json.loads(_get(edge, path))  # type: ignore[no-any-return]


def _varz(edge: Edge) -> dict[str, Any]:
    return _monitor(edge, "/varz")


def test_closed_mqtt_clients_are_in_connz_closed(edge: Edge) -> None:
    """/connz?state=closed keeps closed MQTT clients beside NATS ones (nats-server lists both), with the
    reason, the client id and the subscriptions they had."""
    c = paho_client(edge.mqtt_port, "leaving", clean=False)
    assert c.subscribe("home/#", 1) == [1]
    c.close()  # DISCONNECT
    refused = RawMQTT(edge.mqtt_port)  # never CONNECTed: not a client, not listed
    refused.close()

    def closed() -> list[dict[str, Any]]:
        return [e for e in _monitor(edge, "/connz?state=closed&subs=1")["connections"] if e["type"] == "mqtt"]

    entry = wait_for(closed, 5, "the closed MQTT client in /connz")[0]
    assert (entry["mqtt_client"], entry["reason"], entry["subscriptions_list"]) == (
        "leaving", "client disconnected", ["home.>", "home"])
    assert len(closed()) == 1


async def test_monitoring_and_the_mqtt_command(edge: Edge, clients: list[Paho]) -> None:
    c = _connect(clients, edge.mqtt_port, "kitchen sensor", clean=False)
    await asyncio.to_thread(c.subscribe, "kitchen/#", 1)
    await asyncio.to_thread(c.publish, "kitchen/temp", b"21", 1, True)
    assert await asyncio.to_thread(c.get)
    mqtt = _varz(edge)["mqtt"]
    assert (mqtt["port"], mqtt["connections"], mqtt["sessions"], mqtt["retained"], mqtt["msgs_in"]) == (
        edge.mqtt_port, 1, 1, 1, 1)
    assert (mqtt["ack_wait"], mqtt["max_ack_pending"]) == (30_000_000_000, 1024)
    metrics = _get(edge, "/metrics").decode()
    assert "\nnats_edge_mqtt_msgs_in 1\n" in metrics and "\nnats_edge_mqtt_retained 1\n" in metrics
    conns = _monitor(edge, "/connz?subs=1")["connections"]
    (entry,) = [e for e in conns if e.get("mqtt_client")]
    assert (entry["mqtt_client"], entry["type"], sorted(entry["subscriptions_list"])) == (
        "kitchen sensor", "mqtt", ["kitchen", "kitchen.>"])
    (device,) = _monitor(edge, "/devicez?adapter=mqtt")["devices"]
    assert (device["id"], device["online"], device["readings"], device["persistent"], device["subscriptions"]) == (
        "kitchen sensor", True, 1, True, ["kitchen/#"])
    nc = await nats.connect(edge.url)
    try:  # the gateway's device list on NATS lists it too
        reply = await nc.request("edge.gw1.devices", b"", timeout=5)
    finally:
        await nc.close()
    assert "kitchen sensor" in reply.data.decode()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edge", "mqtt", "-c", str(edge.conf), "--json", stdout=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 30)
    listing = json.loads(stdout)
    assert [(s["client_id"], s["subscriptions"]) for s in listing["sessions"]] == [("kitchen sensor", {"kitchen/#": 1})]
    assert listing["retained"] == [{"topic": "kitchen/temp", "bytes": 2, "qos": 1}]


async def test_a_plain_broker_imports_no_mqtt_code(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-X", "importtime", "-m", "edge", "run", "-a", "127.0.0.1", "-p", "-1",
        stderr=asyncio.subprocess.PIPE)
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        while True:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, "the broker exited before it was ready"
            seen.append(line)
            if "Server is ready" in line:
                break
    finally:
        proc.terminate()
        await proc.wait()
    imported = [ln.rsplit("|", 1)[1].strip() for ln in seen if ln.startswith("import time:")]
    assert "edge.runtime.broker" in imported
    assert [m for m in imported if "mqtt" in m] == []


async def test_an_offline_session_queue_is_bounded_with_counted_drops(tmp_path: Path, clients: list[Paho]) -> None:
    edge = Edge(tmp_path, mqtt_extra="max_session_msgs = 5")
    try:
        away = paho_client(edge.mqtt_port, "away", clean=False)
        await asyncio.to_thread(away.subscribe, "b/#", 1)
        away.close()
        pub = _connect(clients, edge.mqtt_port, "pub")
        for i in range(12):
            await asyncio.to_thread(pub.publish, "b/n", b"%d" % i, 1)
        back = _connect(clients, edge.mqtt_port, "away", clean=False)
        got = [int((await asyncio.to_thread(back.get)).payload) for _ in range(5)]
        assert got == [7, 8, 9, 10, 11]  # the oldest were dropped
        assert _varz(edge)["mqtt"]["dropped_session_full"] == 7
    finally:
        edge.stop()


# -- through a real leaf link to a hub ------------------------------------------------------------


async def test_mqtt_through_the_leaf_link_both_ways(tmp_path: Path, clients: list[Paho]) -> None:
    from tests.integration.test_leaf import FAST, start_hub, wait_interest, wait_leaf_connected

    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port)
    edge = Edge(tmp_path, FAST + f'\n[[leafnodes.remotes]]\nurls = ["nats-leaf://127.0.0.1:{leaf_port}"]\n')
    try:
        await wait_leaf_connected(hub)
        device = _connect(clients, edge.mqtt_port, "device")
        await asyncio.to_thread(device.subscribe, "cloud/#", 1)
        await wait_interest(hub, "cloud.>")
        nc = await nats.connect(hub.url)
        try:
            await nc.publish("cloud.cmd.reboot", b"now")
            await nc.flush()
            got = await asyncio.to_thread(device.get)
            assert (got.topic, got.payload) == ("cloud/cmd/reboot", b"now")
            up = await nc.subscribe("up.>")
            await nc.flush()

            async def arrived() -> bool:  # the hub's interest reaches the gateway asynchronously
                await asyncio.to_thread(device.publish, "up/probe", b"p", 0)
                try:
                    await up.next_msg(timeout=0.1)
                except TimeoutError:
                    return False
                return True

            await async_wait_for(arrived, 15, "the hub's interest in up.> at the gateway")
            await asyncio.to_thread(device.publish, "up/reading", b"42", 1)
            while (msg := await up.next_msg(timeout=5)).subject == "up.probe":
                pass
            assert (msg.subject, msg.data, msg.headers) == ("up.reading", b"42", {"Nmqtt-Pub": "1"})
        finally:
            await nc.close()
    finally:
        edge.stop()
        hub.stop()


async def test_tls_on_the_mqtt_port(tmp_path: Path, clients: list[Paho]) -> None:
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    (tmp_path / "server.pem").write_bytes(cert.cert_chain_pems[0].bytes())
    (tmp_path / "server-key.pem").write_bytes(cert.private_key_pem.bytes())
    edge = Edge(tmp_path, mqtt_extra=f'[mqtt.tls]\ncert_file = "{tmp_path / "server.pem"}"\n'
                                     f'key_file = "{tmp_path / "server-key.pem"}"\n')
    try:
        c = _connect(clients, edge.mqtt_port, "secure", ca_file=str(tmp_path / "ca.pem"))
        assert await asyncio.to_thread(c.subscribe, "s/#", 1) == [1]
        await asyncio.to_thread(c.publish, "s/1", b"over tls", 1)
        got = await asyncio.to_thread(c.get)
        assert (got.topic, got.payload) == ("s/1", b"over tls")
        plain = RawMQTT(edge.mqtt_port)  # a client speaking plain MQTT to the TLS port gets nothing back
        plain.send(P.encode_connect(P.Connect("plain", True, 0)))
        assert plain.closed_by_server()
        plain.close()
    finally:
        edge.stop()


# -- QoS 1 into the outbox across a hub outage ----------------------------------------------------


async def test_qos1_into_the_outbox_across_a_hub_outage_reaches_the_hub_in_order(tmp_path: Path) -> None:
    """The hub is down while a device publishes N QoS 1 messages, each PUBACKed; once a new hub is up,
    it receives all N, in order, exactly once."""
    from tests.integration.test_store_forward import Rig, edge_conf, hub_collector, wait_leaf

    n = 50
    rig = Rig(tmp_path)
    try:
        await rig.start_hub()
        assert rig.hub is not None and rig.proxy is not None
        mqtt_port = free_port()
        rig.conf.parent.mkdir()
        rig.conf.write_text(edge_conf(rig.proxy.port, rig.outbox)
                            + f'\n[mqtt]\nport = {mqtt_port}\ndir = "{tmp_path / "mqtt"}"\n')
        rig.start_edge()
        wait_for(lambda: _listening(mqtt_port), 10, "the MQTT port to accept connections")
        await wait_leaf(rig.hub)
        rig.kill_hub()
        await _wait_leaf_down_at_gateway(rig)

        device = paho_client(mqtt_port, "meter")
        try:
            for i in range(n):  # each returns once its PUBACK arrived: durable in the outbox by then
                await asyncio.to_thread(device.publish, "telemetry/meter/kwh", b"%d" % i, 1)
        finally:
            device.close()
        m = await rig.metrics()
        assert (m["appended"], m["depth_msgs"], m["confirmed"]) == (n, n, 0)

        # The gateway is kept out until the new hub has its subscriber (nothing would be there to see it).
        rig.proxy.cut()
        hub = rig.restart_hub()
        got = await hub_collector(await rig.connect(hub))
        rig.proxy.restore()
        await async_wait_for(lambda: len(got) >= n, 30, "the stored messages at the hub", interval=0.02)
        await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 20, "everything confirmed", interval=0.02)
        assert [(msg.subject, msg.data) for msg in got] == [("telemetry.meter.kwh", b"%d" % i) for i in range(n)]
        assert all((msg.headers or {}).get("Nmqtt-Pub") == "1" for msg in got)
        assert (await rig.metrics())["confirmed"] == n
    finally:
        await rig.close()


async def _wait_leaf_down_at_gateway(rig: Any) -> None:
    """The gateway has noticed the hub is gone (its leaf count in /varz is 0)."""

    def down() -> bool:
        with urllib.request.urlopen(rig.edge.url_of("monitoring") + "/varz", timeout=5) as resp:
            return json.loads(resp.read()).get("leafnodes") == 0

    await async_wait_for(lambda: asyncio.to_thread(down), 20, "the gateway to see the leaf link down")
