"""The official nats-py client against a real nats-edge process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def nc(edge_server: ServerProcess) -> AsyncIterator[Client]:
    client = await nats.connect(edge_server.url, max_reconnect_attempts=0, name="test-client")
    yield client
    if not client.is_closed:
        await client.close()


async def collect(sub, count: int, timeout: float = 10.0) -> list[Msg]:  # type: ignore[no-untyped-def]
    out = []
    async with asyncio.timeout(timeout):
        async for msg in sub.messages:
            out.append(msg)
            if len(out) == count:
                break
    return out


async def test_publish_subscribe(nc: Client) -> None:
    sub = await nc.subscribe("greet.joe")
    await nc.publish("greet.joe", b"hello")
    [msg] = await collect(sub, 1)
    assert (msg.subject, msg.data) == ("greet.joe", b"hello")


async def test_wildcards(nc: Client) -> None:
    star = await nc.subscribe("w.*.temp")
    full = await nc.subscribe("w.>")
    await nc.publish("w.room1.temp", b"1")
    await nc.publish("w.room1.hum", b"2")
    await nc.publish("w.a.b.c", b"3")
    assert [m.data for m in await collect(star, 1)] == [b"1"]
    assert [m.data for m in await collect(full, 3)] == [b"1", b"2", b"3"]


async def test_queue_group_totals_and_spread(edge_server: ServerProcess, nc: Client) -> None:
    members = [await nats.connect(edge_server.url) for _ in range(3)]
    try:
        counts = [0, 0, 0]
        done = asyncio.Event()
        total = 300

        def make_cb(i: int):  # type: ignore[no-untyped-def]
            async def cb(msg: Msg) -> None:
                counts[i] += 1
                if sum(counts) == total:
                    done.set()

            return cb

        for i, m in enumerate(members):
            await m.subscribe("jobs", queue="workers", cb=make_cb(i))
            await flush(m)
        for i in range(total):
            await nc.publish("jobs", str(i).encode())
        await flush(nc)
        await asyncio.wait_for(done.wait(), 10)
        for m in members:
            await flush(m)
        assert sum(counts) == total
        assert all(c >= total // 10 for c in counts), counts
    finally:
        for m in members:
            await m.close()


async def test_request_reply_and_timeout(nc: Client, edge_server: ServerProcess) -> None:
    responder = await nats.connect(edge_server.url)
    try:

        async def echo(msg: Msg) -> None:
            await msg.respond(b"re:" + msg.data)

        await responder.subscribe("svc.echo", cb=echo)
        await flush(responder)
        reply = await nc.request("svc.echo", b"ping", timeout=5)
        assert reply.data == b"re:ping"
        # A subscriber that never answers: the request times out (it has a responder, so no 503).
        await responder.subscribe("svc.silent")
        await flush(responder)
        with pytest.raises(NatsTimeoutError):
            await nc.request("svc.silent", b"x", timeout=0.3)
    finally:
        await responder.close()


async def test_no_responders(nc: Client) -> None:
    with pytest.raises(NoRespondersError):
        await nc.request("nobody.home", b"x", timeout=5)


async def test_headers_round_trip_multi_value(nc: Client) -> None:
    sub = await nc.subscribe("hdr.x")
    await nc.publish("hdr.x", b"body", headers={"X-One": "1", "X-Two": "two words"})
    [msg] = await collect(sub, 1)
    assert msg.data == b"body"
    assert msg.headers == {"X-One": "1", "X-Two": "two words"}
    # Repeated header names travel as they are (nats-py keeps the last; the raw bytes keep both).
    raw = b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n"
    sub2 = await nc.subscribe("hdr.y")
    await nc._send_command(b"HPUB hdr.y %d %d\r\n%b\r\n" % (len(raw), len(raw), raw))
    await flush(nc)
    [msg2] = await collect(sub2, 1)
    assert msg2.headers is not None and msg2.headers["A"] in ("1", "2")


async def test_auto_unsubscribe(nc: Client) -> None:
    sub = await nc.subscribe("auto.x")
    await sub.unsubscribe(limit=3)
    for i in range(5):
        await nc.publish("auto.x", str(i).encode())
    await flush(nc)
    got = await collect(sub, 3)
    assert [m.data for m in got] == [b"0", b"1", b"2"]


async def test_drain(edge_server: ServerProcess) -> None:
    client = await nats.connect(edge_server.url)
    received: list[bytes] = []

    async def cb(msg: Msg) -> None:
        received.append(msg.data)

    await client.subscribe("drain.x", cb=cb)
    await flush(client)
    for i in range(100):
        await client.publish("drain.x", str(i).encode())
    await client.drain()
    assert received == [str(i).encode() for i in range(100)]
    assert client.is_closed


async def test_one_mib_payloads(nc: Client) -> None:
    payload = bytes(range(256)) * 4096  # exactly 1 MiB, the default max_payload
    sub = await nc.subscribe("big.x")
    for _ in range(3):
        await nc.publish("big.x", payload)
    got = await collect(sub, 3)
    assert all(m.data == payload for m in got)


async def test_ten_thousand_messages_in_order(nc: Client, edge_server: ServerProcess) -> None:
    receiver = await nats.connect(edge_server.url)
    try:
        sub = await receiver.subscribe("order.x", pending_msgs_limit=20000)
        await flush(receiver)
        n = 10_000
        for i in range(n):
            await nc.publish("order.x", i.to_bytes(4, "big"))
        await flush(nc)
        got = await collect(sub, n, timeout=30)
        assert [int.from_bytes(m.data, "big") for m in got] == list(range(n))
    finally:
        await receiver.close()


async def test_reconnect_after_broker_restart_on_same_port(tmp_path: Path) -> None:
    port = free_port()
    first = start_nats_edge(tmp_path / "a", "-p", str(port))
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    client = await nats.connect(
        f"nats://127.0.0.1:{port}", reconnect_time_wait=0.1, max_reconnect_attempts=200,
        reconnected_cb=on_reconnect,
    )
    second = None
    try:
        sub = await client.subscribe("re.x")
        await flush(client)
        assert first.stop() == 0
        second = start_nats_edge(tmp_path / "b", "-p", str(port))
        await asyncio.wait_for(reconnected.wait(), 15)
        # The client re-sends its subscriptions on reconnect; they work on the new broker.
        await client.publish("re.x", b"after")
        [msg] = await collect(sub, 1)
        assert msg.data == b"after"
    finally:
        await client.close()
        first.kill()
        if second is not None:
            assert second.stop() == 0
