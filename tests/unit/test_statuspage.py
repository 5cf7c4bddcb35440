"""The status page's history rings, recent-log buffer and [monitoring] config rules (no sockets)."""

from __future__ import annotations

import gc
import logging
import math
import tracemalloc
from pathlib import Path

import pytest

from edge.config.loader import load_settings
from edge.errors import ConfigError
from edge.monitoring import statuspage
from edge.monitoring.statuspage import LOG_LINES, LOG_TEXT, MAX_CHANNELS, POINTS, RecentLog, Ring, StatusHistory


def test_ring_keeps_the_latest_value_per_bucket_and_empties_skipped_buckets() -> None:
    r = Ring()
    assert r.since(0, 10) == {"from": 0, "values": []}
    r.put(10, 1.0)
    r.put(10, 2.0)  # same step: the latest wins
    r.put(12, 3.0)  # bucket 11 had no data
    r.put(11, 9.0)  # older than the newest: ignored
    assert r.since(0, 12) == {"from": 10, "values": [2.0, None, 3.0]}
    assert r.since(11, 12) == {"from": 12, "values": [3.0]}  # leading empty buckets are left out
    assert r.since(0, 14) == {"from": 10, "values": [2.0, None, 3.0]}  # nothing recorded after 12


def test_ring_holds_exactly_the_last_points_buckets() -> None:
    r = Ring()
    for b in range(1000, 1000 + 3 * POINTS):
        r.put(b, float(b))
    last = 1000 + 3 * POINTS - 1
    got = r.since(0, last)
    assert got["from"] == last - POINTS + 1
    assert got["values"] == [float(b) for b in range(last - POINTS + 1, last + 1)]
    # A gap longer than the ring empties all of it but the new point.
    r.put(last + 5 * POINTS, 7.0)
    assert r.since(0, last + 5 * POINTS) == {"from": last + 5 * POINTS, "values": [7.0]}


def test_history_records_last_value_unit_and_series_and_bounds_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [3000.0]
    h = StatusHistory(step=30.0, clock=lambda: clock[0])
    h.record("serial1", "dev1", "temperature", 21.5, "°C", 1_790_000_000.0)
    clock[0] = 3010.0  # the same step (buckets follow the monotonic clock, not the reading's ts)
    h.record("serial1", "dev1", "temperature", 21.75, "°C", 1_790_000_010.0)
    h.record("serial1", "dev1", "state", "open", None, 3010.0)  # not a number: last value only, no ring
    chans = h.devices[("serial1", "dev1")]
    assert (chans["temperature"].value, chans["temperature"].unit, chans["temperature"].ts) == (
        21.75, "°C", 1_790_000_010.0)
    assert chans["temperature"].ring is not None and chans["temperature"].ring.since(0, 100) == {
        "from": 100, "values": [21.75]}
    assert chans["state"].value == "open" and chans["state"].ring is None
    monkeypatch.setattr(statuspage, "MAX_CHANNELS", 3)
    h.record("serial1", "dev2", "a", 1, None, 3010.0)
    h.record("serial1", "dev2", "b", 1, None, 3010.0)  # the fourth channel: counted, not kept
    assert h.channels == 3 and h.channels_dropped == 1
    assert "b" not in h.devices[("serial1", "dev2")]
    h.forget("serial1", "dev1")
    assert h.channels == 1


def test_memory_of_500_devices_with_an_hour_of_history_is_bounded() -> None:
    """500 devices x 4 channels, a reading every step for two hours: the rings stop growing after one."""
    clock = [0.0]
    h = StatusHistory(step=30.0, clock=lambda: clock[0])
    channels = ("temperature", "humidity", "pressure", "battery")
    names = [f"dev{i:03d}" for i in range(500)]

    def run(t0: float, seconds: int) -> None:
        for t in range(0, seconds, 30):
            clock[0] = t0 + t
            for d in names:
                for c in channels:
                    h.record("demo", d, c, 20.0 + t % 7, "°C", t0 + t)

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        run(0.0, 3600)
        one_hour = tracemalloc.get_traced_memory()[0] - base
        run(3600.0, 3600)
        two_hours = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    per_channel = one_hour / 2000
    print(f"history: {one_hour / 1e6:.2f} MB for 2000 channels ({per_channel:.0f} B each); "
          f"after 2 h {two_hours / 1e6:.2f} MB")
    assert h.channels == 2000
    assert per_channel < 1000, per_channel  # stated in statuspage's docstring: ~0.8 KB per channel
    assert two_hours - one_hour < 20_000, (one_hour, two_hours)  # flat after the first hour
    assert MAX_CHANNELS * 1000 < 10_000_000  # the cap bounds the worst case at ~8 MB


def test_recent_log_keeps_the_last_lines_numbered_and_cut() -> None:
    handler = RecentLog()
    logger = logging.getLogger("edge.test_statuspage")
    handler.install()
    try:
        logger.info("not kept: below WARNING")
        for i in range(LOG_LINES + 5):
            logger.warning("warning %d", i)
        logger.error("x" * (LOG_TEXT + 50))
    finally:
        handler.remove()
    logger.error("not kept: handler removed")
    assert len(handler.lines) == LOG_LINES
    assert handler.seq == LOG_LINES + 6
    assert handler.lines[0][4] == "warning 6"
    last = handler.lines[-1]
    assert last[0] == LOG_LINES + 6 and last[2] == "ERROR" and last[3] == "edge.test_statuspage"
    assert last[4] == "x" * LOG_TEXT


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_lan_bind_without_auth_is_refused_naming_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, 'http = "0.0.0.0:8222"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    text = str(err.value)
    assert text.startswith(f"{path}: http_host: ")
    assert "'0.0.0.0'" in text and "[monitoring] auth = true" in text and "allow_lan_without_auth" in text
    # Explicitly allowed: loads.
    path = _write(tmp_path, 'http = "0.0.0.0:8222"\n[monitoring]\nallow_lan_without_auth = true\n')
    assert load_settings(path).http_host == "0.0.0.0"
    # Loopback needs nothing.
    assert load_settings(_write(tmp_path, 'http = "127.0.0.1:8222"\n')).http_port == 8222


def test_monitoring_auth_needs_password_users_and_tls_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, 'http = "0.0.0.0:8222"\n[monitoring]\nauth = true\n'))
    assert str(err.value).startswith(f"{tmp_path / 'edge.toml'}: monitoring.auth: needs [authorization] users")
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, 'http_port = 8222\n[monitoring]\ntls = true\n'))
    assert "monitoring.tls: needs a [tls] section" in str(err.value)
    ok = load_settings(_write(
        tmp_path,
        'http = "0.0.0.0:8222"\n[authorization]\nusers = [{ user = "op", password = "pw" }]\n'
        '[monitoring]\nauth = true\nhistory_step = "5s"\n',
    ))
    mon = ok.sections["monitoring"]
    assert (mon.auth, mon.tls, mon.history_step) == (True, False, 5.0)
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path, "[monitoring]\nauht = true\n"))
    assert "monitoring.auht: unknown key" in str(err.value)


def test_statusz_series_are_json_safe() -> None:
    """NaN never reaches the JSON: an empty bucket is null."""
    r = Ring()
    r.put(5, math.nan)
    r.put(6, 1.0)
    assert r.since(0, 6) == {"from": 6, "values": [1.0]}
