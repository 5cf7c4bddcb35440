"""SIGHUP reload of the real broker while nats-py clients stay connected: a valid and an invalid change."""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from tests.support.processes import ServerProcess, start_nats_edge, wait_for


def _varz(sp: ServerProcess) -> dict:
    with urllib.request.urlopen(sp.url_of("monitoring") + "/varz", timeout=5) as r:
        return json.load(r)


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, Path]]:
    conf = tmp_path / "edge.toml"
    conf.write_text('max_payload = 4096\nmax_pending = "1MB"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf), "-m", "-1")
    yield sp, conf
    assert sp.stop() == 0, sp.log()


async def _roundtrip(nc: nats.NATS, subject: str) -> None:
    sub = await nc.subscribe(subject)
    await nc.publish(subject, b"x")
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"x"
    await sub.unsubscribe()


async def test_valid_change_applies_without_dropping_clients(edge: tuple[ServerProcess, Path]) -> None:
    sp, conf = edge
    disconnects = 0

    async def on_disconnect() -> None:
        nonlocal disconnects
        disconnects += 1

    nc = await nats.connect(sp.url, disconnected_cb=on_disconnect, max_reconnect_attempts=0)
    try:
        assert nc.max_payload == 4096
        conf.write_text('max_payload = 8192\nmax_pending = "2MB"\ndebug = true\n')
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _varz(sp)["max_payload"] == 8192, 10, "reloaded max_payload in /varz")
        varz = _varz(sp)
        assert varz["max_pending"] == 2 * 1024 * 1024
        wait_for(lambda: "Reloaded server configuration" in sp.log(), 10, "reload log line")
        # The existing client is still connected and working; a new one sees the new INFO.
        await _roundtrip(nc, "after.reload")
        nc2 = await nats.connect(sp.url)
        assert nc2.max_payload == 8192
        await nc2.close()
        assert nc.is_connected and disconnects == 0
    finally:
        await nc.close()


async def test_invalid_change_is_rejected_and_old_config_stays(edge: tuple[ServerProcess, Path]) -> None:
    sp, conf = edge
    nc = await nats.connect(sp.url, max_reconnect_attempts=0)
    try:
        for bad, key in (('max_payload = "lots"\n', "max_payload"), ("max_paylod = 1\n", "max_paylod"),
                         ("max_payload = [\n", "(syntax)")):
            conf.write_text(bad)
            sp.proc.send_signal(signal.SIGHUP)
            wait_for(lambda k=key: f"{conf}: {k}" in sp.log(), 10, f"error naming {conf} and {key}")
            assert "[ERR] Failed to reload server configuration" in sp.log()
            assert _varz(sp)["max_payload"] == 4096
            await _roundtrip(nc, "still.here")
            assert nc.is_connected
    finally:
        await nc.close()
    assert sp.proc.poll() is None


async def test_reload_reconciles_adapters_and_replaces_leaf_remotes(tmp_path: Path) -> None:
    from tests.integration.test_leaf import leafz, start_hub
    from tests.support.processes import free_port

    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port)
    conf = tmp_path / "edge.toml"
    base = 'server_name = "gw1"\n[adapters]\nrestart_backoff_min = "0.1s"\n'
    keep = '[[adapters.demo]]\nname = "keep"\ndevices = ["k1"]\ninterval = "0.1s"\n'
    drop = '[[adapters.demo]]\nname = "drop"\ndevices = ["d1"]\ninterval = "0.1s"\n'
    conf.write_text(base + keep + drop)
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    disconnects = 0

    async def on_disconnect() -> None:
        nonlocal disconnects
        disconnects += 1

    nc = hc = None
    try:
        nc = await nats.connect(sp.url, disconnected_cb=on_disconnect, max_reconnect_attempts=0)
        sub = await nc.subscribe("dev.gw1.demo.n1.temperature")
        added = '[[adapters.demo]]\nname = "new"\ndevices = ["n1"]\ninterval = "0.1s"\n'
        remote = f'[leafnodes]\nreconnect = "100ms"\n[[leafnodes.remotes]]\nurl = "nats-leaf://127.0.0.1:{leaf_port}"\n'
        conf.write_text(base + keep + added + remote)
        sp.proc.send_signal(signal.SIGHUP)
        assert (await sub.next_msg(timeout=10)).data  # the added instance runs
        wait_for(lambda: "adapter drop stopped (configuration reload)" in sp.log(), 10, "removed instance stopped")
        log = sp.log()
        assert "adapter keep stopped" not in log and "adapter keep (demo) started" in log  # untouched, once
        assert log.count("adapter keep (demo) started") == 1
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the added leaf remote connected")
        hc = await nats.connect(hub.url)
        up = await hc.subscribe("dev.gw1.demo.k1.temperature")
        assert (await up.next_msg(timeout=10)).data  # gateway readings reach the hub through the new remote
        conf.write_text(base + keep)  # the remote removed again
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: leafz(hub).get("leafnodes") == 0, 20, "the removed leaf remote disconnected")
        await _roundtrip(nc, "still.here")
        assert nc.is_connected and disconnects == 0
    finally:
        for c in (nc, hc):
            if c is not None:
                await c.close()
        assert sp.stop() == 0, sp.log()
        hub.stop()


def test_restart_only_sections_are_reported_and_kept(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text(f'[store_forward]\nsubjects = ["a.>"]\ndir = "{tmp_path / "ob"}"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf))
    try:
        conf.write_text(f'[store_forward]\nsubjects = ["b.>"]\ndir = "{tmp_path / "ob"}"\n')
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Reloaded server configuration" in sp.log(), 10, "reload done")
        assert "Reload: store_forward cannot change at run time (restart to apply)" in sp.log()
    finally:
        assert sp.stop() == 0, sp.log()
