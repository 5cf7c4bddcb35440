"""Smoke tests with the loop-blocking guard armed inside the broker subprocess (tests/support/guarded_broker.py).

The broker serves clients, monitoring, a leaf link and store-and-forward; any blocking call its event
loop makes on the way is reported in its log, and none may be. Any other integration test can run the
same way: ``NATS_EDGE_TEST_BLOCKBUSTER=1 pytest tests/integration``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import nats
import pytest

from tests.support.guarded_broker import ARMED, MARK
from tests.support.natsclient import flush
from tests.support.processes import GUARD_ENV, ServerProcess, free_port, start_nats_edge, start_nats_server
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(60)

GUARDED = {GUARD_ENV: "1"}


def stop_unblocked(sp: ServerProcess) -> None:
    """Stop the broker; it must exit cleanly, with the guard armed and never tripped."""
    code = sp.stop()
    log = sp.log()
    assert ARMED in log, log
    assert MARK not in log, log
    assert code == 0, log


def http_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def test_clients_and_monitoring_do_not_block_the_loop(tmp_path: Path) -> None:
    sp = start_nats_edge(tmp_path, "-m", "-1", env=GUARDED)
    try:
        nc = await nats.connect(sp.url, allow_reconnect=False)
        try:
            sub = await nc.subscribe("svc")

            async def answer() -> None:
                msg = await sub.next_msg(timeout=5)
                await msg.respond(b"re:" + msg.data)

            responder = asyncio.ensure_future(answer())
            reply = await nc.request("svc", b"hi", timeout=5)
            await responder
            assert reply.data == b"re:hi"
            monitoring = sp.url_of("monitoring")
            varz = await asyncio.to_thread(http_json, monitoring + "/varz")
            connz = await asyncio.to_thread(http_json, monitoring + "/connz?subs=1")
            assert varz["connections"] == 1 and connz["num_connections"] == 1
        finally:
            await nc.close()
    finally:
        stop_unblocked(sp)


async def test_leaf_link_and_store_forward_do_not_block_the_loop(tmp_path: Path) -> None:
    leaf_port = free_port()
    (tmp_path / "hub").mkdir()
    hub = start_nats_server(tmp_path / "hub", config=f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n')
    conf = tmp_path / "edge" / "edge.toml"
    conf.parent.mkdir()
    conf.write_text(f"""server_name = "gw1"
[leafnodes]
reconnect = "100ms"
[store_forward]
subjects = ["telemetry.>"]
dir = "{tmp_path / 'outbox'}"
replay_rate = 0
[[leafnodes.remotes]]
url = "nats-leaf://127.0.0.1:{leaf_port}"
""")
    sp = start_nats_edge(conf.parent, "-c", str(conf), env=GUARDED)
    try:
        hub_nc = await nats.connect(hub.url, allow_reconnect=False)
        edge_nc = await nats.connect(sp.url, allow_reconnect=False)
        try:
            hub_sub = await hub_nc.subscribe("telemetry.>")
            down = await edge_nc.subscribe("down")
            await flush(hub_nc)

            async def hub_sees_down() -> bool:
                await hub_nc.publish("down", b"ping")
                await flush(hub_nc)
                try:
                    await down.next_msg(timeout=0.2)
                except nats.errors.TimeoutError:
                    return False
                return True

            await async_wait_for(hub_sees_down, 10.0, "the leaf link to carry the hub's messages")
            for i in range(20):
                ack = await edge_nc.request(f"telemetry.t{i}", b"%d" % i, timeout=5)  # durable, then acked
                assert json.loads(ack.data) == {"stream": "outbox", "seq": i + 1}
            got = [await hub_sub.next_msg(timeout=5) for _ in range(20)]
            assert [m.data for m in got] == [b"%d" % i for i in range(20)]
            assert [m.headers["Nats-Msg-Id"] for m in got if m.headers] == [f"gw1-{i + 1}" for i in range(20)]
        finally:
            await edge_nc.close()
            await hub_nc.close()
    finally:
        stop_unblocked(sp)
        hub.stop()


async def test_log_file_does_not_block_the_loop(tmp_path: Path) -> None:
    # -DV traces every protocol line: each one a write to the -l file, done by the writer thread.
    log = tmp_path / "edge.log"
    sp = start_nats_edge(tmp_path, "-DV", "-l", str(log), env=GUARDED)
    try:
        nc = await nats.connect(sp.url, allow_reconnect=False)
        try:
            sub = await nc.subscribe("t")
            for i in range(50):
                await nc.publish("t", b"%d" % i)
            got = [await sub.next_msg(timeout=5) for _ in range(50)]
            assert [m.data for m in got] == [b"%d" % i for i in range(50)]
        finally:
            await nc.close()
    finally:
        stop_unblocked(sp)
    text = log.read_text()
    assert "[INF] Server is ready" in text
    assert text.count('[TRC] ') >= 50 and "Server Exiting.." in text  # written out before exit
