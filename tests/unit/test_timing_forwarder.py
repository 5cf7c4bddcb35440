"""The store forwarder's confirmation windows on a fake link: pong mode (a batch confirmed by the PONG to
the PING behind it), jetstream mode (a PubAck per record, the acknowledged prefix confirmed) and the
jetstream ack timeout (unacknowledged records sent again after ACK_WAIT of manual time).

A real :class:`Forwarder` with a real outbox (tmp_path) drains through a real :class:`LeafLink` over a
:class:`FakeTransport`; the server's timers and the forwarder's clock are one :class:`ManualLoop`. The
drain task itself runs on the test's event loop, so the test waits (bounded) for bytes on the wire.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from edge.config.settings import Settings
from edge.config.store_forward import StoreForwardSettings
from edge.core.internal import InternalClient
from edge.leaf.link import FIRST_PING, PING_JITTER
from edge.store.forwarder import ACK_WAIT, Forwarder
from tests.support.waiting import async_wait_for
from tests.support.wires import Hub, dial, up

FIRST_PING_LATEST = FIRST_PING * (1 + PING_JITTER)


@dataclass
class Setup:
    hub: Hub
    fw: Forwarder
    pub: InternalClient  # a local publisher (an adapter) on covered subjects

    def publish(self, *subjects: bytes) -> None:
        for subject in subjects:
            self.pub.publish(subject, subject[-1:])

    @property
    def confirmed(self) -> int:
        assert self.fw.box is not None
        return self.fw.box.stats().confirmed_seq


@asynccontextmanager
async def forwarding(tmp_path: Path, confirm: str, batch: int) -> AsyncIterator[Setup]:
    hub = dial(Settings(server_name="gw", ping_interval=3600.0))
    sf = StoreForwardSettings(subjects=("t.>",), confirm=confirm, stream="outbox",  # type: ignore[arg-type]
                              batch=batch, replay_rate=0)
    fw = Forwarder(hub.server, sf, str(tmp_path / "outbox"), hub.uplink, clock=hub.loop.time)
    await fw.open()
    fw.start()
    try:
        yield Setup(hub, fw, hub.server.internal_client("app"))
    finally:
        await fw.stop()


def hmsg(subject: bytes, seq: int, reply: bytes = b"") -> bytes:
    """The HMSG the forwarder sends for the record ``seq`` published by :meth:`Setup.publish`."""
    headers = b"NATS/1.0\r\nNats-Msg-Id: gw-%d\r\n\r\n" % seq
    payload = subject[-1:]
    mid = b" " + reply + b" " if reply else b" "
    return b"HMSG %b%b%d %d\r\n%b%b\r\n" % (subject, mid, len(headers), len(headers) + 1, headers, payload)


async def received(hub: Hub, marker: bytes, count: int = 1) -> bytes:
    """Run the server's flush (manual loop) while the drain task runs, until ``marker`` reached the hub
    ``count`` times; returns everything the hub received since the last call."""
    def arrived() -> bool:
        hub.loop.run_ready()
        return hub.transport.data.count(marker) >= count

    await async_wait_for(arrived, 5.0, f"{count} x {marker!r} on the link")
    return hub.transport.take()


def puback(inbox: bytes, seq: int, **extra: object) -> bytes:
    body = json.dumps({"stream": "outbox", "seq": seq, **extra}).encode()
    return b"LMSG %b%d %d\r\n%b\r\n" % (inbox, seq, len(body), body)


# -- pong mode ------------------------------------------------------------------------------------


async def test_pong_mode_confirms_a_batch_with_the_pong_to_the_ping_behind_it(tmp_path: Path) -> None:
    async with forwarding(tmp_path, "pong", batch=2) as s:
        hub = s.hub
        up(hub)
        # A keepalive PING first: PING #1. The batches' PINGs are #2 and #3.
        assert hub.advance(FIRST_PING_LATEST) == b"PING\r\n"
        s.publish(b"t.a", b"t.b", b"t.c", b"other")
        wire = await received(hub, b"PING\r\n", 2)
        assert wire == hmsg(b"t.a", 1) + hmsg(b"t.b", 2) + b"PING\r\n" + hmsg(b"t.c", 3) + b"PING\r\n"
        assert hub.send(b"PONG\r\n") == b""  # answers the keepalive: confirms nothing
        assert s.confirmed == 0
        assert hub.send(b"PONG\r\n") == b""
        assert s.confirmed == 2
        assert hub.send(b"PONG\r\n") == b""
        assert s.confirmed == 3 and s.fw.forwarded == 3 and s.fw.resent == 0


async def test_pong_mode_resends_the_unconfirmed_batch_after_a_link_loss(tmp_path: Path) -> None:
    async with forwarding(tmp_path, "pong", batch=2) as s:
        hub = s.hub
        up(hub)
        s.publish(b"t.a", b"t.b", b"t.c")
        assert await received(hub, b"PING\r\n", 2) == (
            hmsg(b"t.a", 1) + hmsg(b"t.b", 2) + b"PING\r\n" + hmsg(b"t.c", 3) + b"PING\r\n")
        assert hub.send(b"PONG\r\n") == b""
        assert s.confirmed == 2
        hub.link.connection_lost(None)  # the PONG for record 3 never comes
        await async_wait_for(lambda: s.fw.resent == 1, 5.0, "the forwarder to see the link go")
        again = hub.redial()
        up(again)
        # The same record, with the same Nats-Msg-Id: the hub's duplicate window can drop it.
        assert await received(again, b"PING\r\n") == hmsg(b"t.c", 3) + b"PING\r\n"
        assert again.send(b"PONG\r\n") == b""
        assert s.confirmed == 3


# -- jetstream mode -------------------------------------------------------------------------------


async def test_jetstream_mode_confirms_the_acknowledged_prefix(tmp_path: Path) -> None:
    async with forwarding(tmp_path, "jetstream", batch=2) as s:
        hub = s.hub
        up(hub)
        s.publish(b"t.a", b"t.b", b"t.c")
        wire = await received(hub, b"HMSG", 2)  # at most `batch` records unacknowledged
        inbox = wire[len(b"HMSG t.a "):wire.index(b"1 ", len(b"HMSG t.a "))]
        assert inbox.startswith(b"_SF.") and inbox.endswith(b".")
        assert wire == hmsg(b"t.a", 1, inbox + b"1") + hmsg(b"t.b", 2, inbox + b"2")
        assert hub.send(puback(inbox, 2)) == b""  # out of order: the prefix is still empty
        assert s.confirmed == 0
        hub.send(puback(inbox, 1))
        assert s.confirmed == 2
        assert await received(hub, b"HMSG") == hmsg(b"t.c", 3, inbox + b"3")  # room in the window again
        hub.send(puback(inbox, 3, duplicate=True))  # a copy the stream already had still confirms
        assert s.confirmed == 3 and s.fw.puback_duplicates == 1
        error = b'{"error":{"code":503,"description":"no space"}}'
        hub.send(b"LMSG %b3 %d\r\n%b\r\n" % (inbox, len(error), error))  # counted, confirms nothing
        assert s.fw.puback_errors == 1 and s.confirmed == 3


async def test_jetstream_mode_sends_unacknowledged_records_again_after_ack_wait(tmp_path: Path) -> None:
    async with forwarding(tmp_path, "jetstream", batch=2) as s:
        hub = s.hub
        up(hub)
        s.publish(b"t.a", b"t.b")
        inbox = s.fw._inbox
        first = hmsg(b"t.a", 1, inbox + b"1") + hmsg(b"t.b", 2, inbox + b"2")
        assert await received(hub, b"HMSG", 2) == first
        hub.send(puback(inbox, 2))  # record 1's PubAck is lost
        # ACK_WAIT passes (the keepalive PING goes out on the way); the next record wakes the drain.
        assert hub.advance(ACK_WAIT + 0.5) == b"PING\r\n"
        s.publish(b"t.c")
        assert await received(hub, b"HMSG", 2) == first  # both again: the window starts over
        assert s.fw.resent == 2 and s.confirmed == 0
        hub.send(puback(inbox, 1) + puback(inbox, 2, duplicate=True))
        assert s.confirmed == 2
        assert await received(hub, b"HMSG") == hmsg(b"t.c", 3, inbox + b"3")
