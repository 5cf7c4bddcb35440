"""A client connection's RTT on manual time, measured as nats-server measures it: estimated from INFO to
CONNECT, then by the server's own PING (the first after ~2 s, then once an hour even on a busy
connection), each PONG to one of our PINGs updating it. End to end, side by side with nats-server:
tests/integration/test_first_hour_small.py.
"""

from __future__ import annotations

import pytest

from edge.config.settings import Settings
from edge.core.client import FIRST_CLIENT_PING_INTERVAL, PING_JITTER, RTT_MEASUREMENT_INTERVAL
from tests.support.wires import Wire, connect

FIRST_PING_LATEST = FIRST_CLIENT_PING_INTERVAL * (1 + PING_JITTER)
CONNECT = b'CONNECT {"verbose":false,"protocol":1}\r\n'


def advance_to_ping(w: Wire) -> float:
    """Advance exactly to the PING timer (the only timer without auth) and return how long that was."""
    (due,) = w.loop.pending_timers
    assert w.advance(due) == b"PING\r\n"
    return due


def test_rtt_is_estimated_from_info_to_connect() -> None:
    w = connect(Settings())
    assert w.conn.rtt == 0.0  # not connected yet: nothing to estimate from
    w.advance(0.25)
    w.feed(CONNECT)
    assert w.conn.rtt == pytest.approx(0.25)
    w.advance(0.5)
    w.feed(CONNECT)  # a repeated CONNECT is not a handshake
    assert w.conn.rtt == pytest.approx(0.25)


def test_each_pong_to_our_ping_measures_rtt_and_an_unsolicited_one_does_not() -> None:
    w = connect(Settings(ping_interval=10.0))
    w.feed(CONNECT)
    assert FIRST_CLIENT_PING_INTERVAL <= advance_to_ping(w) <= FIRST_PING_LATEST
    w.advance(0.125)
    w.feed(b"PONG\r\n")
    assert w.conn.rtt == pytest.approx(0.125)
    w.advance(1.0)
    w.feed(b"PONG\r\n")  # nothing outstanding: no measurement (nats-server would compute from zero time)
    assert w.conn.rtt == pytest.approx(0.125)
    assert w.advance(10.0 - 1.125) == b""  # the PONGs were traffic: this keepalive tick sends nothing
    advance_to_ping(w)  # idle since: the keepalive PING also measures
    w.advance(0.5)
    w.feed(b"PONG\r\n")
    assert w.conn.rtt == pytest.approx(0.5)


def test_a_busy_connection_still_gets_an_rtt_ping_once_an_hour() -> None:
    w = connect(Settings(ping_interval=120.0))
    w.feed(CONNECT)
    pings: list[int] = []
    for second in range(1, int(RTT_MEASUREMENT_INTERVAL * 2) + 1):
        sent = w.advance(1.0)
        if b"PING\r\n" in sent:
            pings.append(second)
            w.feed(b"PONG\r\n")
        if second % 30 == 0:
            w.feed(b"PING\r\n")  # client traffic: no keepalive PING is needed
    # The first after ~2 s, then the first 120 s tick more than an hour after it, and so on.
    assert pings[0] == 3 and len(pings) == 2, pings
    assert RTT_MEASUREMENT_INTERVAL < pings[1] - pings[0] <= RTT_MEASUREMENT_INTERVAL + 120, pings
