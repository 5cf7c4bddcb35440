"""A device on the ``nats`` codec keeps its subscriptions when the broker closes its connection: over a
UART it never sees the close, so the adapter restores its session on the next connection (real pty,
real pyserial in the broker).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.ptys import PtyDevice

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[ServerProcess, PtyDevice]]:
    dev = PtyDevice(tmp_path / "mcu0")
    conf = tmp_path / "edge.toml"
    conf.write_text(f'server_name = "gw1"\n[[adapters.serial]]\nport = "{tmp_path}/mcu0"\ndevice = "mcu"\n'
                    'codec = "nats"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        yield sp, dev
    finally:
        code = sp.stop()
        dev.close()
        assert code == 0, sp.log()


class Wire:
    """The device's side of the line: everything received, read up to a marker with a deadline."""

    def __init__(self, dev: PtyDevice) -> None:
        self.dev = dev
        self.buf = b""

    def until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {marker!r} within {timeout}s; got {self.buf!r}")
            self.buf += self.dev.read(0.05)
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out


def without_info(data: bytes) -> bytes:
    return re.sub(rb"INFO [^\r\n]*\r\n", b"", data)


async def test_subscriptions_survive_a_broker_side_close(rig: tuple[ServerProcess, PtyDevice]) -> None:
    sp, dev = rig
    wire = Wire(dev)
    await asyncio.to_thread(wire.until, b"\r\n")  # the adapter's INFO: the port is open
    dev.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB cmd.gw1.serial.mcu.> 1\r\n'
              b"SUB once.x 2\r\nUNSUB 2 2\r\nPING\r\n")
    assert without_info(await asyncio.to_thread(wire.until, b"PONG\r\n")) == b"PONG\r\n"
    nc = await nats.connect(sp.url)
    try:
        await nc.publish("once.x", b"1")  # one of the two left to sid 2
        await flush(nc)
        assert await asyncio.to_thread(wire.until, b"\r\n1\r\n") == b"MSG once.x 2 1\r\n1\r\n"

        dev.write(b"BOGUS\r\n")  # line noise: nats-server's answer is -ERR and a close
        got = await asyncio.to_thread(wire.until, b"INFO ")  # the adapter's next connection
        assert got == b"-ERR 'Unknown Protocol Operation'\r\nINFO "
        await asyncio.to_thread(wire.until, b"\r\n")

        await nc.publish("cmd.gw1.serial.mcu.led", b"on")
        await nc.publish("once.x", b"2")
        await nc.publish("once.x", b"3")  # past the auto-unsubscribe limit: not delivered
        await flush(nc)
        dev.write(b"PING\r\n")
        got = without_info(await asyncio.to_thread(wire.until, b"PONG\r\n"))
        assert got == b"MSG cmd.gw1.serial.mcu.led 1 2\r\non\r\nMSG once.x 2 1\r\n2\r\nPONG\r\n"
    finally:
        await nc.close()
    assert "device session restored on a new connection (2 subscriptions)" in sp.log()
