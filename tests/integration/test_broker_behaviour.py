"""The broker process as an operator and its clients see it: CLI, auth, limits, health, shutdown, robustness."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nats
import pytest

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge, wait_for
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(90)


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


# -- command line -------------------------------------------------------------------------------


def test_unknown_flag_is_a_usage_error() -> None:
    r = run_cli("run", "--no-such-flag")
    assert r.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_ok_and_bad(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('server_name = "gw"\nport = 4333\n')
    r = run_cli("check-config", "-c", str(good))
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('max_payload = "huge"\n')
    r = run_cli("check-config", "-c", str(bad))
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f'nats-edge: configuration error: {bad}: max_payload: expected a size such as 1048576 or "1MB", got \'huge\''
    )


def test_bad_config_does_not_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = -5\n")
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 1
    assert f"{bad}: port: must be at least -1" in r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_is_one_line_and_exit_1(edge_server: ServerProcess) -> None:
    r = run_cli("run", "-a", "127.0.0.1", "-p", str(edge_server.port))
    assert r.returncode == 1
    assert "Error listening on port" in r.stderr
    assert "Traceback" not in r.stderr


def test_sigterm_flushes_pending_and_exits_zero(tmp_path: Path) -> None:
    sp = start_nats_edge(tmp_path)
    try:
        with RawClient(sp.port) as sub, RawClient(sp.port) as pub:
            sub.send(b'CONNECT {"verbose":false}\r\nSUB s.x 1\r\nPING\r\n')
            assert sub.read_until_pong() == b"PONG\r\n"
            payload = b"y" * 1000
            pub.send(b'CONNECT {"verbose":false}\r\n' + b"PUB s.x 1000\r\n" + payload + b"\r\n" + b"PING\r\n")
            pub.read_until_pong()
            t0 = time.monotonic()
            sp.proc.send_signal(signal.SIGTERM)
            got = sub.read_until_closed(timeout=10)
            assert got == b"MSG s.x 1 1000\r\n" + payload + b"\r\n"
        assert sp.proc.wait(10) == 0
        assert time.monotonic() - t0 < 6
        assert "Server Exiting" in sp.log()
    finally:
        sp.kill()


# -- authentication -------------------------------------------------------------------------------


async def test_user_password_auth(tmp_path: Path) -> None:
    sp = start_nats_edge(tmp_path, "--user", "alice", "--pass", "s3cret")
    try:
        with RawClient(sp.port) as c:
            assert c.info["auth_required"] is True
        nc = await nats.connect(f"nats://alice:s3cret@127.0.0.1:{sp.port}")
        await nc.close()
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false,"user":"alice","pass":"wrong"}\r\n')
            assert c.read_until_closed() == b"-ERR 'Authorization Violation'\r\n"
        with RawClient(sp.port) as c:
            c.send(b"PUB x 1\r\nx\r\n")
            assert c.read_until_closed() == b"-ERR 'Authorization Violation'\r\n"
        wait_for(lambda: "Authorization Violation" in sp.log(), 5, "the auth failure in the log")
        assert "127.0.0.1:" in sp.log()
    finally:
        sp.stop()


async def test_token_auth_and_auth_timeout(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('[authorization]\ntoken = "t0k3n"\ntimeout = 0.3\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        nc = await nats.connect(f"nats://127.0.0.1:{sp.port}", token="t0k3n")
        await nc.close()
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false,"auth_token":"bad"}\r\n')
            assert c.read_until_closed() == b"-ERR 'Authorization Violation'\r\n"
        with RawClient(sp.port) as c:
            t0 = time.monotonic()
            assert c.read_until_closed(timeout=5) == b"-ERR 'Authentication Timeout'\r\n"
            assert 0.2 < time.monotonic() - t0 < 4
    finally:
        sp.stop()


# -- connection health and limits ----------------------------------------------------------------------


def test_max_connections(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text("max_connections = 2\n")
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        with RawClient(sp.port), RawClient(sp.port), RawClient(sp.port) as third:
            assert third.info  # INFO first, then the error (docs 1.7)
            assert third.read_until_closed() == b"-ERR 'maximum connections exceeded'\r\n"
    finally:
        sp.stop()


def test_stale_connection(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('ping_interval = "200ms"\nping_max = 2\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false}\r\n')
            # The client never answers: PING, PING, then the error and the close.
            assert c.read_until_closed(timeout=10) == b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false}\r\n')
            for _ in range(4):
                assert c.read_line(timeout=5) == b"PING\r\n"
                c.send(b"PONG\r\n")
    finally:
        sp.stop()


def test_slow_consumer_is_cut_and_does_not_stall_a_fast_one(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('max_pending = "256KB"\nmax_payload = "64KB"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        slow = socket.create_connection(("127.0.0.1", sp.port))
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.recv(4096)
        slow.sendall(b'CONNECT {"verbose":false}\r\nSUB sc.x 1\r\nPING\r\n')
        with RawClient(sp.port) as fast, RawClient(sp.port) as pub:
            fast.send(b'CONNECT {"verbose":false}\r\nSUB sc.x 1\r\nPING\r\n')
            assert fast.read_until_pong() == b"PONG\r\n"
            payload = b"z" * 32768
            frame = b"PUB sc.x 32768\r\n" + payload + b"\r\n"
            pub.send(b'CONNECT {"verbose":false}\r\n')
            n = 200  # 6.4 MB for a reader that never reads, against a 256 KB max_pending
            expected = b"MSG sc.x 1 32768\r\n" + payload + b"\r\n"
            for _ in range(n):
                pub.send(frame)
                # The fast subscriber keeps up, message by message, while the slow one never reads.
                assert fast.read_exact(len(expected), timeout=10) == expected
        wait_for(lambda: "Slow Consumer Detected" in sp.log(), 10, "the slow consumer log line")
        slow.close()
    finally:
        sp.stop()


# -- robustness ------------------------------------------------------------------------------------


async def test_two_hundred_concurrent_clients(edge_server: ServerProcess) -> None:
    clients = await asyncio.gather(*(nats.connect(edge_server.url) for _ in range(200)))
    try:
        got: list[int] = []
        done = asyncio.Event()

        async def cb(msg) -> None:  # type: ignore[no-untyped-def]
            got.append(int(msg.data))
            if len(got) == 200:
                done.set()

        listener = await nats.connect(edge_server.url)
        await listener.subscribe("many.>", cb=cb)
        await flush(listener)
        await asyncio.gather(*(c.publish(f"many.{i}", str(i).encode()) for i, c in enumerate(clients)))
        await asyncio.gather(*(c.flush() for c in clients))
        await asyncio.wait_for(done.wait(), 20)
        assert sorted(got) == list(range(200))
        await listener.close()
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def test_client_killed_mid_payload_and_garbage_do_not_disturb_others(edge_server: ServerProcess) -> None:
    rng = random.Random(1234)
    with RawClient(edge_server.port) as good:
        good.send(b'CONNECT {"verbose":false}\r\nSUB r.x 1\r\nPING\r\n')
        assert good.read_until_pong() == b"PONG\r\n"
        # A client that dies in the middle of a payload.
        half = socket.create_connection(("127.0.0.1", edge_server.port))
        half.sendall(b'CONNECT {"verbose":false}\r\nPUB r.x 100\r\n' + b"a" * 40)
        half.close()
        # Random garbage on many connections.
        for i in range(150):
            with socket.create_connection(("127.0.0.1", edge_server.port)) as g:
                junk = rng.randbytes(rng.randint(1, 400))
                if i % 3 == 0:
                    junk = b"PUB r.x 5\r\n" + junk
                try:
                    g.sendall(junk)
                except OSError:
                    pass
        with RawClient(edge_server.port) as pub:
            pub.send(b'CONNECT {"verbose":false}\r\nPUB r.x 2\r\nok\r\nPING\r\n')
            pub.read_until_pong()
        good.send(b"PING\r\n")
        out = good.read_until_pong()
        assert out.endswith(b"MSG r.x 1 2\r\nok\r\nPONG\r\n")
        assert b"a" * 40 not in out
    assert edge_server.proc.poll() is None
    assert "Traceback" not in edge_server.log()


def test_ready_quickly(tmp_path: Path) -> None:
    t0 = time.monotonic()
    sp = start_nats_edge(tmp_path)
    try:
        with RawClient(sp.port) as c:
            c.send(b"PING\r\n")
            assert c.read_until_pong().endswith(b"PONG\r\n")
        # Generous bound for a shared CI machine; the benchmark measures the real figure.
        assert time.monotonic() - t0 < 5
    finally:
        sp.stop()


def test_log_file_flag(tmp_path: Path) -> None:
    log = tmp_path / "edge.log"
    sp = start_nats_edge(tmp_path, "-l", str(log), "-D")
    try:
        with RawClient(sp.port) as c:
            c.send(b"PING\r\n")
            c.read_until_pong()
        wait_for(lambda: log.exists() and "Client connection closed" in log.read_text(), 10, "the log file")
        text = log.read_text()
        assert f"[{sp.proc.pid}]" in text
        assert "[INF] Server is ready" in text
    finally:
        sp.stop()
    assert os.path.getsize(log) > 0
