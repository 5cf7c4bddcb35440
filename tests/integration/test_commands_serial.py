"""Commands down to serial line devices: real ptys, real pyserial in the broker process, nats-py requests.

The simulated relay (firmware_bridge.simulator) answers on the master side of its pty, driven by a
loop reader (no polling); other ports have nobody answering (timeouts, a flood) or speak ``lines``/``nmea``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import NoRespondersError

from firmware_bridge.micropython import device_commands
from firmware_bridge.simulator import ACTIONS, LINES_COMMAND_TEMPLATE, Simulator
from tests.integration.test_serial import collect, devicez, next_where
from tests.support.natsclient import flush
from tests.support.processes import start_nats_edge
from tests.support.ptys import PtyDevice, point

pytestmark = pytest.mark.timeout(120)
GW = "gw1"
JSONL_OPTS = '{ device_field = "id", ts_field = "ts" }'


def _table(name: str, link: Path, codec: str, extra: str) -> str:
    opts = {"jsonl": JSONL_OPTS, "lines": '{ pattern = "T=(?P<t>\\\\S+)" }'}.get(codec, "{}")
    return (f'[[adapters.serial]]\nname = "{name}"\nport = "{link}"\ndevice = "{name}"\ncodec = "{codec}"\n'
            f'codec_options = {opts}\nreopen_min = "0.05s"\nreopen_max = "0.2s"\n{extra}\n')


class SimDriver:
    """The device side of a pty: feeds what the gateway writes to the simulator, writes its replies back.
    Runs on the test's loop as a reader of the master fd; ``received`` holds every byte the gateway wrote."""

    def __init__(self, dev: PtyDevice, sim: Simulator | None) -> None:
        self.dev, self.sim = dev, sim
        self.received = bytearray()
        self.arrived = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(dev.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.dev.master, 65536)
        except (BlockingIOError, OSError):
            return
        self.received += data
        self.arrived.set()
        if self.sim is not None:
            reply = self.sim.receive(data)
            if reply:
                self.dev.write(reply)

    async def lines(self, n: int, timeout: float = 10.0) -> list[bytes]:
        async with asyncio.timeout(timeout):
            while self.received.count(b"\n") < n:
                self.arrived.clear()
                await self.arrived.wait()
        return bytes(self.received).splitlines()[:n]

    def stop(self) -> None:
        self.loop.remove_reader(self.dev.master)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("cmds")
    byid = work / "by-id"
    byid.mkdir()
    actions = json.dumps(list(ACTIONS))
    ports = {
        "relay": ("jsonl", f"actions = {actions}\ncommand_timeout = \"3s\"\n"),
        "mute": ("jsonl", 'command_timeout = "1s"\nmax_pending_commands = 4\n'),
        "lamp": ("lines", f'actions = ["relay"]\ncommand_template = "{LINES_COMMAND_TEMPLATE}"\n'),
        "blind": ("jsonl", 'command_reply = false\n'),
        "gps": ("nmea", ""),
        "plug": ("jsonl", 'command_timeout = "5s"\n'),
        "mpy": ("jsonl", 'actions = ["relay"]\n'),
    }
    devices = {name: PtyDevice(byid / name) for name in ports}
    conf = [f'server_name = "{GW}"\nhttp_port = -1\n']
    conf += [_table(name, byid / name, codec, extra) for name, (codec, extra) in ports.items()]
    (work / "edge.toml").write_text("".join(conf))
    sp = start_nats_edge(work, "-c", str(work / "edge.toml"))
    try:
        yield {"server": sp, "devices": devices, "byid": byid}
    finally:
        code = sp.stop()
        for d in devices.values():
            d.close()
        assert code == 0, sp.log()


@pytest.fixture
async def nc(rig: dict[str, Any]) -> AsyncIterator[Any]:
    client = await nats.connect(rig["server"].url)
    try:
        yield client
    finally:
        await client.close()


async def request(nc: Any, subject: str, payload: bytes = b"", timeout: float = 10.0) -> dict[str, Any]:
    return json.loads((await nc.request(subject, payload, timeout=timeout)).data)


async def wait_served(nc: Any, device: str) -> None:
    """Until the device's command subject is served and its port open (the adapters start after the
    broker). A payload that is not an object is refused by the contract before it reaches a port."""
    async with asyncio.timeout(20):
        while True:
            try:
                reply = await request(nc, f"cmd.{GW}.serial.{device}.probe", b"[]", timeout=2)
            except NoRespondersError:
                reply = {}
            if reply.get("code") == "bad_arguments":
                devices = await request(nc, f"edge.{GW}.devices", b'{"adapter": "serial"}')
                if any(d["device"] == device and d["state"] == "online" for d in devices["devices"]):
                    return
            await asyncio.sleep(0.05)  # poll with a deadline


async def test_relay_switched_by_request_with_envelope_and_event(rig: dict[str, Any], nc: Any) -> None:
    sim = Simulator("jsonl", device="relay", seed=1)
    driver = SimDriver(rig["devices"]["relay"], sim)
    try:
        await wait_served(nc, "relay")
        events = await collect(nc, f"evt.{GW}.serial.relay.command")
        reply = await request(nc, f"cmd.{GW}.serial.relay.relay", b'{"on": true}')
        assert reply == {"ok": True, "result": {"relay": True}}
        assert sim.relay is True and sim.commands[-1] == ("relay", {"on": True})
        line = json.loads(driver.received.splitlines()[-1])
        assert line["cmd"] == "relay" and line["args"] == {"on": True} and isinstance(line["cid"], str)
        evt = json.loads((await next_where(events, lambda m: True)).data)
        assert {k: evt[k] for k in ("action", "args", "ok", "result")} == {
            "action": "relay", "args": {"on": True}, "ok": True, "result": {"relay": True}}
        assert evt["ts"].endswith("Z") and evt["ms"] >= 0
        assert await request(nc, f"cmd.{GW}.serial.relay.toggle") == {"ok": True, "result": {"relay": False}}
        # The device's own refusal keeps its code; the action list is checked before anything is written.
        assert await request(nc, f"cmd.{GW}.serial.relay.relay", b'{"on": "yes"}') == {
            "ok": False, "code": "bad_arguments", "error": "'on' must be true or false"}
        written = len(driver.received)
        assert await request(nc, f"cmd.{GW}.serial.relay.dance") == {
            "ok": False, "code": "unsupported", "error": "unknown action 'dance'; actions: relay, toggle, read"}
        assert await request(nc, f"cmd.{GW}.serial.relay.relay", b"[1, 2]") == {
            "ok": False, "code": "bad_arguments", "error": "the payload must be a JSON object, not list"}
        assert await request(nc, f"cmd.{GW}.serial.relay.relay", b"{nope") == {
            "ok": False, "code": "bad_arguments", "error": "the payload must be a JSON object of arguments"}
        assert len(driver.received) == written  # none of the three reached the device
        bad = json.loads((await next_where(events, lambda m: json.loads(m.data)["action"] == "dance")).data)
        assert bad["ok"] is False and bad["code"] == "unsupported"
        # Readings keep flowing on the same port, and a reply line never becomes a reading.
        readings = await collect(nc, f"dev.{GW}.serial.relay.>")
        rig["devices"]["relay"].write(sim.next_chunk(1_790_000_000.0))
        got = await next_where(readings, lambda m: True)
        assert got.subject.rsplit(".", 1)[1] in ("temperature", "humidity", "pressure", "battery")
        assert (await request(nc, f"cmd.{GW}.serial.relay.read"))["result"] == sim.latest
        # The device list names the actions.
        devices = await request(nc, f"edge.{GW}.devices", b'{"adapter": "serial"}')
        row = next(d for d in devices["devices"] if d["device"] == "relay")
        assert row["actions"] == list(ACTIONS)
        assert row["info"]["counters"]["replies_unmatched"] == 0
    finally:
        driver.stop()


async def test_timeout_and_flood_bounded_queue(rig: dict[str, Any], nc: Any) -> None:
    driver = SimDriver(rig["devices"]["mute"], None)  # reads, never answers
    try:
        await wait_served(nc, "mute")
        before = next(r for r in devicez(rig["server"]) if r["id"] == "mute")["counters"]
        started = time.monotonic()
        reply = await request(nc, f"cmd.{GW}.serial.mute.blink", b'{"n": 1}')
        assert reply == {"ok": False, "code": "timeout", "error": "no answer from mute within 1s"}
        assert 0.9 <= time.monotonic() - started < 5
        line = json.loads(bytes(driver.received).splitlines()[-1])
        assert (line["cmd"], line["args"]) == ("blink", {"n": 1})
        # 12 at once on a queue of 4: 4 are taken (and time out, nobody answers), 8 are refused at once.
        replies = await asyncio.gather(*(request(nc, f"cmd.{GW}.serial.mute.blink", b"{}") for _ in range(12)))
        codes = sorted(r["code"] for r in replies)
        assert codes == ["busy"] * 8 + ["timeout"] * 4
        busy = next(r for r in replies if r["code"] == "busy")
        assert busy["error"] == "4 commands already queued on this port"
        after = next(r for r in devicez(rig["server"]) if r["id"] == "mute")["counters"]
        assert after["commands_refused"] - before["commands_refused"] == 8
        # One at a time: the second was written only after the first gave up, never interleaved.
        assert all(json.loads(x)["cmd"] == "blink" for x in bytes(driver.received).splitlines())
    finally:
        driver.stop()


async def test_lines_template_nmea_unsupported_and_no_reply_mode(rig: dict[str, Any], nc: Any) -> None:
    sim = Simulator("lines", device="lamp")
    driver = SimDriver(rig["devices"]["lamp"], sim)
    blind = SimDriver(rig["devices"]["blind"], None)
    try:
        await wait_served(nc, "lamp")
        assert await request(nc, f"cmd.{GW}.serial.lamp.relay", b'{"on": true}') == {"ok": True, "result": None}
        assert await driver.lines(1) == [b"RELAY 1"]
        assert sim.relay is True  # the driver fed the line to the device in the same callback
        assert await request(nc, f"cmd.{GW}.serial.lamp.relay", b"{}") == {
            "ok": False, "code": "bad_arguments", "error": "missing argument 'on'"}
        assert await request(nc, f"cmd.{GW}.serial.lamp.relay", b'{"on": "1\\nREBOOT"}') == {
            "ok": False, "code": "bad_arguments", "error": "argument 'on' must not contain a line break"}
        await wait_served(nc, "gps")
        reply = await request(nc, f"cmd.{GW}.serial.gps.reset")
        assert reply == {"ok": False, "code": "unsupported",
                         "error": f"port {rig['byid'] / 'gps'} takes no commands: an nmea device takes no commands"}
        await wait_served(nc, "blind")
        assert await request(nc, f"cmd.{GW}.serial.blind.open", b'{"to": 50}') == {"ok": True, "result": None}
        line = json.loads((await blind.lines(1))[0])
        assert (line["cmd"], line["args"]) == ("open", {"to": 50})
    finally:
        driver.stop()
        blind.stop()


async def test_offline_at_once_and_no_stale_replay_after_unplug(rig: dict[str, Any], nc: Any) -> None:
    byid, devices = rig["byid"], rig["devices"]
    old = SimDriver(devices["plug"], None)  # takes commands, never answers: they stay queued
    await wait_served(nc, "plug")
    events = await collect(nc, f"evt.{GW}.serial.plug.*")
    pending = [asyncio.ensure_future(request(nc, f"cmd.{GW}.serial.plug.toggle", b"{}")) for _ in range(3)]
    await old.lines(1)  # the first is on the wire, two are queued behind it
    old.stop()
    devices["plug"].close()  # the cable is pulled
    replies = await asyncio.gather(*pending)
    assert [r["code"] for r in replies] == ["offline"] * 3
    assert all(r["error"].startswith("port lost (") for r in replies)
    await next_where(events, lambda m: m.subject.endswith(".offline"))
    started = time.monotonic()
    reply = await request(nc, f"cmd.{GW}.serial.plug.toggle")
    assert reply["code"] == "offline" and time.monotonic() - started < 1.0  # at once, not after 5 s
    new = devices["plug"] = PtyDevice()
    sim = Simulator("jsonl", device="plug")
    driver = SimDriver(new, sim)
    try:
        point(byid / "plug", new.path)  # replugged
        await next_where(events, lambda m: m.subject.endswith(".online"))
        assert await request(nc, f"cmd.{GW}.serial.plug.relay", b'{"on": true}') == {
            "ok": True, "result": {"relay": True}}
        # The reopened port got exactly the new command: nothing of the three stale toggles.
        assert sim.commands == [("relay", {"on": True})]
        assert [json.loads(x)["cmd"] for x in bytes(driver.received).splitlines()] == ["relay"]
        row = next(r for r in devicez(rig["server"]) if r["id"] == "plug")
        assert row["counters"]["commands_dropped"] == 3  # the one in flight and the two queued
    finally:
        driver.stop()


async def test_unknown_device_gets_the_envelope_not_no_responders(rig: dict[str, Any], nc: Any) -> None:
    assert await request(nc, f"cmd.{GW}.serial.nosuchdevice.relay", b"{}") == {
        "ok": False, "code": "unknown_device", "error": f"no adapter of gateway {GW} serves 'serial.nosuchdevice'"}
    # Another subscriber of the subject may answer: the gateway stays silent (here: nobody answers).
    await nc.subscribe(f"cmd.{GW}.serial.selfserved.>")
    await flush(nc)
    with pytest.raises(nats.errors.TimeoutError):
        await nc.request(f"cmd.{GW}.serial.selfserved.relay", b"{}", timeout=0.5)


class _PtyUart:
    """machine.UART's write() for the MicroPython module on the device side of a pty."""

    def __init__(self, dev: PtyDevice) -> None:
        self.dev = dev

    def write(self, data: bytes) -> int:
        self.dev.write(bytes(data))
        return len(data)


async def test_micropython_jsonl_device_answers_over_a_pty(rig: dict[str, Any], nc: Any) -> None:
    pty = rig["devices"]["mpy"]
    state: dict[str, Any] = {}

    def relay(args: dict[str, Any]) -> dict[str, bool]:
        if not isinstance(args.get("on"), bool):
            raise device_commands.CommandFailed("bad_arguments", "'on' must be true or false")
        state["on"] = args["on"]
        return {"relay": args["on"]}

    device = device_commands.JsonlDevice(_PtyUart(pty), "mpy", {"relay": relay})
    loop = asyncio.get_running_loop()
    loop.add_reader(pty.master, lambda: device.feed(pty.read(0)))
    try:
        await wait_served(nc, "mpy")
        readings = await collect(nc, f"dev.{GW}.serial.mpy.relay")
        assert await request(nc, f"cmd.{GW}.serial.mpy.relay", b'{"on": true}') == {
            "ok": True, "result": {"relay": True}}
        assert await request(nc, f"cmd.{GW}.serial.mpy.relay", b'{"on": 1}') == {
            "ok": False, "code": "bad_arguments", "error": "'on' must be true or false"}
        device.reading({"relay": 1})
        assert json.loads((await next_where(readings, lambda m: True)).data)["value"] == 1
        assert state == {"on": True} and device.commands == 2 and device.lines_bad == 0
    finally:
        loop.remove_reader(pty.master)
