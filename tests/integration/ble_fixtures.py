"""Pytest fixtures for BLE integration tests: a private dbus-daemon and the fake BlueZ process.

Import the fixtures into a test module (``from tests.integration.ble_fixtures import *``-style, by name).
Every process started here is stopped by its fixture, by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from tests.integration import fake_bluez as fb

DAEMON = shutil.which("dbus-daemon") or "/usr/bin/dbus-daemon"
ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0  # s, generous for a loaded 2-core CI box

BUS_CONF = """<busconfig>
  <type>session</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow own="*"/> <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/> <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """Read one stdout line from ``proc`` within ``timeout`` (raises on timeout or early exit)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{proc.args!r} printed nothing in {timeout}s")
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"{proc.args!r} exited with {proc.wait()}")
            buf += chunk
    return buf


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="session")
def dbus_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private dbus-daemon; yields its address. Skips if dbus-daemon is not installed."""
    if not Path(DAEMON).exists():
        pytest.skip("dbus-daemon not installed (Debian package 'dbus')")
    d = tmp_path_factory.mktemp("dbus")
    conf = d / "bus.conf"
    conf.write_text(BUS_CONF.format(sock=d / "bus"))
    proc = subprocess.Popen(
        [DAEMON, f"--config-file={conf}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        _read_line(proc, START_TIMEOUT)  # first line = listening
        yield f"unix:path={d / 'bus'}"
    finally:
        _stop(proc)


class FakeBluezClient:
    """Drives the fake through its control interface (see fake_bluez.py ``ctl_*``)."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    async def call(self, method: str, **kwargs: Any) -> Any:
        reply = await self.bus.call(Message(
            destination=fb.BLUEZ, path=fb.CONTROL_PATH, interface=fb.CONTROL_IFACE,
            member="Call", signature="ss", body=[method, json.dumps(kwargs)],
        ))
        if reply.message_type != MessageType.METHOD_RETURN:
            raise RuntimeError(f"fake {method}: {reply.error_name} {reply.body}")
        return json.loads(reply.body[0])

    async def calls(self, name: str | None = None) -> list[list[Any]]:
        return list(await self.call("calls", name=name))

    async def state(self) -> dict[str, Any]:
        return dict(await self.call("state"))


async def _close_bleak_manager() -> None:
    """Close bleak's per-loop BlueZ manager bus so no socket outlives the test's loop (pitfall 20)."""
    if "bleak.backends.bluezdbus.manager" not in sys.modules:
        return
    from bleak.backends.bluezdbus import manager as m

    mgr = m._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(mgr, "_bus", None)
    if bus is not None and bus.connected:
        bus.disconnect()
        await asyncio.wait_for(bus.wait_for_disconnect(), 5)


def _spawn_fake(address: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, fb.__file__, "--address", address],
        stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.fixture
async def fake_bluez(dbus_daemon: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBluezClient]:
    """A fresh fake BlueZ process on the private bus; DBUS_SYSTEM_BUS_ADDRESS points at that bus."""
    # Never let bleak reach a real bluetoothd (ble-testing.md pitfall 1).
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", dbus_daemon)
    proc = _spawn_fake(dbus_daemon)
    bus: MessageBus | None = None
    try:
        line = await asyncio.to_thread(_read_line, proc, START_TIMEOUT)
        assert line.strip() == b"READY", line
        bus = await MessageBus(bus_address=dbus_daemon, bus_type=BusType.SYSTEM).connect()
        yield FakeBluezClient(bus)
    finally:
        await _close_bleak_manager()
        if bus is not None:
            bus.disconnect()
            await asyncio.wait_for(bus.wait_for_disconnect(), 5)
        await asyncio.to_thread(_stop, proc)
