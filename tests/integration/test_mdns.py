"""mDNS end to end, with real multicast on loopback: a nats-edge process with ``[mdns]``, services
registered by the test's own zeroconf, a small local HTTP server playing a Shelly / a JSON sensor, and a
nats-py client watching the subjects.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.waiting import async_wait_for

zeroconf = pytest.importorskip("zeroconf")
from zeroconf import IPVersion, ServiceInfo, ServiceStateChange, Zeroconf  # noqa: E402
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf  # noqa: E402

pytestmark = pytest.mark.timeout(90)

UID = uuid.uuid4().hex[:6]
GW = f"gw-{UID}"
WAIT = 20.0

CONFIG = f"""
server_name = "{GW}"
http_port = -1

[mdns]
interfaces = ["127.0.0.1"]
resolve_timeout = "2s"

[[mdns.matchers]]
type = "_http._tcp"
name = "thsensor*"
properties = {{ model = "th*" }}
kind = "thsensor"
poller = "thsensor"

[mdns.pollers.thsensor]
path = "/api/status"
fields = {{ temperature = {{ path = "sensors.0.temp", unit = "°C" }}, humidity = "sensors.0.rh" }}
interval = "0.2s"
timeout = "0.5s"
max_backoff = "0.4s"
offline_after = 2
max_bytes = 4096

[mdns.pollers.shelly]
interval = "0.2s"
timeout = "0.5s"
max_backoff = "0.4s"
offline_after = 2
"""

SHELLY_STATUS = {
    "sys": {"uptime": 1234},
    "wifi": {"rssi": -61},
    "switch:0": {"id": 0, "output": True, "apower": 12.5, "voltage": 231.0, "aenergy": {"total": 99.5},
                 "temperature": {"tC": 41.2, "tF": 106.2}},
    "temperature:0": {"id": 0, "tC": 21.5},
}


class FakeDevice:
    """A tiny HTTP server whose behaviour the test switches: json, garbage, hang, huge."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.mode = "json"
        self.requests = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):  # the hung connections too
            w.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.mode == "hang":
                await reader.read()  # until the client gives up
                return
            if self.mode == "garbage":
                writer.write(b"\x00\xffnot http at all\r\n\r\n{{{")
            elif self.mode == "huge":
                writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"[" + b"1," * 100_000 + b"1]")
            else:
                data = json.dumps(self.body).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % len(data) + data)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@pytest.fixture(scope="module")
def decoy() -> Iterator[Zeroconf]:
    """Another 'gateway' already advertising the same instance name before ours starts."""
    zc = Zeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    info = ServiceInfo("_nats._tcp.local.", f"{GW}._nats._tcp.local.", port=1,
                       addresses=[socket.inet_aton("127.0.0.1")], properties={"gateway": GW, "server_id": "DECOY"},
                       server=f"decoy-{UID}.local.")
    zc.register_service(info)
    yield zc
    zc.unregister_all_services()
    zc.close()


@pytest.fixture(scope="module")
def gateway(decoy: Zeroconf, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("mdns")
    conf = workdir / "edge.toml"
    conf.write_text(CONFIG)
    sp = start_nats_edge(workdir, "-c", str(conf))
    yield sp
    code = sp.stop()
    assert code == 0, f"nats-edge exited with {code}:\n{sp.log()}"


@pytest.fixture
async def azc() -> AsyncIterator[AsyncZeroconf]:
    z = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    yield z
    await z.async_unregister_all_services()
    await z.async_close()


@pytest.fixture
async def nc(gateway: ServerProcess) -> AsyncIterator[Any]:
    client = await nats.connect(gateway.url)
    yield client
    await client.drain()


async def watch(nc: Any, subject: str) -> asyncio.Queue[tuple[str, dict[str, Any]]]:
    q: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        q.put_nowait((msg.subject, json.loads(msg.data)))

    await nc.subscribe(subject, cb=cb)
    await flush(nc)
    return q


async def expect(q: asyncio.Queue[tuple[str, dict[str, Any]]], suffix: str, timeout: float = WAIT) -> dict[str, Any]:
    """The first message whose subject ends with ``suffix`` (others are skipped), within ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            subject, body = await q.get()
            if subject.endswith(suffix):
                return body


def service(type_: str, instance: str, port: int, props: Any) -> AsyncServiceInfo:
    return AsyncServiceInfo(type_, f"{instance}.{type_}", port=port, addresses=[socket.inet_aton("127.0.0.1")],
                            properties=props, server=f"{instance}.local.")


async def stats(nc: Any) -> dict[str, int]:
    msg = await nc.request(f"edge.{GW}.mdns.stats", b"", timeout=5)
    return json.loads(msg.data)["counters"]


async def test_esphome_discovered_listed_and_lost(nc: Any, azc: AsyncZeroconf) -> None:
    dev = f"esphome-{UID}"
    events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
    info = service("_esphomelib._tcp.local.", dev, 6053, {"version": "2024.6.0", "mac": "a4c138001122"})
    await (await azc.async_register_service(info))
    body = await expect(events, ".discovered")
    assert body["kind"] == "esphome"
    assert body["port"] == 6053 and body["addresses"] == ["127.0.0.1"]
    assert body["txt"] == {"version": "2024.6.0", "mac": "a4c138001122"}
    assert body["ts"].endswith("Z")

    reply = json.loads((await nc.request(f"edge.{GW}.devices", b"", timeout=5)).data)
    mine = [d for d in reply["devices"] if d["device"] == dev]
    assert len(mine) == 1 and mine[0]["adapter"] == "mdns" and mine[0]["state"] == "online"
    assert mine[0]["info"]["kind"] == "esphome" and mine[0]["last_seen"].endswith("Z")
    filtered = json.loads((await nc.request(f"edge.{GW}.devices", b'{"adapter": "ble"}', timeout=5)).data)
    assert filtered["devices"] == []

    await (await azc.async_unregister_service(info))
    await expect(events, ".lost")
    reply = json.loads((await nc.request(f"edge.{GW}.devices", b"", timeout=5)).data)
    assert all(d["device"] != dev for d in reply["devices"])


def _statusz(gateway: ServerProcess) -> dict[str, Any]:
    with urllib.request.urlopen(gateway.url_of("monitoring") + "/statusz", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def test_shelly_polled_then_offline_then_lost(nc: Any, azc: AsyncZeroconf, gateway: ServerProcess) -> None:
    http = FakeDevice(SHELLY_STATUS)
    await http.start()
    try:
        dev = f"shellyplus1pm-{UID}"
        events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
        readings = await watch(nc, f"dev.{GW}.mdns.{dev}.*")
        info = service("_http._tcp.local.", dev, http.port, {"gen": "2", "app": "Plus1PM", "ver": "1.4.4"})
        await (await azc.async_register_service(info))
        body = await expect(events, ".discovered")
        assert body["kind"] == "shelly" and body["port"] == http.port
        power = await expect(readings, ".switch0_power")
        assert power["value"] == 12.5 and power["unit"] == "W" and power["ts"].endswith("Z")
        temp = await expect(readings, ".temperature0")
        assert temp == {"value": 21.5, "unit": "°C", "ts": temp["ts"]}
        await expect(events, ".online")
        # The status page has the polled channels, with their history (its sparklines).
        page = await asyncio.to_thread(_statusz, gateway)
        entry = next(d for d in page["devices"] if (d["adapter"], d["id"]) == ("mdns", dev))
        channels = {c["name"]: c for c in entry["channels"]}
        assert (channels["temperature0"]["value"], channels["temperature0"]["unit"]) == (21.5, "°C")
        assert channels["switch0_power"]["series"]["values"][-1] == 12.5

        http.mode = "hang"
        offline = await expect(events, ".offline")
        assert offline["failures"] >= 2
        assert (await stats(nc)).get("poll_timeout", 0) >= 2

        await (await azc.async_unregister_service(info))
        await expect(events, ".lost")
    finally:
        await http.stop()


async def test_generic_poller_garbage_hang_huge_then_recovers(nc: Any, azc: AsyncZeroconf) -> None:
    http = FakeDevice({"sensors": [{"temp": 19.25, "rh": 48}]})
    http.mode = "garbage"
    await http.start()
    try:
        dev = f"thsensor-{UID}"
        events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
        readings = await watch(nc, f"dev.{GW}.mdns.{dev}.*")
        info = service("_http._tcp.local.", dev, http.port, {"model": "th2"})
        await (await azc.async_register_service(info))
        body = await expect(events, ".discovered")
        assert body["kind"] == "thsensor"
        await expect(events, ".offline")  # garbage twice -> offline, never online
        assert (await stats(nc))["poll_bad_http"] >= 2
        http.mode = "huge"
        async def too_large_counted() -> bool:
            return (await stats(nc)).get("poll_too_large", 0) >= 1

        await async_wait_for(too_large_counted, WAIT, "the oversize poll to be counted", interval=0.05)
        assert readings.empty()

        http.mode = "json"
        temp = await expect(readings, ".temperature")
        assert temp["value"] == 19.25 and temp["unit"] == "°C"
        hum = await expect(readings, ".humidity")
        assert hum["value"] == 48 and "unit" not in hum
        await expect(events, ".online")
        await (await azc.async_unregister_service(info))
        lost = [await expect(events, ".offline"), await expect(events, ".lost")]
        assert lost[0]["reason"] == "lost"
    finally:
        await http.stop()


async def test_malformed_txt_is_counted_and_skipped(nc: Any, azc: AsyncZeroconf) -> None:
    dev = f"esphome-bad-{UID}"
    events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
    before = (await stats(nc)).get("txt_malformed", 0)
    # Raw TXT: a good key, a non-UTF-8 key, an empty key, a key with a non-UTF-8 value, a control char.
    raw = b"".join(bytes([len(s)]) + s for s in (b"version=1.0", b"\xff\xfe=x", b"=novalue", b"ok=\xc3\x28",
                                                 b"ctl=a\x01b"))
    info = service("_esphomelib._tcp.local.", dev, 6053, raw)
    await (await azc.async_register_service(info))
    body = await expect(events, ".discovered")
    assert body["txt"] == {"version": "1.0"}
    assert (await stats(nc))["txt_malformed"] >= before + 3
    await (await azc.async_unregister_service(info))
    await expect(events, ".lost")


async def test_gateway_advertisement_resolves_and_accepts_clients(gateway: ServerProcess, azc: AsyncZeroconf) -> None:
    found: asyncio.Queue[str] = asyncio.Queue()

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            found.put_nowait(name)

    browser = AsyncServiceBrowser(azc.zeroconf, ["_nats._tcp.local."], handlers=[on_change])
    try:
        ours: AsyncServiceInfo | None = None
        async with asyncio.timeout(WAIT):
            while ours is None:
                name = await found.get()
                info = AsyncServiceInfo("_nats._tcp.local.", name)
                if await info.async_request(azc.zeroconf, 3000) and info.properties.get(b"gateway") == GW.encode() \
                        and info.properties.get(b"server_id") != b"DECOY":
                    ours = info
        # The decoy held the name first: ours was renamed, not refused.
        assert ours.name == f"{GW}-2._nats._tcp.local."
        assert ours.properties[b"version"] and ours.properties[b"tls"] == b"false"
        assert ours.properties[b"auth"] == b"false"
        assert ours.port == gateway.port
        addr = ours.parsed_addresses()[0]
        client = await nats.connect(f"nats://{addr}:{ours.port}")
        try:
            assert client.connected_url is not None
            await flush(client)
        finally:
            await client.close()
    finally:
        await browser.async_cancel()
