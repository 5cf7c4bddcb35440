"""Socket fuzz: thousands of random and mutated frames on fresh connections; a normal client keeps working.

Bounded by count and by time. The counts are printed (run with -s to see them) and the broker's RSS
is read from /proc before and after.
"""

from __future__ import annotations

import random
import socket
import time
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(120)

SEEDS: list[bytes] = [
    b'CONNECT {"verbose":true,"pedantic":true,"headers":true}\r\n',
    b"PUB foo 5\r\nhello\r\n",
    b"PUB foo reply.x 0\r\n\r\n",
    b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    b"SUB foo.* q 1\r\nUNSUB 1 5\r\n",
    b"SUB > 2\r\n",
    b"PING\r\nPONG\r\n",
    b"+OK\r\n-ERR 'x'\r\n",
    b"PUB foo 999999999\r\n",
    b"PUB foo -1\r\n",
    b"CONNECT {\"protocol\":2}\r\n",
    b"CONNECT {\"no_responders\":true}\r\n",
    b"SUB a..b 3\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS ClientHello's first bytes
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            pos = rng.randrange(len(b) + 1)
            b[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif op == 2 and b:
            del b[rng.randrange(len(b)):]
        elif op == 3:
            b += rng.choice(SEEDS)
        elif op == 4:
            b = bytearray(bytes(b).replace(b" ", b" " * rng.randint(2, 50), 1))
        else:
            b += str(rng.choice([0, 1, 4096, 10**6, 2**31, 10**12])).encode() + b"\r\n"
    return bytes(b)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def normal_client_works(c: RawClient, n: int) -> None:
    c.send(b"PUB canary 3\r\n%03d\r\nPING\r\n" % (n % 1000))
    got = c.read_until_pong(timeout=10)
    if b"PING\r\n" in got:  # the server's keepalive: answer it, it is not part of the reply
        c.send(b"PONG\r\n")
        got = got.replace(b"PING\r\n", b"")
    assert got == b"MSG canary 1 3\r\n%03d\r\nPONG\r\n" % (n % 1000)


@pytest.fixture
def fuzz_edge(tmp_path: Path) -> ServerProcess:
    sp = start_nats_edge(tmp_path, "--max_payload", "64KB")
    yield sp
    sp.stop()


def run_fuzz(sp: ServerProcess, count: int, budget: float, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    counts = {"connections": 0, "bytes": 0, "closed_by_server": 0, "kept_open": 0, "refused": 0}
    with RawClient(sp.port) as canary:
        canary.send(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB canary 1\r\n')
        normal_client_works(canary, 0)
        deadline = time.monotonic() + budget
        for i in range(count):
            if time.monotonic() > deadline:
                break
            frame = rng.randbytes(rng.randint(1, 200)) if rng.random() < 0.25 else mutate(rng, rng.choice(SEEDS))
            try:
                with socket.create_connection(("127.0.0.1", sp.port), timeout=2) as s:
                    s.sendall(frame)
                    s.shutdown(socket.SHUT_WR) if rng.random() < 0.5 else None
                    s.settimeout(0.02)
                    try:
                        received = 0  # read to EOF: each recv bounded by the timeout, the whole by size
                        while chunk := s.recv(65536):
                            received += len(chunk)
                            assert received < 1 << 20, f"the server kept answering {frame!r}"
                        counts["closed_by_server"] += 1
                    except (TimeoutError, ConnectionResetError):
                        counts["kept_open"] += 1
            except OSError:
                counts["refused"] += 1
            counts["connections"] += 1
            counts["bytes"] += len(frame)
            if i % 250 == 0:
                normal_client_works(canary, i)
        normal_client_works(canary, count)
    return counts


@pytest.mark.slow
def test_socket_fuzz_keeps_serving(fuzz_edge: ServerProcess) -> None:
    before = rss_kb(fuzz_edge.proc.pid)
    counts = run_fuzz(fuzz_edge, count=2000, budget=25.0, seed=9)
    after = rss_kb(fuzz_edge.proc.pid)
    print(f"\nsocket fuzz: {counts}, RSS {before} kB -> {after} kB")
    assert fuzz_edge.proc.poll() is None
    assert counts["connections"] >= 500
    assert "Traceback" not in fuzz_edge.log() and "internal error" not in fuzz_edge.log()
    assert after - before < 30_000
