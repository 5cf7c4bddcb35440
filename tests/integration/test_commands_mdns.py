"""Commands to mDNS/HTTP devices, with real multicast on loopback: a nats-edge process with ``[mdns]``,
local HTTP servers on 127.0.0.1 playing a Shelly Gen2 device and a generic JSON device (each records
what it received), advertised by the test's own zeroconf; nats-py requests on ``cmd.<gw>.mdns.>``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from edge.adapters.mdns.actions import SHELLY_ACTIONS
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge

zeroconf = pytest.importorskip("zeroconf")
from zeroconf import IPVersion  # noqa: E402
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf  # noqa: E402

pytestmark = pytest.mark.timeout(90)

UID = uuid.uuid4().hex[:6]
GW = f"gwc-{UID}"
WAIT = 20.0

CONFIG = f"""
server_name = "{GW}"

[mdns]
interfaces = ["127.0.0.1"]
advertise = false
resolve_timeout = "2s"

[[mdns.matchers]]
type = "_http._tcp"
name = "relaybox*"
kind = "relaybox"
poller = "relaybox"

[mdns.pollers.relaybox]
path = "/api/status"
fields = {{ relay = "relay" }}
interval = "0.2s"
timeout = "0.5s"
max_backoff = "0.4s"
offline_after = 2

[mdns.pollers.relaybox.actions.relay]
method = "POST"
path = "/api/relay"
body = '{{"on": {{on}}}}'
result = "relay"

[mdns.pollers.relaybox.actions.dim]
method = "GET"
path = "/api/dim?level={{level}}&name={{name}}"

[mdns.pollers.shelly]
interval = "0.2s"
timeout = "0.5s"
max_backoff = "0.4s"
offline_after = 2
"""


class RecordingDevice:
    """A small HTTP/1.1 server: answers GETs of its status and POSTs of commands, records every request
    ``(method, path, body)``; ``hang_commands`` makes it swallow command requests without answering."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.on = True
        self.requests: list[tuple[str, str, bytes]] = []
        self.hang_commands = False
        self.hang_all = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.close()
        await self.server.wait_closed()

    def commands(self) -> list[tuple[str, str, bytes]]:
        return [r for r in self.requests if "tatus" not in r[1]]

    async def wait_commands(self, n: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.commands()) < n:
                self.arrived.clear()
                await self.arrived.wait()

    def _answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if self.kind == "shelly":
            if path == "/rpc/Shelly.GetStatus":
                return 200, {"switch:0": {"id": 0, "output": self.on, "apower": 1.0}}
            req = json.loads(body)
            params = req.get("params", {})
            base = {"id": req["id"], "src": "shellyplus1-fake"}
            if params.get("id", 0) != 0:
                message = f"Argument 'id', value {params['id']} not found!"
                return 200, {**base, "error": {"code": -105, "message": message}}
            if req["method"] == "Switch.Set":
                was, self.on = self.on, params["on"]
                return 200, {**base, "result": {"was_on": was}}
            if req["method"] == "Switch.Toggle":
                was, self.on = self.on, not self.on
                return 200, {**base, "result": {"was_on": was}}
            return 200, {**base, "error": {"code": 404, "message": f"No handler for {req['method']}"}}
        if path == "/api/status":
            return 200, {"relay": self.on}
        if path == "/api/relay" and method == "POST":
            self.on = json.loads(body)["on"]
            return 200, {"relay": self.on, "since": 0}
        if path.startswith("/api/dim"):
            return 500, {"error": "dimmer broken"}
        return 404, None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((method, path, body))
            self.arrived.set()
            is_command = "tatus" not in path
            if self.hang_all or (self.hang_commands and is_command):
                await reader.read()  # until the client gives up
                return
            status, doc = self._answer(method, path, body)
            data = b"" if doc is None else json.dumps(doc).encode()
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                         % (status, len(data)) + data)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            writer.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("mdnscmd")
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
    async with asyncio.timeout(timeout):
        while True:
            subject, body = await q.get()
            if subject.endswith(suffix):
                return body


async def advertise(azc: AsyncZeroconf, instance: str, port: int, props: dict[str, str]) -> AsyncServiceInfo:
    info = AsyncServiceInfo("_http._tcp.local.", f"{instance}._http._tcp.local.", port=port,
                            addresses=[socket.inet_aton("127.0.0.1")], properties=props, server=f"{instance}.local.")
    await (await azc.async_register_service(info))
    return info


async def request(nc: Any, subject: str, payload: bytes = b"") -> dict[str, Any]:
    return json.loads((await nc.request(subject, payload, timeout=10)).data)


async def test_shelly_gen2_rpc_commands(nc: Any, azc: AsyncZeroconf) -> None:
    shelly = RecordingDevice("shelly")
    await shelly.start()
    try:
        dev = f"shellyplus1-{UID}"
        events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
        await advertise(azc, dev, shelly.port, {"gen": "2", "app": "Plus1", "ver": "1.4.4"})
        await expect(events, ".online")
        cmd = f"cmd.{GW}.mdns.{dev}"
        assert await request(nc, f"{cmd}.switch_set", b'{"on": false}') == {"ok": True, "result": {"was_on": True}}
        assert shelly.on is False
        method, path, body = shelly.commands()[-1]
        assert (method, path) == ("POST", "/rpc")
        assert json.loads(body) == {"id": 1, "src": "nats-edge", "method": "Switch.Set",
                                    "params": {"id": 0, "on": False}}
        audit = await expect(events, ".command")
        assert (audit["action"], audit["ok"], audit["result"]) == ("switch_set", True, {"was_on": True})
        assert await request(nc, f"{cmd}.switch_toggle") == {"ok": True, "result": {"was_on": False}}
        assert shelly.on is True
        sent = len(shelly.commands())
        assert await request(nc, f"{cmd}.switch_set", b'{"on": "off"}') == {
            "ok": False, "code": "bad_arguments", "error": "'on' must be true or false"}
        assert await request(nc, f"{cmd}.cover_go_to_position", b'{"pos": 150}') == {
            "ok": False, "code": "bad_arguments", "error": "'pos' must be an integer from 0 to 100"}
        reply = await request(nc, f"{cmd}.explode")
        assert reply["code"] == "unsupported" and reply["error"].startswith("unknown action 'explode'; actions: ")
        assert len(shelly.commands()) == sent  # refused before anything was sent
        # The device's own RPC errors: no such component, no such method.
        assert await request(nc, f"{cmd}.switch_set", b'{"id": 5, "on": true}') == {
            "ok": False, "code": "unsupported", "error": "Shelly: Argument 'id', value 5 not found!"}
        assert await request(nc, f"{cmd}.rpc", b'{"method": "Cover.Calibrate"}') == {
            "ok": False, "code": "unsupported", "error": "Shelly: No handler for Cover.Calibrate"}
        devices = await request(nc, f"edge.{GW}.devices", b'{"adapter": "mdns"}')
        row = next(d for d in devices["devices"] if d["device"] == dev)
        assert row["actions"] == list(SHELLY_ACTIONS)
        # A device that hangs: its command times out (the poller's 0.5 s), another device is not held up.
        other = RecordingDevice("generic")
        await other.start()
        try:
            box = f"relaybox-{UID}"
            box_events = await watch(nc, f"evt.{GW}.mdns.{box}.online")
            await advertise(azc, box, other.port, {})
            await expect(box_events, ".online")
            shelly.hang_commands = True
            before = len(shelly.commands())
            hung = asyncio.ensure_future(request(nc, f"{cmd}.switch_toggle"))
            await shelly.wait_commands(before + 1)  # the hung request has reached the device
            started = time.monotonic()
            assert await request(nc, f"cmd.{GW}.mdns.{box}.relay", b'{"on": false}') == {"ok": True, "result": False}
            assert time.monotonic() - started < 0.5 and not hung.done()
            assert await hung == {"ok": False, "code": "timeout", "error": f"no answer from {dev} within 0.5s"}
        finally:
            await other.stop()
        # Unreachable: polls fail, the device goes offline, a command is refused at once.
        shelly.hang_all = True
        await expect(events, ".offline")
        started = time.monotonic()
        reply = await request(nc, f"{cmd}.switch_toggle")
        assert reply["code"] == "offline" and time.monotonic() - started < 0.4
    finally:
        await shelly.stop()


async def test_generic_http_action_table(nc: Any, azc: AsyncZeroconf) -> None:
    box = RecordingDevice("generic")
    await box.start()
    try:
        dev = f"relaybox-g{UID}"
        events = await watch(nc, f"evt.{GW}.mdns.{dev}.*")
        await advertise(azc, dev, box.port, {})
        await expect(events, ".online")
        cmd = f"cmd.{GW}.mdns.{dev}"
        assert await request(nc, f"{cmd}.relay", b'{"on": false}') == {"ok": True, "result": False}
        assert box.commands()[-1] == ("POST", "/api/relay", b'{"on": false}')
        assert await request(nc, f"{cmd}.relay", b"{}") == {
            "ok": False, "code": "bad_arguments", "error": "missing argument 'on'"}
        assert await request(nc, f"{cmd}.dim", b'{"level": 40, "name": "a b&c"}') == {
            "ok": False, "code": "failed", "error": "the device answered HTTP 500"}
        assert box.commands()[-1] == ("GET", "/api/dim?level=40&name=a%20b%26c", b"")
        assert await request(nc, f"{cmd}.open") == {
            "ok": False, "code": "unsupported", "error": "unknown action 'open'; actions: relay, dim"}
        devices = await request(nc, f"edge.{GW}.devices", b'{"adapter": "mdns"}')
        assert next(d for d in devices["devices"] if d["device"] == dev)["actions"] == ["relay", "dim"]
        assert await request(nc, f"cmd.{GW}.mdns.nosuch-{UID}.relay") == {
            "ok": False, "code": "unknown_device", "error": f"no mDNS device 'nosuch-{UID}' is known"}
    finally:
        await box.stop()
