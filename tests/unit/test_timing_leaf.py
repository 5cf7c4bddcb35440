"""The leaf link on manual time: handshake states, keepalive, a stale hub and loop detection.

A real :class:`LeafLink` of a real :class:`Uplink` on a :class:`Server` whose loop is a :class:`ManualLoop`,
over a :class:`FakeTransport`; the test plays the hub (docs/nats-protocol.md section 3) and asserts the
exact bytes the link writes. The same flows run against a real nats-server hub in
tests/integration/test_leaf*.py, in wall-clock time.
"""

from __future__ import annotations

import pytest

from edge.config.settings import Settings
from edge.core.client import ClientConnection
from edge.leaf.link import FIRST_PING, PING_JITTER, LeafHandshakeError
from tests.support.fakes import FakeTransport
from tests.support.wires import LDS, dial, info_line, up

FIRST_PING_LATEST = FIRST_PING * (1 + PING_JITTER)


def test_handshake_states() -> None:
    hub = dial()
    link = hub.link
    assert link.state == "info" and not link.info_fut.done()
    # Before the first INFO, and between INFO and connect_info, a hub PING is answered at once.
    assert hub.send(b"PING\r\n") == b"PONG\r\n"
    assert hub.send(info_line(info_on_connect=True)) == b""
    assert link.state == "connect" and link.info_fut.result()["server_id"] == "NHUB"
    assert hub.send(b"PING\r\n") == b"PONG\r\n"
    assert hub.send(info_line(leafnode_urls=["127.0.0.2:7422"])) == b""  # a second plain INFO: urls only
    assert link.state == "connect" and not link.ready_fut.done()
    assert [(u.host, u.port) for u in hub.uplink.reconnect.urls][-1] == ("127.0.0.2", 7422)
    # The hub's connect_info INFO completes it: the full interest, our $LDS last, is on the wire.
    assert hub.send(info_line(connect_info=True)) == b"LS+ " + LDS + b"\r\n"
    assert link.state == "up" and link.ready_fut.done() and hub.uplink.connected
    assert hub.uplink.connected_event.is_set()
    assert hub.send(b"PING\r\n") == b"PONG\r\n"  # now through the ordered buffer


def test_local_interest_is_sent_when_the_link_comes_up_then_as_it_changes() -> None:
    hub = dial()
    hub.server.interest_listeners.append(hub.uplink._on_interest)  # Uplink.start() without its dial task
    local = ClientConnection(hub.server)
    local.connection_made(FakeTransport())  # type: ignore[arg-type]
    local.data_received(b'CONNECT {"verbose":false}\r\nSUB a.> 1\r\n')
    up(hub, b"LS+ a.>\r\n")
    local.data_received(b"SUB b 2\r\nUNSUB 1\r\n")
    assert hub.send(b"") == b"LS+ b\r\nLS- a.>\r\n"


def test_hub_error_during_the_handshake_fails_it() -> None:
    hub = dial()
    assert hub.send(b"-ERR 'Authorization Violation'\r\n") == b""
    assert hub.link.state == "closed" and hub.transport.closing
    with pytest.raises(LeafHandshakeError, match="hub error: Authorization Violation"):
        hub.link.info_fut.result()
    assert hub.link.closed_fut.result() == "hub error: Authorization Violation"
    assert hub.uplink.stats.last_error == "Authorization Violation"


def test_a_hub_that_sends_connect_is_refused() -> None:
    hub = dial()
    hub.send(info_line())
    assert hub.send(b'CONNECT {"verbose":false}\r\n') == b"-ERR 'Unknown Protocol Operation'\r\n"
    assert hub.link.closed and hub.transport.closing


def test_our_own_lds_from_the_hub_is_a_loop() -> None:
    hub = dial(error_delay=30.0)
    up(hub)
    assert hub.send(b"LS+ " + LDS + b"\r\n") == (
        b"-ERR 'Loop detected for leafnode account=\"$G\". Delaying attempt to reconnect for 30s'\r\n")
    assert hub.link.closed and not hub.uplink.connected and not hub.uplink.connected_event.is_set()
    assert hub.uplink.reconnect.wait_after_disconnect() == 30.0


# -- keepalive and a stale hub --------------------------------------------------------------------


def test_keepalive_pings_and_a_stale_hub() -> None:
    hub = dial(Settings(write_deadline=5.0), ping_interval=10.0, ping_max=2)
    up(hub)
    assert hub.advance(FIRST_PING_LATEST) == b"PING\r\n"  # ~1 s after the link is up, + up to 20 %
    assert hub.send(b"PONG\r\n") == b""
    assert hub.link.pings_out == 0 and hub.link.pongs_in == 1
    assert hub.advance(10.0) == b"PING\r\n"  # the hub's traffic does not skip ours (as nats-server)
    assert hub.advance(10.0) == b"PING\r\n"
    assert hub.link.pings_out == 2
    assert hub.advance(9.5) == b""
    # ping_max PINGs unanswered: the -ERR, a close, and the write deadline for the hub to take it.
    assert hub.advance(0.5) == b"-ERR 'Stale Connection'\r\n"
    assert hub.link.closed and hub.transport.closing and not hub.transport.aborted
    assert hub.link.closed_fut.result() == "stale connection (no PONG from hub)"
    assert not hub.uplink.connected
    hub.advance(4.5)
    assert not hub.transport.aborted
    hub.advance(0.5)
    assert hub.transport.aborted  # what the frozen hub never read is dropped


def test_a_hub_that_answers_is_never_stale() -> None:
    hub = dial(ping_interval=10.0, ping_max=2)
    up(hub)
    assert hub.advance(FIRST_PING_LATEST) == b"PING\r\n"
    for _ in range(30):
        assert hub.send(b"PONG\r\n") == b""
        assert hub.advance(10.0) == b"PING\r\n"
    assert not hub.link.closed and hub.link.pings_sent == 31 and hub.link.pongs_in == 30


def test_close_stops_the_keepalive() -> None:
    hub = dial(ping_interval=10.0)
    up(hub)
    hub.link.close("shutting down")
    assert hub.transport.closing and hub.loop.pending_timers == []
    assert hub.advance(100.0) == b""
