"""The MicroPython device library (firmware_bridge/micropython/nats_serial.py, run under CPython) over a
real pty against the real broker: publish, subscribe, and request/reply in both directions, for the
``nats`` and ``frames`` codecs. The device runs in a thread, polling its "UART" like firmware would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from firmware_bridge.micropython.nats_serial import NatsSerial
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.ptys import PtyDevice, PtyUart

pytestmark = pytest.mark.timeout(90)
MODES = ("nats", "frames")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, PtyDevice]]]:
    work = tmp_path_factory.mktemp("fw")
    devs = {m: PtyDevice(work / f"mcu-{m}") for m in MODES}
    conf = ['server_name = "gw1"\n']
    conf += [f'[[adapters.serial]]\nport = "{work}/mcu-{m}"\ndevice = "mp{m}"\ncodec = "{m}"\n' for m in MODES]
    (work / "edge.toml").write_text("".join(conf))
    sp = start_nats_edge(work, "-c", str(work / "edge.toml"))
    try:
        yield sp, devs
    finally:
        code = sp.stop()
        for d in devs.values():
            d.close()
        assert code == 0, sp.log()


class Device(threading.Thread):
    def __init__(self, dev: PtyDevice, mode: str) -> None:
        super().__init__(daemon=True)
        self.nc = NatsSerial(PtyUart(dev), mode=mode, inbox=f"_INBOX.mp{mode}")
        self.mode = mode
        self.stop = threading.Event()
        self.do_request = threading.Event()
        self.reply: Any = None
        self.done = threading.Event()
        self.subscribed = threading.Event()

    def run(self) -> None:
        nc = self.nc
        nc.connect(f"mp{self.mode}")
        nc.subscribe(f"cmd.gw1.serial.mp{self.mode}.>", lambda m: m.respond(b"led=" + m.data))
        self.subscribed.set()
        while not self.stop.is_set():
            nc.poll()
            if self.do_request.is_set() and not self.done.is_set():
                self.reply = nc.request("svc.clock", b"now?", timeout_ms=5000)
                self.done.set()
            nc.publish(f"dev.gw1.serial.mp{self.mode}.uptime", b"1")
            self.stop.wait(0.02)


@pytest.mark.parametrize("mode", MODES)
async def test_micropython_module_over_pty(rig: tuple[ServerProcess, dict[str, PtyDevice]], mode: str) -> None:
    sp, devs = rig
    nc = await nats.connect(sp.url)
    device = Device(devs[mode], mode)
    try:
        sub = await nc.subscribe(f"dev.gw1.serial.mp{mode}.uptime")

        async def clock(msg: Any) -> None:
            await msg.respond(b"12:00")

        await nc.subscribe("svc.clock", cb=clock)
        await flush(nc)
        # The adapter's INFO says it has opened (and flushed) the port; what the device sent before
        # that would be discarded, as on a real UART opened late.
        assert await asyncio.to_thread(devs[mode].wait_readable, 10), "the adapter never opened the port"
        device.start()
        assert (await sub.next_msg(timeout=10)).data == b"1"  # device -> broker publish
        # broker -> device request (the device's SUB arrived once its publishes flow)
        reply = await nc.request(f"cmd.gw1.serial.mp{mode}.led", b"on", timeout=5)
        assert reply.data == b"led=on"
        device.do_request.set()  # device -> broker request, answered by a nats-py service
        await _wait_thread_event(device.done)
        assert device.reply == b"12:00"
        assert device.nc.frames_bad == 0 and device.nc.lines_bad == 0
    finally:
        device.stop.set()
        if device.is_alive():
            device.join(5)
        await nc.close()


async def _wait_thread_event(ev: threading.Event) -> None:
    await asyncio.wait_for(asyncio.to_thread(ev.wait, 10), 15)
