"""The -V protocol trace, side by side with a real nats-server: the same raw client session against both,
each started with ``-V``, must produce the same trace lines (what nats-server writes after the client's
``cid:N - `` tag). What the client sent (``<<-``) must match line for line, in order; the rest (``->>``
and ``<-> [DELSUB]``) as the same lines: nats-server traces a delivery when it queues it, nats-edge
when it writes it (once per loop turn), so the two interleave them differently."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server, wait_for
from tests.support.raw import RawClient

_TRACE = re.compile(r"\[TRC\] 127\.0\.0\.1:\d+ - cid:\d+ - (.*)$")


def _lines(server: ServerProcess) -> list[str]:
    return [m.group(1) for line in server.log().splitlines() if (m := _TRACE.search(line))]


def _pubsub(c: RawClient) -> None:
    c.send(b"SUB foo 1\r\nSUB bar q 2\r\nPUB foo 5\r\nhello\r\nPUB foo r.1 2\r\nhi\r\n"
           b"HPUB foo 12 17\r\nNATS/1.0\r\n\r\nhello\r\n"
           b"HPUB foo r.2 19 21\r\nNATS/1.0\r\nA: \xc3\xa9\r\n\r\n\x00\x7f\r\n"
           b"UNSUB 1\r\nUNSUB 2 5\r\nPING\r\n")
    c.read_until_pong()


def _verbose_then_fatal(c: RawClient) -> None:
    c.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\nSUB ba$d 9\r\nSUB x.. 3\r\nPING\r\n")
    c.read_until_pong()
    c.send(b"BOGUS\r\n")
    c.read_until_closed()


SESSIONS: dict[str, tuple[bytes, Callable[[RawClient], None], int]] = {
    # name: (CONNECT, what follows, DELSUB lines to wait for)
    "user-and-headers": (b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                         b'"protocol":1,"name":"n1","user":"a","pass":"secret"}\r\n', _pubsub, 2),
    "verbose-pedantic-fatal": (b'CONNECT {"verbose":true,"pedantic":true}\r\n', _verbose_then_fatal, 2),
    "token": (b'CONNECT {"auth_token":"s3cr3t","verbose":false,"headers":true}\r\n', _pubsub, 2),
    # A name and user that try to forge a log line: quoted as Go's %q in the tag, as nats-server does.
    "forged-name": (b'CONNECT {"verbose":false,"headers":true,"name":"n\\"1\\nX [ERR] fake",'
                    b'"user":"a\\"b\\nc"}\r\n', _pubsub, 2),
}


def _traced(server: ServerProcess, connect: bytes, session: Callable[[RawClient], None], delsubs: int) -> list[str]:
    with RawClient(server.port) as c:
        c.send(connect)
        session(c)
    # Subscriptions still open go when the connection does: their DELSUB lines come last.
    wait_for(lambda: sum("<-> [DELSUB" in ln for ln in _lines(server)) >= delsubs, 10, "the DELSUB trace lines")
    return _lines(server)


@pytest.mark.parametrize("name", list(SESSIONS))
def test_trace_lines_are_nats_servers(tmp_path: Path, name: str) -> None:
    connect, session, delsubs = SESSIONS[name]
    (tmp_path / "ns").mkdir()
    (tmp_path / "edge").mkdir()
    theirs_server = start_nats_server(tmp_path / "ns", "-V")
    try:
        theirs = _traced(theirs_server, connect, session, delsubs)
    finally:
        theirs_server.stop()
    ours_server = start_nats_edge(tmp_path / "edge", "-V")
    try:
        ours = _traced(ours_server, connect, session, delsubs)
    finally:
        ours_server.stop()
    assert [ln for ln in ours if "<<-" in ln] == [ln for ln in theirs if "<<-" in ln]
    assert sorted(ours) == sorted(theirs)
    assert "secret" not in "\n".join(ours) and "s3cr3t" not in "\n".join(ours)
