"""The C device library (firmware_bridge/c) compiled with gcc, as a real process on a tty, against the real
broker: publish, subscribe, and request/reply in both directions, for the ``nats`` and ``frames`` codecs.

The device program is firmware_bridge/c/tests/pty_device.c (public API of nats_serial.h only). It opens a
tty path like a host opens /dev/ttyUSB0, so there are two ptys joined by a null-modem relay: the broker's
serial adapter opens one pty's slave (through a symlink), the device opens the other's, and a thread
copies bytes between the two masters.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.cbuild import GCC, NO_GCC, build_with_library
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.ptys import PtyDevice
from tests.support.waiting import async_wait_for

pytestmark = [
    pytest.mark.skipif(GCC is None, reason=NO_GCC),
    pytest.mark.timeout(90),
]
MODES = ("nats", "frames")
READINGS = 7
DEVICE_TIMEOUT = 40.0  # the program gives up by itself after 30 s


class NullModem(threading.Thread):
    """Copies bytes both ways between the masters of two ptys, like a crossed serial cable."""

    def __init__(self, a: PtyDevice, b: PtyDevice) -> None:
        super().__init__(daemon=True)
        self.ends = (a.master, b.master)
        self.pending = {a.master: bytearray(), b.master: bytearray()}  # bytes waiting to go *to* that fd
        self.other = {a.master: b.master, b.master: a.master}
        self.wake_r, self.wake_w = os.pipe()
        self.stopping = False

    def run(self) -> None:
        while not self.stopping:
            readable = [fd for fd in self.ends if len(self.pending[self.other[fd]]) < 1 << 16]
            writable = [fd for fd in self.ends if self.pending[fd]]
            r, w, _ = select.select([*readable, self.wake_r], writable, [])
            for fd in r:
                if fd == self.wake_r:
                    continue
                try:
                    self.pending[self.other[fd]] += os.read(fd, 65536)
                except (BlockingIOError, OSError):
                    pass
            for fd in w:
                try:
                    del self.pending[fd][: os.write(fd, self.pending[fd])]
                except (BlockingIOError, OSError):
                    pass

    def stop(self) -> None:
        self.stopping = True
        os.write(self.wake_w, b"x")
        self.join(5)
        os.close(self.wake_r)
        os.close(self.wake_w)


@dataclass
class Line:
    """One serial link: the broker's end is linked at ``work/mcu-<mode>``, the device opens ``device_tty``."""

    broker_end: PtyDevice
    device_end: PtyDevice
    modem: NullModem

    @property
    def device_tty(self) -> str:
        return self.device_end.path


@pytest.fixture(scope="module")
def pty_device(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_with_library("pty_device.c", tmp_path_factory.mktemp("c") / "pty_device")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, Line]]]:
    work = tmp_path_factory.mktemp("fwc")
    lines: dict[str, Line] = {}
    try:
        for m in MODES:
            a, b = PtyDevice(work / f"mcu-{m}"), PtyDevice()
            lines[m] = Line(a, b, NullModem(a, b))
            lines[m].modem.start()
        # Frequent PINGs, so the device answers some while it works (the broker closes it after 50 unanswered).
        conf = ['server_name = "gw1"\nping_interval = "0.2s"\nping_max = 50\n']
        conf += [f'[[adapters.serial]]\nport = "{work}/mcu-{m}"\ndevice = "c{m}"\ncodec = "{m}"\n' for m in MODES]
        (work / "edge.toml").write_text("".join(conf))
        sp = start_nats_edge(work, "-c", str(work / "edge.toml"))
        try:
            yield sp, lines
        finally:
            code = sp.stop()
            assert code == 0, sp.log()
    finally:
        for line in lines.values():
            line.modem.stop()
            line.broker_end.close()
            line.device_end.close()


@dataclass
class DeviceRun:
    proc: subprocess.Popen[bytes]
    out_path: Path
    err_path: Path

    def output(self) -> tuple[str, str]:
        return self.out_path.read_text(), self.err_path.read_text()


@pytest.fixture
def launch(pty_device: Path, tmp_path: Path) -> Iterator[Callable[..., DeviceRun]]:
    """Starts the device program (stdout/stderr to files); any still running at the end is killed."""
    runs: list[DeviceRun] = []

    def start(*args: str) -> DeviceRun:
        out_path, err_path = tmp_path / f"device{len(runs)}.out", tmp_path / f"device{len(runs)}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen([str(pty_device), *args], stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        runs.append(DeviceRun(proc, out_path, err_path))
        return runs[-1]

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(10)
        stdout, stderr = run.output()
        print(f"device exit {run.proc.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr}")  # shown on failure


def expected_readings(device: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(READINGS):
        centi = 2150 + 25 * i
        body = f'{{"seq":{i},"value":{centi // 100}.{centi % 100:02d},"unit":"C"}}'
        out.append((f"dev.gw1.serial.{device}.temperature", body.encode()))
    batch = '{"samples":[' + ",".join(str(1000 + i) for i in range(60)) + "]}"
    out.append((f"dev.gw1.serial.{device}.batch", batch.encode()))
    return out


@pytest.mark.parametrize("mode", MODES)
async def test_c_library_over_pty(
    rig: tuple[ServerProcess, dict[str, Line]],
    launch: Callable[..., DeviceRun],
    mode: str,
) -> None:
    sp, lines = rig
    device = f"c{mode}"
    nc = await nats.connect(sp.url)
    try:
        readings = await nc.subscribe(f"dev.gw1.serial.{device}.>")

        async def clock(msg: Any) -> None:
            await msg.respond(b"12:00 for " + msg.data)

        await nc.subscribe("svc.clock", cb=clock)
        await flush(nc)  # the responder is in place before the device asks

        run = launch(lines[mode].device_tty, mode, device, "gw1", str(READINGS))

        # device -> broker publishes: exact subjects, bodies and order
        got = [await readings.next_msg(timeout=15) for _ in range(READINGS + 1)]
        assert [(m.subject, m.data) for m in got] == expected_readings(device)

        # broker -> device requests (the device's SUB preceded its PUBs on the same connection)
        reply = await nc.request(f"cmd.gw1.serial.{device}.led", b"on", timeout=5)
        assert reply.data == b"led=on"
        reply = await nc.request(f"cmd.gw1.serial.{device}.relay", b'{"on":true}', timeout=5)
        assert json.loads(reply.data) == {"ok": True, "result": {"relay": True}}  # the gateway's envelope
        blob = bytes(range(256)) + b"\r\nMSG x 1 3\r\n\x00\x00" + bytes(range(255, -1, -1))  # > one frame
        reply = await nc.request(f"cmd.gw1.serial.{device}.echo", blob, timeout=5)
        assert reply.data == blob
        # keepalive: the broker's PINGs reach the device, which answers PONG (else the broker would close it)
        stats_polls = await _wait_device_pings(nc, device, at_least=2)
        reply = await nc.request(f"cmd.gw1.serial.{device}.bye", b"", timeout=5)
        assert reply.data == b"bye"

        # device -> broker request, answered by the nats-py responder: the device printed the reply
        code = await asyncio.wait_for(asyncio.to_thread(run.proc.wait, DEVICE_TIMEOUT), DEVICE_TIMEOUT + 5)
        stdout, stderr = run.output()
        assert code == 0, f"device exited {code}\nstdout:\n{stdout}\nstderr:\n{stderr}\nbroker:\n{sp.log()}"
        out_lines = stdout.splitlines()
        assert f"REPLY {(b'12:00 for ' + device.encode()).hex()}" in out_lines
        assert [line for line in out_lines if line.startswith("CMD ")] == [
            "CMD led 2",
            "CMD relay 11",
            f"CMD echo {len(blob)}",
            *["CMD stats 0"] * stats_polls,
            "CMD bye 0",
        ]
        stats = dict(kv.split("=") for kv in next(x for x in out_lines if x.startswith("STATS ")).split()[1:])
        assert stats["msgs_in"] == str(4 + stats_polls + 1)  # the commands and one reply
        assert stats["msgs_out"] == str(READINGS + 1 + 1 + 4 + stats_polls)  # readings, request, responses
        assert int(stats["pings"]) >= 2
        bad = {k: stats[k] for k in ("frames_bad", "lines_bad", "overflows", "bytes_dropped", "errors")}
        assert bad == dict.fromkeys(bad, "0")
        assert (int(stats["frames_ok"]) > 0) == (mode == "frames")
        assert out_lines[-1] == "DONE"

        await flush(nc)
        assert readings.pending_msgs == 0  # nothing beyond the expected readings
    finally:
        await nc.close()


async def _wait_device_pings(nc: Any, device: str, at_least: int, timeout: float = 15.0) -> int:
    """Ask the device for its counters until it has answered ``at_least`` PINGs; returns the number of asks."""
    asks = 0

    async def answered() -> bool:
        nonlocal asks
        reply = await nc.request(f"cmd.gw1.serial.{device}.stats", b"", timeout=5)
        asks += 1
        stats = json.loads(reply.data)
        assert stats["frames_bad"] == stats["lines_bad"] == stats["overflows"] == stats["errors"] == 0, stats
        return stats["pings"] >= at_least

    await async_wait_for(answered, timeout, f"{device} to answer {at_least} PINGs", interval=0.05)
    return asks
