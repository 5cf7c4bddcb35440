"""A client connection's timing rules on manual time: auth timeout, PING/stale, write deadline, slow
consumer and the CONNECT suspended during a bcrypt check.

Each test drives a real :class:`ClientConnection` on a real :class:`Server` whose loop is a
:class:`ManualLoop`, over a :class:`FakeTransport`, and asserts the exact bytes and state. The same
rules are checked end to end (wall-clock, subprocesses) in tests/integration/test_broker_behaviour.py
and test_auth.py; here they take microseconds and cannot be late.
"""

from __future__ import annotations

import bcrypt
import pytest

from edge.config.settings import AuthorizationSettings, Settings
from edge.core.client import FIRST_CLIENT_PING_INTERVAL, PING_JITTER, CloseReason
from tests.support.wires import connect

FIRST_PING_LATEST = FIRST_CLIENT_PING_INTERVAL * (1 + PING_JITTER)


# -- authentication timeout -----------------------------------------------------------------------


def test_no_connect_within_the_auth_timeout_closes_with_the_error() -> None:
    w = connect(Settings(authorization=AuthorizationSettings(token="s3cret", timeout=2.0)))
    assert w.advance(1.5) == b""
    assert not w.conn.closed
    assert w.advance(0.5) == b"-ERR 'Authentication Timeout'\r\n"
    assert w.conn.closed and w.conn.close_reason == CloseReason.AUTH_TIMEOUT
    assert w.transport.closing and not w.transport.aborted  # flushed, then closed: the client sees why
    assert w.server.clients == {}
    assert w.loop.pending_timers == []  # the PING timer went with the connection


def test_connect_in_time_cancels_the_auth_timeout() -> None:
    w = connect(Settings(authorization=AuthorizationSettings(token="s3cret", timeout=1.0)))
    assert w.advance(0.5) == b""
    assert w.feed(b'CONNECT {"auth_token":"s3cret","verbose":true}\r\n') == b"+OK\r\n"
    assert w.advance(1.0) == b""  # past the 1 s: nothing
    assert w.conn.connected and not w.conn.closed


def test_without_authentication_there_is_no_auth_timer() -> None:
    w = connect(Settings(ping_interval=3600.0))
    assert w.loop.pending_timers == [pytest.approx(FIRST_CLIENT_PING_INTERVAL * (1 + PING_JITTER * 0.6180339887))]


# -- PING interval and stale connections ---------------------------------------------------------


def test_unanswered_pings_make_the_connection_stale() -> None:
    w = connect(Settings(ping_interval=10.0, ping_max=2))
    assert w.advance(FIRST_CLIENT_PING_INTERVAL) == b""  # the first PING comes after 2 s + jitter ...
    assert w.advance(FIRST_PING_LATEST - FIRST_CLIENT_PING_INTERVAL) == b"PING\r\n"  # ... at most 20 %
    assert w.conn.pings_out == 1
    assert w.advance(10.0) == b"PING\r\n"
    assert w.conn.pings_out == 2
    assert w.advance(9.5) == b""
    # A third PING would exceed ping_max outstanding: nats-server's 'Stale Connection'.
    assert w.advance(0.5) == b"-ERR 'Stale Connection'\r\n"
    assert w.conn.closed and w.conn.close_reason == CloseReason.STALE
    assert w.server.stale_connections == 1 and w.transport.closing


def test_answered_pings_keep_the_connection_alive() -> None:
    w = connect(Settings(ping_interval=10.0, ping_max=2))
    out = []
    for _ in range(100):  # 100 s, each PING answered within a second
        sent = w.advance(1.0)
        if sent:
            assert sent == b"PING\r\n"
            assert w.feed(b"PONG\r\n") == b""
            assert w.conn.pings_out == 0
        out.append(sent)
    # The first PING after 2 s + jitter; then, as the PONG counts as traffic, every other 10 s tick.
    assert [i for i, sent in enumerate(out, 1) if sent] == [3, 23, 43, 63, 83]
    assert not w.conn.closed and w.server.stale_connections == 0


def test_inbound_traffic_postpones_the_keepalive_ping() -> None:
    w = connect(Settings(ping_interval=10.0, ping_max=2))
    assert w.advance(FIRST_PING_LATEST) == b"PING\r\n"  # the first one always goes out (RTT)
    assert w.feed(b"PONG\r\n") == b""
    assert w.advance(5.0) == b""
    assert w.feed(b"PING\r\n") == b"PONG\r\n"  # the client was heard from 5 s before the next tick ...
    assert w.advance(5.0) == b""  # ... so that tick sends nothing
    assert w.advance(10.0) == b"PING\r\n"  # and the one after, with 15 s of silence, does


# -- write deadline -------------------------------------------------------------------------------


def test_a_write_stalled_past_the_write_deadline_is_a_slow_consumer() -> None:
    w = connect(Settings(write_deadline=10.0, ping_interval=3600.0))
    assert w.advance(FIRST_PING_LATEST) == b"PING\r\n"  # out of the way
    w.conn.pause_writing()  # the transport's buffer went over its high-water mark
    assert w.advance(9.5) == b""
    w.conn.resume_writing()  # drained in time: the deadline is off
    assert w.advance(20.0) == b""
    assert not w.conn.closed
    w.conn.pause_writing()
    w.conn.pause_writing()  # repeated: still one deadline, counted from the first
    assert w.advance(10.0) == b""  # no -ERR: a slow consumer is cut, not told
    assert w.conn.closed and w.conn.close_reason == CloseReason.SLOW_CONSUMER_DEADLINE
    assert w.transport.aborted and w.server.slow_consumers == 1


# -- slow consumer (max_pending) -------------------------------------------------------------------


def test_output_beyond_max_pending_is_a_slow_consumer() -> None:
    settings = Settings(max_pending=1024, ping_interval=3600.0)
    sub = connect(settings)
    pub = connect(settings, sub.loop, sub.server)
    assert sub.feed(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB s 1\r\n') == b""
    assert pub.feed(b'CONNECT {"verbose":false,"pedantic":false}\r\n') == b""
    sub.transport.stalled = True  # the subscriber stops reading: written bytes pile up in the socket buffer
    payload = b"x" * 400
    frame = b"MSG s 1 400\r\n" + payload + b"\r\n"
    pub.feed(b"PUB s 400\r\n" + payload + b"\r\n")
    assert sub.written() == frame
    pub.feed(b"PUB s 400\r\n" + payload + b"\r\n")
    assert sub.written() == frame
    assert sub.conn.pending_bytes == 2 * len(frame) and not sub.conn.closed
    # The third would make 3 * 415 bytes pending, over 1024: cut without -ERR, the rest dropped.
    pub.feed(b"PUB s 400\r\n" + payload + b"\r\n")
    assert sub.written() == b""
    assert sub.conn.closed and sub.conn.close_reason == CloseReason.SLOW_CONSUMER_PENDING
    assert sub.transport.aborted and sub.server.slow_consumers == 1
    assert not pub.conn.closed  # the publisher is not punished


def test_a_flush_that_leaves_more_than_max_pending_buffered_is_a_slow_consumer() -> None:
    w = connect(Settings(max_pending=64, ping_interval=3600.0))
    w.transport.stalled = True
    w.transport.buffered = 60  # earlier output the peer has not read yet
    assert w.feed(b"PING\r\n") == b"PONG\r\n"  # 66 bytes buffered after this write: over 64
    assert w.conn.closed and w.conn.close_reason == CloseReason.SLOW_CONSUMER_PENDING
    assert w.transport.aborted


# -- the CONNECT suspended during a bcrypt check --------------------------------------------------


TOKEN_HASH = bcrypt.hashpw(b"tok", bcrypt.gensalt(4)).decode()


async def test_bcrypt_check_suspends_the_connects_input_until_it_is_done() -> None:
    w = connect(Settings(authorization=AuthorizationSettings(token=TOKEN_HASH, timeout=1.0),
                         ping_interval=3600.0))
    # CONNECT and what the client pipelined behind it, in one read.
    assert w.feed(b'CONNECT {"auth_token":"tok","verbose":false}\r\nPING\r\nSUB s 1\r\n') == b""
    assert not w.transport.reading  # no more input is read while the check runs ...
    assert w.conn.parser._suspended  # ... and what was read waits, unparsed
    assert not w.conn.connected and w.conn.subs == {}
    (task,) = w.loop.tasks
    await task  # bcrypt in a worker thread, on the real loop
    assert w.written() == b"PONG\r\n"  # the pipelined input ran, in order, after the CONNECT
    assert w.transport.reading and not w.conn.parser._suspended
    assert w.conn.connected and list(w.conn.subs) == [b"1"]
    assert w.advance(1.5) == b""  # the auth timer was cancelled by the CONNECT


async def test_bcrypt_failure_after_the_suspension_is_an_authorization_violation() -> None:
    w = connect(Settings(authorization=AuthorizationSettings(token=TOKEN_HASH, timeout=2.0),
                         ping_interval=3600.0))
    assert w.feed(b'CONNECT {"auth_token":"wrong","verbose":false}\r\nPING\r\n') == b""
    (task,) = w.loop.tasks
    await task
    assert w.written() == b"-ERR 'Authorization Violation'\r\n"  # and not the PONG behind it
    assert w.conn.closed and w.conn.close_reason == CloseReason.AUTH_VIOLATION
    assert not w.transport.reading  # closed: reading is never resumed


async def test_auth_timeout_during_a_bcrypt_check_wins() -> None:
    w = connect(Settings(authorization=AuthorizationSettings(token=TOKEN_HASH, timeout=2.0),
                         ping_interval=3600.0))
    assert w.feed(b'CONNECT {"auth_token":"tok","verbose":false}\r\nPING\r\n') == b""
    assert w.advance(2.0) == b"-ERR 'Authentication Timeout'\r\n"
    (task,) = w.loop.tasks
    await task  # the check finishes on a closed connection: it is ignored
    assert w.written() == b""
    assert w.conn.close_reason == CloseReason.AUTH_TIMEOUT and not w.conn.connected
