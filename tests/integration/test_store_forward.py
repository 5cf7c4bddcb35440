"""Store-and-forward against a real nats-server hub, through a TCP proxy the tests control.

Each test runs the nats-edge CLI as a gateway (``[store_forward]`` + one leaf remote pointing at the
proxy), a nats-server hub (with JetStream where needed) and nats-py clients on both sides. Counts are
scaled where noted to keep the suite within its time budget on a shared 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from edge.store import Outbox, OutboxOptions
from edge.store.forwarder import MAX_PONG_BATCHES
from edge.store.inspect import inspect_store
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge, start_nats_server
from tests.support.proxy import Proxy
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(120)

N_CUT = 20_000


def hub_conf(leaf_port: int, workdir: Path, js: bool) -> str:
    conf = f'server_name: hub1\nhttp: "127.0.0.1:{free_port()}"\nleafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n'
    if js:
        conf += f'jetstream {{\n  store_dir: "{workdir / "js"}"\n}}\n'
    return conf


def edge_conf(proxy_port: int, outbox: Path, sf_extra: str = "", leaf_extra: str = "") -> str:
    return f"""server_name = "gw1"
[leafnodes]
reconnect = "100ms"
reconnect_jitter = "50ms"
error_delay = "300ms"
first_info_timeout = "1s"
{leaf_extra}
[store_forward]
subjects = ["telemetry.>"]
dir = "{outbox}"
fsync_interval = "10ms"
{sf_extra or "replay_rate = 0"}
[[leafnodes.remotes]]
url = "nats-leaf://127.0.0.1:{proxy_port}"
# The hub's INFO advertises its real leaf port; dialling that would go around the proxy.
ignore_discovered_servers = true
"""


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.hub: ServerProcess | None = None
        self.edge: ServerProcess | None = None
        self.proxy: Proxy | None = None
        self.clients: list[Client] = []
        self.outbox = tmp / "outbox"
        self.conf = tmp / "edge" / "edge.toml"
        self.hub_config = ""

    async def start_hub(self, js: bool = False) -> None:
        leaf_port = free_port()
        (self.tmp / "hub").mkdir(exist_ok=True)
        self.hub_config = hub_conf(leaf_port, self.tmp / "hub", js)
        self.hub = start_nats_server(self.tmp / "hub", config=self.hub_config)
        self.proxy = await Proxy("127.0.0.1", leaf_port).start()

    def kill_hub(self) -> None:
        """SIGKILL the hub (no shutdown, no flush) and wait for it to be gone."""
        assert self.hub is not None
        self.hub.kill()

    def restart_hub(self) -> ServerProcess:
        """A new hub process with the same config: same leaf and monitoring ports, same JetStream store_dir.

        The client port is random (``-p -1``), so hub-side clients connect again to ``hub.url``.
        """
        assert self.hub is not None and self.hub.proc.poll() is not None, "kill_hub() first"
        self.hub = start_nats_server(self.tmp / "hub", config=self.hub_config)
        return self.hub

    def start_edge(self, sf_extra: str = "", leaf_extra: str = "") -> ServerProcess:
        assert self.proxy is not None
        self.conf.parent.mkdir(exist_ok=True)
        if sf_extra or leaf_extra or not self.conf.exists():
            self.conf.write_text(edge_conf(self.proxy.port, self.outbox, sf_extra, leaf_extra))
        self.edge = start_nats_edge(self.conf.parent, "-c", str(self.conf), "-m", "-1")
        return self.edge

    async def connect(self, proc: ServerProcess) -> Client:
        nc = await nats.connect(proc.url, allow_reconnect=False, max_reconnect_attempts=0)
        self.clients.append(nc)
        return nc

    async def metrics(self) -> dict[str, float]:
        """The outbox's /metrics gauges (read in a thread: the test's loop keeps running its clients)."""
        return await asyncio.to_thread(self._read_metrics)

    async def metric_is(self, name: str, value: float) -> bool:
        return (await self.metrics()).get(name) == value

    def _read_metrics(self) -> dict[str, float]:
        assert self.edge is not None
        with urllib.request.urlopen(self.edge.url_of("monitoring") + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        out = {}
        for line in text.splitlines():
            if line.startswith("nats_edge_outbox_"):
                name, _, value = line.partition(" ")
                out[name.removeprefix("nats_edge_outbox_")] = float(value)
        return out

    async def close(self) -> None:
        for nc in self.clients:
            if not nc.is_closed:
                await nc.close()
        for proc in (self.edge, self.hub):
            if proc is not None:
                proc.stop()
        if self.proxy is not None:
            await self.proxy.stop()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path)
    try:
        yield r
    finally:
        await r.close()


def leaf_count(hub: ServerProcess) -> int:
    with urllib.request.urlopen(hub.url_of("monitoring") + "/leafz", timeout=5) as resp:
        return int(json.loads(resp.read()).get("leafnodes", 0))


async def wait_leaf(hub: ServerProcess, up: bool = True, timeout: float = 20.0) -> None:
    async def check() -> bool:
        return (await asyncio.to_thread(leaf_count, hub) > 0) == up

    await async_wait_for(check, timeout, f"the leaf link {'up' if up else 'down'}", interval=0.05)


def msg_id(m: Msg) -> str:
    return (m.headers or {}).get("Nats-Msg-Id", "")


async def hub_collector(nc: Client, subject: str = "telemetry.>") -> list[Msg]:
    got: list[Msg] = []

    async def cb(m: Msg) -> None:
        got.append(m)

    await nc.subscribe(subject, cb=cb, pending_msgs_limit=500_000)
    await flush(nc)
    return got


async def test_cut_link_20000_then_restore_pong(rig: Rig) -> None:
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    edge = rig.start_edge()
    await wait_leaf(rig.hub)
    pub = await rig.connect(edge)
    local: list[Msg] = []

    async def on_local(m: Msg) -> None:
        local.append(m)

    await pub.subscribe("telemetry.>", cb=on_local, pending_msgs_limit=100_000)
    rig.proxy.cut()
    await wait_leaf(rig.hub, up=False)
    for i in range(N_CUT):
        await pub.publish(f"telemetry.gw1.s{i % 7}", b"%d" % i)
    await flush(pub)
    await async_wait_for(lambda: len(local) == N_CUT, 30, "local subscriber gets every message at once", interval=0.02)
    assert at_hub == []
    rig.proxy.restore()
    await async_wait_for(lambda: len(at_hub) >= N_CUT, 60, "hub receives the backlog", interval=0.02)
    assert [int(m.data) for m in at_hub] == list(range(N_CUT))
    assert [m.subject for m in at_hub[:7]] == [f"telemetry.gw1.s{i}" for i in range(7)]
    assert [msg_id(m) for m in at_hub[:2]] == ["gw1-1", "gw1-2"]
    await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 20, "everything confirmed", interval=0.02)
    m = await rig.metrics()
    assert m["appended"] == N_CUT and m["confirmed"] == N_CUT and m["dropped"] == 0


async def test_jetstream_mode_exactly_once_in_stream(rig: Rig) -> None:
    await rig.start_hub(js=True)
    assert rig.hub is not None and rig.proxy is not None
    hub_nc = await rig.connect(rig.hub)
    js = hub_nc.jetstream()
    await js.add_stream(name="EDGE", subjects=["telemetry.>"])
    edge = rig.start_edge('confirm = "jetstream"\nstream = "EDGE"\nbatch = 1000')
    await wait_leaf(rig.hub)
    pub = await rig.connect(edge)
    rig.proxy.cut()
    await wait_leaf(rig.hub, up=False)
    for i in range(N_CUT):
        await pub.publish("telemetry.gw1.t", b"%d" % i)
    await flush(pub)
    # A link loss in the middle of the replay: records sent but not acknowledged go again; the stream
    # drops the copies by Nats-Msg-Id.
    rig.proxy.restore()

    async def stream_msgs() -> int:
        return (await js.stream_info("EDGE")).state.messages

    await async_wait_for(lambda: _ge(stream_msgs, 3000), 30, "3000 messages in the stream", interval=0.05)
    rig.proxy.cut()
    await wait_leaf(rig.hub, up=False)
    rig.proxy.restore()
    await async_wait_for(lambda: _ge(stream_msgs, N_CUT), 60, "the whole backlog in the stream", interval=0.05)
    await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 30, "everything confirmed by PubAck",
                         interval=0.02)
    assert await stream_msgs() == N_CUT
    first = await js.get_msg("EDGE", 1)
    last = await js.get_msg("EDGE", N_CUT)
    assert (first.data, last.data) == (b"0", b"%d" % (N_CUT - 1))
    assert first.headers is not None and first.headers["Nats-Msg-Id"] == "gw1-1"
    m = await rig.metrics()
    assert m["confirmed"] == N_CUT and m["puback_errors"] == 0


async def _ge(fn: Callable[[], Awaitable[int]], n: int) -> bool:
    return await fn() >= n


async def test_publisher_ack_and_reject_new(rig: Rig) -> None:
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    rig.proxy.cut()
    edge = rig.start_edge('full_policy = "reject_new"\nmax_msgs = 5')
    pub = await rig.connect(edge)
    replies = [json.loads((await pub.request("telemetry.gw1.x", b"%d" % i, timeout=5)).data) for i in range(7)]
    assert replies[:5] == [{"stream": "outbox", "seq": i} for i in range(1, 6)]
    assert replies[5:] == [{"error": {"code": 503, "description": "outbox full"}}] * 2
    # Not covered: a plain request still gets no responders (the hook takes only covered subjects).
    with pytest.raises(nats.errors.NoRespondersError):
        await pub.request("other.x", b"", timeout=5)
    m = await rig.metrics()
    assert m["rejected"] == 2 and m["depth_msgs"] == 5 and m["publisher_acks"] == 5
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    rig.proxy.restore()
    await async_wait_for(lambda: len(at_hub) == 5, 30, "the oldest five reach the hub", interval=0.02)
    assert [m.data for m in at_hub] == [b"0", b"1", b"2", b"3", b"4"]
    assert all(m.reply == "" for m in at_hub)


async def test_drop_oldest_keeps_newest(rig: Rig) -> None:
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    rig.proxy.cut()
    edge = rig.start_edge("max_msgs = 100")
    pub = await rig.connect(edge)
    for i in range(300):
        await pub.publish("telemetry.gw1.x", b"%d" % i)
    await flush(pub)
    await async_wait_for(lambda: rig.metric_is("appended", 300), 10, "appended", interval=0.02)
    m = await rig.metrics()
    assert m["depth_msgs"] == 100 and m["dropped_full"] == 200
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    rig.proxy.restore()
    await async_wait_for(lambda: len(at_hub) == 100, 30, "the newest hundred reach the hub", interval=0.02)
    assert [int(m.data) for m in at_hub] == list(range(200, 300))


async def test_sigkill_mid_stream_loses_no_acknowledged_message(rig: Rig) -> None:
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    edge = rig.start_edge()
    await wait_leaf(rig.hub)
    pub = await rig.connect(edge)
    acked: set[int] = set()

    async def on_ack(m: Msg) -> None:
        if json.loads(m.data).get("seq"):
            acked.add(int(m.subject.rsplit(".", 1)[1]))

    await pub.subscribe("ack.>", cb=on_ack)
    await flush(pub)
    i = 0
    while len(acked) < 3000 and i < 200_000:
        await pub.publish("telemetry.gw1.k", b"%d" % i, reply=f"ack.{i}")
        i += 1
        if i % 200 == 0:
            await flush(pub)
    assert len(acked) >= 3000
    edge.proc.send_signal(signal.SIGKILL)
    edge.proc.wait(10)
    sent = i
    acked_at_kill = set(acked)
    rig.clients.remove(pub)
    await pub.close()
    rig.start_edge()
    await async_wait_for(lambda: acked_at_kill <= {int(m.data) for m in at_hub}, 60,
                         "every acknowledged message at the hub", interval=0.02)
    got = [int(m.data) for m in at_hub]
    assert set(got) <= set(range(sent))
    # pong mode: duplicates are possible, but the first copy of each arrives in publish order.
    firsts = list(dict.fromkeys(got))
    assert firsts == sorted(firsts)


async def test_blackholed_link_detected_by_keepalive_and_recovered(rig: Rig) -> None:
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    edge = rig.start_edge(leaf_extra='ping_interval = "300ms"\nping_max = 2')
    await wait_leaf(rig.hub)
    pub = await rig.connect(edge)
    rig.proxy.blackhole()
    for i in range(500):
        await pub.publish("telemetry.gw1.b", b"%d" % i)
    await flush(pub)
    # The gateway's keepalive gives up (no PONG), closes its side; the proxy passes the close on.
    await wait_leaf(rig.hub, up=False, timeout=15)
    assert (await rig.metrics())["depth_msgs"] == 500  # nothing confirmed into the black hole
    rig.proxy.restore()
    await async_wait_for(lambda: len({msg_id(m) for m in at_hub}) == 500, 30, "all 500 at the hub after recovery",
                         interval=0.02)
    firsts = list(dict.fromkeys(int(m.data) for m in at_hub))
    assert firsts == list(range(500))
    await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 20, "confirmed", interval=0.02)


async def test_corrupt_last_segment_broker_starts_and_forwards_the_rest(rig: Rig) -> None:
    opts = OutboxOptions(fsync_interval=0.0)
    box = Outbox(rig.outbox, opts)
    for i in range(1000):
        assert box.append(b"telemetry.gw1.c", b"%d" % i) == i + 1
    assert box.flush(10)
    box.close()
    seg = sorted(p for p in os.listdir(rig.outbox) if p.endswith(".seg"))[-1]
    path = rig.outbox / seg
    data = bytearray(path.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF  # a flipped byte at 3/4 ...
    path.write_bytes(bytes(data[:-7]))  # ... and a torn tail
    before = inspect_store(rig.outbox)
    assert 0 < before.pending < 1000 and before.segments[-1].problem
    await rig.start_hub()
    assert rig.hub is not None
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    edge = rig.start_edge()
    await async_wait_for(lambda: len(at_hub) >= before.pending, 30, "the valid prefix at the hub", interval=0.02)
    assert [int(m.data) for m in at_hub] == list(range(before.pending))
    assert "recovery: dropped" in edge.log()
    assert (await rig.metrics())["dropped_corrupt"] >= 1


async def test_live_traffic_flows_during_long_replay(rig: Rig) -> None:
    backlog = 100_000
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    hub_nc = await rig.connect(rig.hub)
    at_hub = await hub_collector(hub_nc)
    live: list[Msg] = []

    async def on_live(m: Msg) -> None:
        live.append(m)

    await hub_nc.subscribe("live.>", cb=on_live)
    await flush(hub_nc)
    rig.proxy.cut()
    edge = rig.start_edge("replay_rate = 25000")  # paced: about 4 s of replay
    pub = await rig.connect(edge)
    for i in range(backlog):
        await pub.publish("telemetry.gw1.r", b"%d" % i)
    await flush(pub)
    await async_wait_for(lambda: rig.metric_is("appended", backlog), 20, "appended", interval=0.02)
    rig.proxy.restore()
    await async_wait_for(lambda: len(at_hub) > 1000, 30, "replay started", interval=0.02)
    for k in range(10):  # live (uncovered) messages go straight up while the replay is paced
        await pub.publish("live.gw1", b"%d" % k)
        await flush(pub)
        await async_wait_for(lambda k=k: len(live) > k, 5, "a live message crosses during the replay", interval=0.02)
    assert len(at_hub) < backlog, "the replay is still running"
    await async_wait_for(lambda: len(at_hub) >= backlog, 60, "replay done", interval=0.02)
    assert [int(m.data) for m in at_hub] == list(range(backlog))


async def _cut_and_store(rig: Rig, n: int, subject: str = "telemetry.gw1.h") -> Client:
    """Edge up, link cut, ``n`` covered messages stored (payload = index). Returns the local publisher."""
    assert rig.hub is not None and rig.proxy is not None and rig.edge is not None
    await wait_leaf(rig.hub)
    pub = await rig.connect(rig.edge)
    rig.proxy.cut()
    await wait_leaf(rig.hub, up=False)
    for i in range(n):
        await pub.publish(subject, b"%d" % i)
    await flush(pub)
    await async_wait_for(lambda: rig.metric_is("appended", n), 20, f"{n} records appended", interval=0.02)
    return pub


async def test_hub_killed_and_restarted_during_replay_pong(rig: Rig) -> None:
    batch = 500
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    before = await hub_collector(await rig.connect(rig.hub))
    # Paced so that the kill lands in the middle of the replay even on a fast machine.
    rig.start_edge(f"replay_rate = 5000\nbatch = {batch}")
    await _cut_and_store(rig, N_CUT)
    rig.proxy.restore()
    rig.proxy.slow(0.1)  # PONGs come late: the unconfirmed window is full when the hub dies
    await async_wait_for(lambda: len(before) >= 4000, 30, "the hub has part of the backlog", interval=0.02)
    rig.kill_hub()
    # Keep the gateway out until the restarted hub has its subscriber again: in pong mode a PONG
    # confirms that the hub took the messages, not that anyone was subscribed (they would be lost).
    rig.proxy.cut()
    hub = rig.restart_hub()
    after = await hub_collector(await rig.connect(hub))
    rig.proxy.restore()
    await async_wait_for(lambda: bool(after) and int(after[-1].data) == N_CUT - 1, 60, "the rest reaches the new hub",
                         interval=0.02)
    await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 20, "everything confirmed", interval=0.02)
    old = [int(m.data) for m in before]
    new = [int(m.data) for m in after]
    assert 4000 <= len(old) < N_CUT, "the hub died in the middle of the replay"
    # Before the kill: an in-order prefix. After: in order from the first unconfirmed record to the end.
    assert old == list(range(len(old)))
    assert new == list(range(new[0], N_CUT))
    assert new[0] <= len(old), f"gap: the old hub got up to {len(old) - 1}, the new one starts at {new[0]}"
    duplicates = len(old) - new[0]
    print(f"hub restart: {len(old)} before, {len(new)} after, {duplicates} duplicates "
          f"(seqs {new[0]}..{len(old) - 1})")
    assert duplicates <= MAX_PONG_BATCHES * batch  # only the unconfirmed window goes again
    assert {msg_id(m) for m in after[:duplicates]} == {f"gw1-{i + 1}" for i in range(new[0], len(old))}
    m = await rig.metrics()
    assert m["appended"] == N_CUT and m["confirmed"] == N_CUT and m["dropped"] == 0
    assert m["resent"] >= duplicates


async def test_hub_killed_and_restarted_during_replay_jetstream(rig: Rig) -> None:
    await rig.start_hub(js=True)
    assert rig.hub is not None and rig.proxy is not None
    js = (await rig.connect(rig.hub)).jetstream()
    await js.add_stream(name="EDGE", subjects=["telemetry.>"])  # file storage under the hub's store_dir
    rig.start_edge('confirm = "jetstream"\nstream = "EDGE"\nbatch = 1000\nreplay_rate = 5000')
    await _cut_and_store(rig, N_CUT)
    rig.proxy.restore()

    async def stream_msgs(ctx) -> int:  # type: ignore[no-untyped-def]
        return int((await ctx.stream_info("EDGE")).state.messages)

    await async_wait_for(lambda: _ge(lambda: stream_msgs(js), 4000), 30, "4000 messages in the stream", interval=0.05)
    stored_at_kill = await stream_msgs(js)
    rig.kill_hub()
    assert stored_at_kill < N_CUT, "the hub died in the middle of the replay"
    hub = rig.restart_hub()
    js2 = (await rig.connect(hub)).jetstream()
    await async_wait_for(lambda: _ge(lambda: stream_msgs(js2), N_CUT), 60, "the backlog in the new stream",
                         interval=0.05)
    await async_wait_for(lambda: rig.metric_is("depth_msgs", 0), 30, "everything confirmed by PubAck",
                         interval=0.02)
    info = await js2.stream_info("EDGE")
    assert (info.state.messages, info.state.first_seq, info.state.last_seq) == (N_CUT, 1, N_CUT)
    got: list[int] = []
    ids: set[str] = set()

    async def on_msg(msg: Msg) -> None:
        got.append(int(msg.data))
        ids.add(msg_id(msg))

    sub = await js2.subscribe("telemetry.>", cb=on_msg, ordered_consumer=True)
    await async_wait_for(lambda: len(got) >= N_CUT, 60, "the whole stream read back", interval=0.02)
    await sub.unsubscribe()
    assert got == list(range(N_CUT))  # exactly once, in order: the stream dropped the resent copies
    assert ids == {f"gw1-{i}" for i in range(1, N_CUT + 1)}
    m = await rig.metrics()
    assert m["confirmed"] == N_CUT and m["puback_errors"] == 0


async def test_max_age_expires_records_while_the_link_is_cut(rig: Rig) -> None:
    old_n, new_n = 300, 200
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    at_hub = await hub_collector(await rig.connect(rig.hub))
    # Expiry is by whole segments (rolled every max_age/16) in the writer's cycle, at least every 5 s.
    rig.start_edge('max_age = "3s"')
    pub = await _cut_and_store(rig, old_n, "telemetry.gw1.old")
    await async_wait_for(lambda: rig.metric_is("dropped_age", old_n), 20, "the old records expire", interval=0.02)
    m = await rig.metrics()
    assert (m["depth_msgs"], m["dropped"], m["confirmed"]) == (0, old_n, 0)
    for i in range(new_n):
        await pub.publish("telemetry.gw1.new", b"%d" % i)
    await flush(pub)
    await async_wait_for(lambda: rig.metric_is("appended", old_n + new_n), 10, "the new records appended",
                         interval=0.02)
    assert (await rig.metrics())["depth_msgs"] == new_n
    rig.proxy.restore()
    await async_wait_for(lambda: rig.metric_is("confirmed", new_n), 20, "the new records confirmed by the hub",
                         interval=0.02)
    await async_wait_for(lambda: len(at_hub) >= new_n, 10, "the new records at the hub", interval=0.02)
    assert [(m.subject, int(m.data)) for m in at_hub] == [("telemetry.gw1.new", i) for i in range(new_n)]
    assert [msg_id(m) for m in at_hub[:1]] == [f"gw1-{old_n + 1}"]
    m = await rig.metrics()
    assert (m["dropped_age"], m["dropped"], m["depth_msgs"], m["dropped_full"]) == (old_n, old_n, 0, 0)


def test_outbox_command_with_broker_stopped(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "ob", OutboxOptions(fsync_interval=0.0))
    for i in range(10):
        box.append(b"telemetry.x", b"%d" % i)
    box.confirm(4)
    box.close()
    out = subprocess.run([sys.executable, "-m", "edge", "outbox", "--dir", str(tmp_path / "ob")],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert "pending 6 records" in out and "confirmed through 4" in out
    js = subprocess.run([sys.executable, "-m", "edge", "outbox", "--dir", str(tmp_path / "ob"), "--json"],
                        capture_output=True, text=True, timeout=30, check=True).stdout
    assert json.loads(js)["pending"] == 6
    missing = subprocess.run([sys.executable, "-m", "edge", "outbox", "--dir", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    assert "no outbox here" in missing
