"""A cloud app switches a relay at the edge: a nats-py request on the hub side of a real leaf link
(nats-server hub, nats-edge gateway with a simulated serial relay on a pty), and commands refused by
subject permissions on ``cmd.>`` at the hub and at the gateway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from firmware_bridge.simulator import ACTIONS, Simulator
from tests.integration.test_commands_serial import SimDriver, wait_served
from tests.integration.test_leaf import FAST, probe, queue_sub, wait_interest, wait_leaf_connected
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge, start_nats_server
from tests.support.ptys import PtyDevice

pytestmark = pytest.mark.timeout(90)
GW = "gw1"
SUBJECT = f"cmd.{GW}.serial.relay.relay"

HUB_USERS = """
authorization {
  users = [
    {user: cloud, password: c}
    {user: auditor, password: a, permissions: {publish: {deny: ["cmd.>"]}}}
  ]
}
"""
EDGE_USERS = """
[authorization]
users = [
  { user = "admin", password = "a" },
  { user = "viewer", password = "v", permissions = { publish = { deny = ["cmd.>"] } } },
]
"""


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("cmdleaf")
    leaf_port = free_port()
    (base / "hub").mkdir()
    hub = start_nats_server(base / "hub", config=(
        f'server_name: hub1\nhttp: "127.0.0.1:{free_port()}"\n'
        f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n{HUB_USERS}\n'))
    dev = PtyDevice(base / "relay")
    edge: ServerProcess | None = None
    try:
        conf = base / "edge.toml"
        conf.write_text(
            f'server_name = "{GW}"\n' + FAST + EDGE_USERS
            + f'[[leafnodes.remotes]]\nurls = ["nats-leaf://cloud:c@127.0.0.1:{leaf_port}"]\n'
            + f'[[adapters.serial]]\nname = "relay"\nport = "{base / "relay"}"\ndevice = "relay"\ncodec = "jsonl"\n'
            + f"actions = {json.dumps(list(ACTIONS))}\n"
        )
        edge = start_nats_edge(base, "-c", str(conf))
        yield {"hub": hub, "edge": edge, "dev": dev}
    finally:
        codes = [edge.stop() if edge is not None else 0, hub.stop()]
        dev.close()
        assert codes == [0, 0], (edge.log() if edge is not None else "", hub.log())


def edge_url(edge: ServerProcess, user: str, password: str) -> str:
    return edge.url.replace("nats://", f"nats://{user}:{password}@")


def hub_url(hub: ServerProcess, user: str, password: str) -> str:
    return hub.url.replace("nats://", f"nats://{user}:{password}@")


async def test_cloud_app_switches_relay_through_the_leaf(rig: dict[str, Any]) -> None:
    hub, edge = rig["hub"], rig["edge"]
    sim = Simulator("jsonl", device="relay")
    driver = SimDriver(rig["dev"], sim)
    local = await nats.connect(edge_url(edge, "admin", "a"))
    cloud = await nats.connect(hub_url(hub, "cloud", "c"))
    try:
        await wait_served(local, "relay")
        await wait_leaf_connected(hub)
        await wait_interest(hub, f"cmd.{GW}.serial.relay.*")
        _, audit = await queue_sub(cloud, f"evt.{GW}.serial.relay.command")
        await probe(local, f"evt.{GW}.serial.relay.command", audit)  # its interest has reached the gateway
        reply = json.loads((await cloud.request(SUBJECT, b'{"on": true}', timeout=10)).data)
        assert reply == {"ok": True, "result": {"relay": True}}
        assert sim.relay is True and sim.commands == [("relay", {"on": True})]
        evt = json.loads((await asyncio.wait_for(audit.get(), 10)).data)
        assert (evt["action"], evt["args"], evt["ok"]) == ("relay", {"on": True}, True)
        assert evt["by"] == {"kind": "leaf", "hub": "hub1"}  # who asked: the cloud, over the leaf link
        # A local user's command says which client and user it came from.
        reply = json.loads((await local.request(f"cmd.{GW}.serial.relay.toggle", b"", timeout=10)).data)
        assert reply == {"ok": True, "result": {"relay": False}}
        evt = json.loads((await asyncio.wait_for(audit.get(), 10)).data)
        assert (evt["action"], evt["by"]) == (
            "toggle", {"kind": "client", "cid": local.client_id, "user": "admin", "ip": "127.0.0.1"})
        reply = json.loads((await cloud.request(f"cmd.{GW}.serial.relay.dance", b"", timeout=10)).data)
        assert reply["ok"] is False and reply["code"] == "unsupported"
    finally:
        driver.stop()
        await local.close()
        await cloud.close()


async def _denied(url: str) -> tuple[list[str], bool]:
    """Publish a command as a user without permission on cmd.>: the errors the client got, and
    whether its request was answered."""
    errors: list[str] = []
    got = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))
        got.set()

    nc = await nats.connect(url, error_cb=on_error)
    try:
        answered = True
        try:
            await nc.request(SUBJECT, b'{"on": false}', timeout=1)
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            answered = False
        await asyncio.wait_for(got.wait(), 10)
        await flush(nc)
        return errors, answered
    finally:
        await nc.close()


async def test_command_denied_without_permission_on_cmd(rig: dict[str, Any]) -> None:
    hub, edge = rig["hub"], rig["edge"]
    sim = Simulator("jsonl", device="relay")
    driver = SimDriver(rig["dev"], sim)
    admin = await nats.connect(edge_url(edge, "admin", "a"))
    try:
        await wait_served(admin, "relay")
        _, audit = await queue_sub(admin, f"evt.{GW}.serial.relay.command")
        for url in (edge_url(edge, "viewer", "v"), hub_url(hub, "auditor", "a")):
            errors, answered = await _denied(url)
            assert not answered
            assert any(f'permissions violation for publish to "{SUBJECT}"' in e.lower() for e in errors), errors
        assert sim.commands == []  # nothing reached the device ...
        # ... and nothing was audited: the next event is the allowed command's.
        reply = json.loads((await admin.request(f"cmd.{GW}.serial.relay.toggle", b"", timeout=10)).data)
        assert reply["ok"] is True
        evt = json.loads((await asyncio.wait_for(audit.get(), 10)).data)
        assert evt["action"] == "toggle"
    finally:
        driver.stop()
        await admin.close()
