"""A gateway without configured leaf remotes finds its hub over mDNS (``[mdns] hub_service``) and joins it:
a real nats-server hub, its leafnode port advertised as ``_nats-leaf._tcp`` by the test's zeroconf, real
multicast on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from tests.integration.test_leaf import leafz, start_hub
from tests.support.natsclient import flush
from tests.support.processes import free_port, start_nats_edge, wait_for
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(90)
UID = uuid.uuid4().hex[:6]


@pytest.fixture
async def azc() -> AsyncIterator[AsyncZeroconf]:
    z = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    yield z
    await z.async_unregister_all_services()
    await z.async_close()


async def test_gateway_joins_the_hub_it_discovers(tmp_path: Path, azc: AsyncZeroconf) -> None:
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port)
    edge = None
    hc = nc = None
    try:
        info = AsyncServiceInfo("_nats-leaf._tcp.local.", f"hub-{UID}._nats-leaf._tcp.local.", port=leaf_port,
                                addresses=[socket.inet_aton("127.0.0.1")], server=f"hub-{UID}.local.")
        await (await azc.async_register_service(info))
        conf = tmp_path / "edge.toml"
        conf.write_text(f'server_name = "gw-{UID}"\n[leafnodes]\nreconnect = "100ms"\n'
                        '[mdns]\ninterfaces = ["127.0.0.1"]\nadvertise = false\ndefault_matchers = false\n'
                        'hub_service = "_nats-leaf._tcp"\n')
        edge = start_nats_edge(tmp_path / "edge", "-c", str(conf))
        # In a thread: this loop must keep running, its zeroconf answers the gateway's queries.
        await asyncio.to_thread(wait_for, lambda: leafz(hub).get("leafnodes") == 1, 30, "the gateway joined the hub")
        assert f"Leafnode hub 'hub-{UID}' discovered by mDNS at nats-leaf://127.0.0.1:{leaf_port}" in edge.log()
        hc = await nats.connect(hub.url)
        sub = await hc.subscribe("up.x")
        await flush(hc)
        nc = await nats.connect(edge.url)
        # The hub's interest reaches the gateway (no event to wait on from here): publish until one crosses.

        async def crossed() -> Msg | None:
            await nc.publish("up.x", b"hello")
            await flush(nc)
            try:
                return await sub.next_msg(timeout=0.1)
            except nats.errors.TimeoutError:
                return None

        msg = await async_wait_for(crossed, 20, "a gateway publish to reach the hub", interval=0)
        assert msg.data == b"hello"
    finally:
        for c in (nc, hc):
            if c is not None:
                await c.close()
        if edge is not None:
            assert edge.stop() == 0, edge.log()
        hub.stop()
