"""sd_notify from the real broker process to a real AF_UNIX datagram socket bound as NOTIFY_SOCKET."""

from __future__ import annotations

import itertools
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ServerProcess, start_nats_edge, wait_for

WATCHDOG_USEC = 200_000  # pings every 0.1 s
BLOCK_SECONDS = 1.5


class NotifySocket:
    """The receiving end systemd would hold: a bound datagram socket collecting (time, fields)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def pump(self) -> None:
        """Collect what is queued, up to a 50 ms pause (the watchdog pings come 0.1 s apart, so one comes)."""
        for _ in range(1000):
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))
        raise AssertionError(f"the broker never paused its notifications: {self.messages[-3:]}")

    def wait(self, key: str, value: str = "1", after: int = 0, timeout: float = 10.0) -> int:
        """Index of the first message from ``after`` on with key=value."""

        def find() -> int | None:
            self.pump()
            for i in range(after, len(self.messages)):
                if self.messages[i][1].get(key) == value:
                    return i + 1  # 1-based so that 0 is falsy
            return None

        return wait_for(find, timeout, f"{key}={value}") - 1

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notified(tmp_path: Path) -> Iterator[tuple[ServerProcess, NotifySocket]]:
    ns = NotifySocket(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "NATS_EDGE_TEST_BLOCK_LOOP_SECONDS": str(BLOCK_SECONDS),
    }
    sp = start_nats_edge(tmp_path, env=env)
    yield sp, ns
    sp.stop()
    ns.close()


def test_ready_after_the_port_accepts(notified: tuple[ServerProcess, NotifySocket]) -> None:
    sp, ns = notified
    i = ns.wait("READY")
    # READY came after the listener was bound: the port accepts and greets with INFO right now.
    with socket.create_connection(("127.0.0.1", sp.port), timeout=5) as c:
        assert c.recv(4096).startswith(b"INFO ")
    assert "clients" in ns.messages[i][1].get("STATUS", "")


def test_watchdog_pings_and_a_blocked_loop_stops_them(notified: tuple[ServerProcess, NotifySocket]) -> None:
    sp, ns = notified
    start = ns.wait("READY")
    first = ns.wait("WATCHDOG", after=start)
    n = ns.wait("WATCHDOG", after=first + 1)
    n = ns.wait("WATCHDOG", after=n + 1)
    pings = [t for t, f in ns.messages[first : n + 1] if f.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(g < 0.5 for g in gaps), gaps  # interval is WATCHDOG_USEC/2 = 0.1 s
    # Block the loop (test-only hook): no WATCHDOG=1 for the duration, then they resume.
    before = len(ns.messages)
    sent = time.monotonic()
    sp.proc.send_signal(signal.SIGUSR1)
    resumed = ns.wait("WATCHDOG", after=before, timeout=BLOCK_SECONDS + 10)
    ns.pump()
    pings = [t for t, f in ns.messages[before:] if f.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip([sent, *pings], pings, strict=False)]
    assert max(gaps) >= BLOCK_SECONDS * 0.8, gaps
    assert ns.messages[resumed][0] - sent >= BLOCK_SECONDS * 0.8


def test_reloading_ready_around_sighup_and_stopping_on_sigterm(
    notified: tuple[ServerProcess, NotifySocket],
) -> None:
    sp, ns = notified
    ready = ns.wait("READY")
    sp.proc.send_signal(signal.SIGHUP)
    reloading = ns.wait("RELOADING", after=ready + 1)
    assert int(ns.messages[reloading][1]["MONOTONIC_USEC"]) > 0
    ns.wait("READY", after=reloading + 1)
    assert sp.stop() == 0
    ns.wait("STOPPING", after=reloading + 1)
