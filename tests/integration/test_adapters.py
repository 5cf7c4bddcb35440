"""The adapter framework in the real broker: a third-party adapter found through its entry point, the
supervisor restarting it after failures, and the demo adapter (``nats-edge run --demo``).

The example package (tests/fixtures/example_adapter) is not pip-installed: the test writes its
``.dist-info`` (METADATA + entry_points.txt generated from its pyproject.toml) into a temporary directory
that goes on the broker's PYTHONPATH, together with the package source, which is exactly what
``importlib.metadata`` sees after ``pip install``. This keeps the venv untouched and the test fast.
"""

from __future__ import annotations

import asyncio
import json
import os
import tomllib
from pathlib import Path

import nats
import pytest

from tests.support.processes import start_nats_edge

pytestmark = pytest.mark.timeout(90)
EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "example_adapter"


def install_example(site: Path) -> dict[str, str]:
    meta = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist = site / f"nats_edge_example_adapter-{meta['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n")
    lines = []
    for group, eps in meta["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE), str(Path(__file__).resolve().parents[2])])}
    return env


async def test_entry_point_adapter_runs_and_is_restarted(tmp_path: Path) -> None:
    env = install_example(tmp_path / "site")
    conf = tmp_path / "edge.toml"
    conf.write_text(
        'server_name = "gw.1"\n[adapters]\nrestart_backoff_min = "0.05s"\nrestart_backoff_max = "0.1s"\n'
        '[[adapters.counter]]\ndevice = "c 1"\ninterval = "0.02s"\nfail_after = 3\n'
    )
    sp = start_nats_edge(tmp_path, "-c", str(conf), env=env)
    try:
        nc = await nats.connect(sp.url)
        sub = await nc.subscribe("dev.gw_1.counter.c_1.count")  # tokens sanitised: "gw.1" and "c 1"
        counts = [json.loads((await sub.next_msg(timeout=10)).data)["value"] for _ in range(7)]
        assert max(counts) == 3 and counts.count(1) >= 1 and counts.count(3) >= 2, counts  # fails at 3, restarts
        reply = await nc.request("cmd.gw_1.counter.c_1.get", b"", timeout=5)
        assert reply.data.startswith(b"get:")
        await nc.close()
    finally:
        assert sp.stop() == 0
    log = sp.log()
    assert "adapter counter0 failed: RuntimeError: counter adapter: simulated failure" in log


def test_unknown_kind_is_a_config_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    conf = tmp_path / "edge.toml"
    conf.write_text("[[adapters.nosuch]]\n")
    r = subprocess.run([sys.executable, "-m", "edge", "check-config", "-c", str(conf)], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 1
    assert f"{conf}: adapters.nosuch: unknown adapter kind 'nosuch'" in r.stderr


async def test_demo_flag_publishes_readings(tmp_path: Path) -> None:
    sp = start_nats_edge(tmp_path, "--demo", "-n", "gw1")
    try:
        nc = await nats.connect(sp.url)
        sub = await nc.subscribe("dev.gw1.demo.>")
        seen = {}
        async with asyncio.timeout(10):  # read until all four channels were seen (the demo repeats them)
            while len(seen) < 4:
                m = await sub.next_msg(timeout=10)
                seen[m.subject] = json.loads(m.data)
        assert seen["dev.gw1.demo.demo1.temperature"]["unit"] == "°C"
        assert seen["dev.gw1.demo.demo1.pressure"]["ts"].endswith("Z")
        reply = json.loads((await nc.request("cmd.gw1.demo.demo1.read", b"", timeout=5)).data)
        assert reply["ok"] is True and set(reply["result"]) == {"temperature", "humidity", "pressure", "battery"}
        reply = json.loads((await nc.request("cmd.gw1.demo.demo1.dance", b"", timeout=5)).data)
        assert reply == {"ok": False, "code": "unsupported", "error": "unknown action 'dance'; try read or ping"}
        # The device registry answers with adapters alone (no [mdns] section).
        devices = json.loads((await nc.request("edge.gw1.devices", b"", timeout=5)).data)
        assert devices["gateway"] == "gw1" and devices["count"] == 1
        assert {k: devices["devices"][0][k] for k in ("adapter", "device", "state", "actions")} == {
            "adapter": "demo", "device": "demo1", "state": "online", "actions": ["read", "ping"]}
        await nc.close()
    finally:
        assert sp.stop() == 0
    assert "demo demo1: temperature=" in sp.log()
