"""The issue's "done when": from the hub side of a real leaf link (nats-server hub, nats-py client) one app
switches a simulated serial relay (pty + simulator), a simulated Shelly Gen2 (local HTTP server advertised
over loopback multicast) and a characteristic of a fake-BlueZ GATT device, each answered with the same
envelope, each audited on ``evt.<gw>.<adapter>.<device>.command``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import nats
import pytest

from firmware_bridge.simulator import ACTIONS, Simulator
from tests.integration.ble_fixtures import FakeBluezClient, dbus_daemon, fake_bluez
from tests.integration.test_ble_adapter import CUSTOM, GATT_DEVICE, PERIPH
from tests.integration.test_commands_mdns import RecordingDevice, advertise
from tests.integration.test_commands_serial import SimDriver
from tests.integration.test_leaf import FAST, probe, queue_sub, wait_interest, wait_leaf_connected
from tests.support.processes import free_port, start_nats_edge, start_nats_server
from tests.support.ptys import PtyDevice

zeroconf = pytest.importorskip("zeroconf")
from zeroconf import IPVersion  # noqa: E402
from zeroconf.asyncio import AsyncZeroconf  # noqa: E402

__all__ = ["dbus_daemon", "fake_bluez"]  # fixtures, imported by name
pytestmark = pytest.mark.timeout(90)

UID = uuid.uuid4().hex[:6]
GW = f"gwcloud-{UID}"
SHELLY = f"shellyplus1-c{UID}"


def edge_config(leaf_port: int, pty: Path) -> str:
    return f'server_name = "{GW}"\n' + FAST + f"""
[[leafnodes.remotes]]
urls = ["nats-leaf://127.0.0.1:{leaf_port}"]

[mdns]
interfaces = ["127.0.0.1"]
advertise = false
resolve_timeout = "2s"

[mdns.pollers.shelly]
interval = "0.2s"
timeout = "1s"

[[adapters.serial]]
name = "relay"
port = "{pty}"
device = "relay"
codec = "jsonl"
actions = {json.dumps(list(ACTIONS))}

[[adapters.ble]]
name = "radio"
check_interval = "0.05s"
backoff_min = "0.05s"
backoff_max = "0.2s"
connect_timeout = "5s"

[[adapters.ble.devices]]
address = "{PERIPH}"
name = "ess"
characteristics = [{{ uuid = "2a6e", mode = "notify" }}]
"""


async def test_cloud_switches_serial_shelly_and_gatt_with_one_envelope(
    tmp_path: Path, dbus_daemon: str, fake_bluez: FakeBluezClient
) -> None:
    leaf_port = free_port()
    (tmp_path / "hub").mkdir()
    hub = start_nats_server(tmp_path / "hub", config=(
        f'server_name: hub1\nhttp: "127.0.0.1:{free_port()}"\nleafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n'))
    dev = PtyDevice(tmp_path / "relay")
    shelly = RecordingDevice("shelly")
    await shelly.start()
    azc = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    await fake_bluez.call("add_device", **GATT_DEVICE)
    (tmp_path / "edge.toml").write_text(edge_config(leaf_port, tmp_path / "relay"))
    edge = await asyncio.to_thread(start_nats_edge, tmp_path, "-c", str(tmp_path / "edge.toml"),
                                   env={"DBUS_SYSTEM_BUS_ADDRESS": dbus_daemon})
    sim = Simulator("jsonl", device="relay")
    driver = SimDriver(dev, sim)
    cloud = await nats.connect(hub.url)
    try:
        await advertise(azc, SHELLY, shelly.port, {"gen": "2", "app": "Plus1"})
        await wait_leaf_connected(hub)
        await wait_interest(hub, f"cmd.{GW}.serial.relay.*", f"cmd.{GW}.mdns.*.*", f"cmd.{GW}.ble.ess.*")
        _, audit = await queue_sub(cloud, f"evt.{GW}.*.*.command")
        local = await nats.connect(edge.url)
        try:  # the audit subscription's interest has crossed the link once a probe from the gateway arrives
            await probe(local, f"evt.{GW}.probe.probe.command", audit)
        finally:
            await local.close()

        async def until_ok(subject: str, payload: bytes) -> dict[str, Any]:
            """Ask until the device is reachable (discovered, polled, connected): 'offline' / 'unknown_device'
            answers come at once, so this is a poll with a deadline, not a timing guess."""
            async with asyncio.timeout(30):
                while True:
                    reply = json.loads((await cloud.request(subject, payload, timeout=10)).data)
                    if reply["ok"] or reply["code"] not in ("offline", "unknown_device"):
                        return dict(reply)
                    await asyncio.sleep(0.1)

        replies = {
            "serial": await until_ok(f"cmd.{GW}.serial.relay.relay", b'{"on": true}'),
            "mdns": await until_ok(f"cmd.{GW}.mdns.{SHELLY}.switch_set", b'{"on": false}'),
            "ble": await until_ok(f"cmd.{GW}.ble.ess.write", json.dumps({"uuid": CUSTOM, "data": "01"}).encode()),
        }
        assert replies == {
            "serial": {"ok": True, "result": {"relay": True}},
            "mdns": {"ok": True, "result": {"was_on": True}},
            "ble": {"ok": True, "result": {"written": "01"}},
        }
        assert sim.relay is True and shelly.on is False
        assert await fake_bluez.call("writes", address=PERIPH) == [{"uuid": CUSTOM, "value": "01", "type": "request"}]
        seen: set[str] = set()
        async with asyncio.timeout(10):
            while len(seen) < 3:
                msg = await audit.get()
                if json.loads(msg.data)["ok"]:
                    seen.add(msg.subject)
        assert seen == {f"evt.{GW}.serial.relay.command", f"evt.{GW}.mdns.{SHELLY}.command",
                        f"evt.{GW}.ble.ess.command"}
    finally:
        driver.stop()
        await cloud.close()
        await azc.async_unregister_all_services()
        await azc.async_close()
        await shelly.stop()
        codes = [await asyncio.to_thread(edge.stop), hub.stop()]
        dev.close()
        assert codes == [0, 0], edge.log()
