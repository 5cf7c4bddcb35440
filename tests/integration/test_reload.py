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
