"""The serial adapter end to end: real ptys, real pyserial in the real broker process, nats-py subscribers.

Each port is a pty whose slave path is reached through a symlink (as /dev/serial/by-id/...); the test
drives the master side with firmware_bridge.simulator output, noise, and unplug/replug.
"""

from __future__ import annotations

import asyncio
import json
import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from firmware_bridge.frames import encode_frame
from firmware_bridge.simulator import LINES_PATTERN, UNITS, Simulator
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.ptys import PtyDevice, point
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(120)
CODECS = ("nats", "frames", "jsonl", "nmea", "lines")
GW = "gw1"


def _port_table(name: str, link: Path, codec: str, extra: str = "") -> str:
    opts = {
        "jsonl": '{ device_field = "id", ts_field = "ts", units = { temperature = "°C", humidity = "%", '
        'pressure = "hPa", battery = "%" } }',
        "lines": "{ pattern = " + json.dumps(LINES_PATTERN) + ', units = { temperature = "°C" } }',
    }.get(codec, "{}")
    return (
        f'[[adapters.serial]]\nname = "{name}"\nport = "{link}"\ndevice = "{name}"\ncodec = "{codec}"\n'
        f"codec_options = {opts}\nreopen_min = \"0.05s\"\nreopen_max = \"0.3s\"\n{extra}\n"
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("serial")
    byid = work / "by-id"
    byid.mkdir()
    devices: dict[str, PtyDevice] = {}
    conf = [f'server_name = "{GW}"\nping_interval = "60s"\n[adapters]\nrestart_backoff_min = "0.1s"\n']
    for codec in CODECS:
        devices[codec] = PtyDevice(byid / codec)
        conf.append(_port_table(f"p{codec}", byid / codec, codec))
    devices["unplug"] = PtyDevice(byid / "unplug")
    conf.append(_port_table("unplug", byid / "unplug", "jsonl"))
    devices["flood"] = PtyDevice(byid / "flood")
    conf.append(_port_table("flood", byid / "flood", "lines", "max_pending_readings = 64\npublish_batch = 8\n"))
    (work / "edge.toml").write_text("".join(conf))
    sp = start_nats_edge(work, "-c", str(work / "edge.toml"), "-m", "-1")
    try:
        yield {"server": sp, "devices": devices, "byid": byid}
    finally:
        code = sp.stop()
        for d in devices.values():
            d.close()
        assert code == 0, sp.log()


def devicez(sp: ServerProcess) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sp.url_of("monitoring") + "/devicez", timeout=5) as r:
        body = json.loads(r.read())
    return body.get("devices", body) if isinstance(body, dict) else body


async def collect(nc: Any, subject: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue(maxsize=10000)

    async def cb(msg: Any) -> None:
        if not q.full():
            q.put_nowait(msg)

    await nc.subscribe(subject, cb=cb)
    await flush(nc)
    return q


async def next_where(q: asyncio.Queue[Any], pred: Any, timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            msg = await q.get()
            if pred(msg):
                return msg


async def wait_online(q: asyncio.Queue[Any], device: str) -> None:
    await next_where(q, lambda m: m.subject == f"evt.{GW}.serial.{device}.online", timeout=15)


@pytest.mark.parametrize("codec", CODECS)
async def test_codec_end_to_end(rig: dict[str, Any], codec: str) -> None:
    sp, dev = rig["server"], rig["devices"][codec]
    device = f"p{codec}"
    nc = await nats.connect(rig["server"].url)
    try:
        q = await collect(nc, f"dev.{GW}.serial.{device}.>")
        prefix = f"dev.{GW}.serial.{device}"
        sim = Simulator(codec, device=device, seed=7, subject_prefix=prefix)
        got: dict[str, Any] = {}
        want = {"nmea": {"lat", "lon"}}.get(codec, set(UNITS))

        async def all_seen() -> bool:
            """Feed the device one more chunk, then take every reading that arrived within 0.5 s."""
            dev.write(sim.next_chunk(1_790_000_000.0 + len(got)))
            try:
                msgs = [await asyncio.wait_for(q.get(), 0.5)]
            except TimeoutError:
                return False
            msgs += [q.get_nowait() for _ in range(q.qsize())]
            got.update((m.subject.rsplit(".", 1)[1], json.loads(m.data)) for m in msgs)
            return want <= got.keys()

        await async_wait_for(all_seen, 20, f"{sorted(want)} readings from the {codec} device", interval=0)
        if codec != "nmea":
            t = got["temperature"]
            assert isinstance(t["value"], float) and 10 < t["value"] < 35
            assert t["unit"] == "°C"
            assert "ts" in t
        else:
            assert 52 < got["lat"]["value"] < 53
        if codec in ("jsonl", "lines", "nmea"):
            assert got[next(iter(want))]["ts"].endswith("Z")
        rows = [r for r in devicez(sp) if r.get("instance") == device]
        assert rows and rows[0]["online"] and rows[0]["codec"] == codec
    finally:
        await nc.close()


async def test_jsonl_noise_is_counted_and_skipped(rig: dict[str, Any]) -> None:
    sp, dev = rig["server"], rig["devices"]["jsonl"]
    rng = random.Random(3)
    nc = await nats.connect(sp.url)
    try:
        q = await collect(nc, f"dev.{GW}.serial.pjsonl.temperature")
        bad_before = next(r for r in devicez(sp) if r.get("instance") == "pjsonl")["counters"]
        noise = [
            rng.randbytes(300) + b"\n",
            b'{"id":"pjsonl","temperature":' + b"9" * 5000 + b"}\n",  # overlong line
            b'{"id": "pjsonl", "temperature": \n',  # truncated JSON
            bytes(range(256)) + b"\n",
        ]
        for i, junk in enumerate(noise):
            dev.write(json.dumps({"id": "pjsonl", "temperature": 100 + i}).encode() + b"\n")
            dev.write(junk)
        dev.write(json.dumps({"id": "pjsonl", "temperature": 200}).encode() + b"\n")
        values = []
        async with asyncio.timeout(10):  # read up to the last value written
            while 200 not in values:
                values.append(json.loads((await q.get()).data)["value"])
        assert [v for v in values if v >= 100] == [100, 101, 102, 103, 200]
        after = next(r for r in devicez(sp) if r.get("instance") == "pjsonl")["counters"]
        assert after["codec_lines_bad"] + after["codec_overflows"] > bad_before["codec_lines_bad"]
        assert after["opens"] == 1  # never reopened: noise does not cost the port
    finally:
        await nc.close()


async def test_frames_noise_truncated_and_bad_crc(rig: dict[str, Any]) -> None:
    sp, dev = rig["server"], rig["devices"]["frames"]
    subject = f"dev.{GW}.serial.pframes.noise"
    nc = await nats.connect(sp.url)
    try:
        q = await collect(nc, subject)

        def pub(n: int) -> bytes:
            body = str(n).encode()
            return encode_frame(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(body), body))

        good = pub(1)
        bad_crc = bytearray(pub(99))
        bad_crc[3] ^= 0x55
        truncated = pub(98)[:-6] + b"\x00"
        rng = random.Random(5)
        dev.write(good + bytes(rng.randbytes(200)) + b"\x00" + bytes(bad_crc) + truncated + pub(2))
        dev.write(b"\x00" + bytes(rng.randrange(1, 256) for _ in range(5000)) + b"\x00" + pub(3))
        got = [int((await next_where(q, lambda m: True)).data) for _ in range(3)]
        assert got == [1, 2, 3]
        counters = next(r for r in devicez(sp) if r.get("instance") == "pframes")["counters"]
        assert counters["codec_frames_bad"] >= 3
    finally:
        await nc.close()


async def test_unplug_and_replug_through_symlink(rig: dict[str, Any]) -> None:
    sp, byid = rig["server"], rig["byid"]
    devices = rig["devices"]
    nc = await nats.connect(sp.url)
    try:
        evts = await collect(nc, f"evt.{GW}.serial.unplug.*")
        data = await collect(nc, f"dev.{GW}.serial.unplug.temperature")
        devices["unplug"].write(b'{"temperature": 1}\n')
        assert json.loads((await next_where(data, lambda m: True)).data)["value"] == 1
        devices["unplug"].close()  # the cable is pulled: EIO on the adapter's side
        await next_where(evts, lambda m: m.subject.endswith(".offline"))
        new = devices["unplug"] = PtyDevice()
        point(byid / "unplug", new.path)  # udev re-creates the by-id link for the new tty
        await next_where(evts, lambda m: m.subject.endswith(".online"))
        new.write(b'{"temperature": 2}\n')
        assert json.loads((await next_where(data, lambda m: True)).data)["value"] == 2
        row = next(r for r in devicez(sp) if r.get("instance") == "unplug")
        assert row["counters"]["losses"] >= 1 and row["counters"]["opens"] >= 2
    finally:
        await nc.close()


async def test_flooding_device_is_bounded_and_broker_responsive(rig: dict[str, Any]) -> None:
    sp, dev = rig["server"], rig["devices"]["flood"]
    line = b"T=21.5 H=40 P=1013 B=99\r\n"
    nc = await nats.connect(sp.url)
    try:
        q = await collect(nc, f"dev.{GW}.serial.flood.temperature")

        async def responder(msg: Any) -> None:
            await msg.respond(b"pong")

        await nc.subscribe("svc.ping", cb=responder)
        written = refused = 0
        worst = 0.0
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(60):
            for _ in range(30):
                for _ in range(200):  # fill the tty as fast as it accepts
                    n = dev.try_write(line * 40)
                    if n == 0:
                        refused += 1
                        break
                    written += n
                t0 = loop.time()
                assert (await nc.request("svc.ping", b"", timeout=5)).data == b"pong"
                worst = max(worst, loop.time() - t0)
        assert refused > 0, "the pty never filled: the adapter did not hold the device back"
        assert worst < 2.0, f"the broker answered a request in {worst:.2f}s during the flood"
        await next_where(q, lambda m: True)
        row = next(r for r in devicez(sp) if r.get("instance") == "flood")
        assert row["counters"]["pending_readings"] <= 64
        assert row["counters"]["pauses"] >= 1
    finally:
        await nc.close()


def test_simulate_device_stdout_and_pty(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "edge", "simulate-device", "--codec", "jsonl", "--stdout", "--count", "3",
         "--interval", "0.01", "--seed", "1"],
        capture_output=True, timeout=60, check=True,
    )
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(rows) == 3 and rows[0]["id"] == "sim1" and "temperature" in rows[0]
    link = tmp_path / "sim0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "simulate-device", "--codec", "lines", "--interval", "0.05",
         "--link", str(link)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("pty: /dev/pts/")
        import serial  # pyserial, as the adapter opens it

        with serial.Serial(str(link), timeout=5) as port:
            port.readline()  # may start mid-line
            assert port.readline().startswith(b"T=")
    finally:
        proc.terminate()
        code = proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert code == 0
    assert not os.path.lexists(link)
