"""Connection floods: sockets that never send CONNECT are cut by the auth timeout; connect/disconnect
cycles do not grow the broker's memory. Counts and RSS (from /proc) are printed (-s to see them)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.integration.test_fuzz_socket import rss_kb
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def auth_edge(tmp_path: Path) -> ServerProcess:
    toml = tmp_path / "edge.toml"
    # A small closed-connection ring (its ~430 B per record is bounded by design): growth beyond it is a leak.
    toml.write_text('max_connections = 300\nmax_closed_clients = 100\n[authorization]\ntoken = "tok"\n'
                    'timeout = "500ms"\n[auth_backoff]\nthreshold = 0\n')
    sp = start_nats_edge(tmp_path, "-c", str(toml))
    yield sp
    sp.stop()


def test_silent_connection_flood_is_cut_by_auth_timeout(auth_edge: ServerProcess) -> None:
    before = rss_kb(auth_edge.proc.pid)
    socks: list[socket.socket] = []
    try:
        socks.extend(socket.create_connection(("127.0.0.1", auth_edge.port), timeout=5)
                     for _ in range(400))  # more than max_connections
        peak = rss_kb(auth_edge.proc.pid)
        replies = {"auth_timeout": 0, "max_connections": 0, "other": 0}
        deadline = time.monotonic() + 20
        for s in socks:
            data = b""
            while True:  # read to EOF: each recv, and so the whole read, is bounded by the deadline
                s.settimeout(max(0.1, deadline - time.monotonic()))
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
                assert len(data) < 65536 and time.monotonic() < deadline, data[:200]
            if b"-ERR 'Authentication Timeout'" in data:
                replies["auth_timeout"] += 1
            elif b"-ERR 'maximum connections exceeded'" in data:
                replies["max_connections"] += 1
            else:
                replies["other"] += 1
    finally:
        for s in socks:
            s.close()
    after = rss_kb(auth_edge.proc.pid)
    print(f"\nflood: {len(socks)} silent connections: {replies}; RSS {before} -> peak {peak} -> {after} kB")
    assert replies["other"] == 0
    assert replies["auth_timeout"] >= 290 and replies["auth_timeout"] + replies["max_connections"] == 400
    with RawClient(auth_edge.port) as c:  # still serving
        c.send(b'CONNECT {"auth_token":"tok","verbose":false}\r\nPING\r\n')
        assert c.read_until_pong() == b"PONG\r\n"
    assert peak - before < 40_000


@pytest.mark.slow
def test_rss_after_connect_disconnect_cycles(auth_edge: ServerProcess) -> None:
    connect = b"CONNECT " + json.dumps({"auth_token": "tok", "verbose": False}).encode() + b"\r\nSUB a.b 1\r\nPING\r\n"
    pid = auth_edge.proc.pid

    def cycles(n: int) -> None:
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", auth_edge.port), timeout=5) as s:
                s.sendall(connect)
                buf = b""
                while b"PONG\r\n" not in buf:  # each recv bounded by the socket timeout, the reply by size
                    chunk = s.recv(4096)
                    assert chunk and len(buf) < 65536, buf[:200]
                    buf += chunk

    cycles(500)  # warm up allocators and caches
    before = rss_kb(pid)
    start = time.monotonic()
    cycles(10_000)
    after = rss_kb(pid)
    print(f"\n10000 connect/disconnect cycles in {time.monotonic() - start:.1f}s: RSS {before} -> {after} kB")
    assert after - before < 4_000
