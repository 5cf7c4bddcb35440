"""BleScanner and GattManager driven through bleak's real BlueZ backend against the fake BlueZ."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from edge.adapters.ble.decoders import Measurement, StructLayout
from edge.adapters.ble.decoders.gatt_values import Field
from edge.adapters.ble.gatt import CharacteristicConfig, GattDeviceConfig, GattError, GattManager
from edge.adapters.ble.scanner import BleScanner, ScannerConfig
from tests.integration.ble_fixtures import FakeBluezClient, dbus_daemon, fake_bluez
from tests.support.waiting import async_wait_for

__all__ = ["dbus_daemon", "fake_bluez"]  # fixtures, imported by name

pytestmark = pytest.mark.timeout(30)

SENSOR = "A4:C1:38:00:00:01"
OTHER = "A4:C1:38:00:00:02"
PERIPH = "C0:FF:EE:00:00:01"
CUSTOM = "12345678-1234-5678-1234-56789abcdef0"


class Recorder:
    """Collects callback events; ``wait`` blocks on a condition with a deadline (no sleeps)."""

    def __init__(self) -> None:
        self.readings: list[tuple[str, dict[str, Any], int | None, str]] = []
        self.states: list[tuple[str, str]] = []
        self._changed = asyncio.Condition()

    def on_reading(self, dev: str, ms: Sequence[Measurement], rssi: int | None, fmt: str) -> None:
        self.readings.append((dev, {m.channel: m.value for m in ms}, rssi, fmt))
        asyncio.get_running_loop().create_task(self._notify())

    def on_state(self, dev: str, state: str) -> None:
        self.states.append((dev, state))
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, pred: Callable[[], bool], timeout: float = 5.0) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(pred), timeout)


def scanner(rec: Recorder, **kw: Any) -> BleScanner:
    cfg = ScannerConfig(check_interval=0.05, restart_backoff=(0.05, 0.2), **kw)
    return BleScanner(cfg, rec.on_reading, rec.on_state)


async def test_active_scan_decodes_dedupes_and_counts_malformed(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", address=SENSOR, name="DIY-sensor", service_data={"fcd2": "40000102CA09"})
    async with scanner(rec) as sc:
        await rec.wait(lambda: len(rec.readings) == 1)
        assert rec.readings[0] == ("a4c138000001", {"temperature": 25.06}, -60, "bthome")
        assert rec.states[:2] == [("a4c138000001", "discovered"), ("a4c138000001", "online")]
        # The same packet id again (new RSSI only): a duplicate, not published.
        await fake_bluez.call("advertise", address=SENSOR, rssi=-70)
        await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "4000FF02"}, rssi=-71)  # short
        await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"}, rssi=-55)
        await rec.wait(lambda: len(rec.readings) == 2)
        assert rec.readings[1] == ("a4c138000001", {"temperature": 25.0}, -55, "bthome")
        assert sc.stats.duplicates == 1
        assert sc.stats.rejected == 1 and sc.decoder_state.rejects == {"truncated": 1}
    calls = [c[0] for c in await fake_bluez.calls()]
    assert calls[:2] == ["SetDiscoveryFilter", "StartDiscovery"] and "StopDiscovery" in calls
    assert (await fake_bluez.state())["sessions"] == 0


async def test_deny_list_and_ruuvi(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    ruuvi = "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"
    await fake_bluez.call("add_device", address=OTHER, manufacturer_data={str(0x0499): ruuvi})
    await fake_bluez.call("add_device", address=SENSOR, service_data={"fcd2": "4002CA09"})
    async with scanner(rec, deny=frozenset({SENSOR.lower()})) as sc:
        await rec.wait(lambda: len(rec.readings) == 1)
        dev, values, _rssi, fmt = rec.readings[0]
        assert (dev, fmt) == ("a4c138000002", "ruuvi_v5")
        assert values["temperature"] == 24.3 and values["acceleration_z"] == 10.1596894  # 1036 mG in m/s²
        await async_wait_for(lambda: sc.stats.filtered >= 1, 5, "denied advert counted")
    assert all(d == "a4c138000002" for d, _ in rec.states)


async def test_passive_scan_uses_monitor_and_patterns(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", address=SENSOR, service_data={"fcd2": "4002CA09"})
    await fake_bluez.call("add_device", address=OTHER, manufacturer_data={str(0x0006): "0102"})
    async with scanner(rec, mode="passive"):
        await rec.wait(lambda: len(rec.readings) == 1)
        assert rec.readings[0][1] == {"temperature": 25.06}
        await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "4002C409"})
        await rec.wait(lambda: len(rec.readings) == 2)
    calls = await fake_bluez.calls()
    names = [c[0] for c in calls]
    assert "StartDiscovery" not in names  # passive: no discovery session
    assert names.count("RegisterMonitor") == 1 and names.count("UnregisterMonitor") == 1
    assert ["Monitor.Activate", "METHOD_RETURN"] in calls
    assert ["Monitor.DeviceFound", "METHOD_RETURN"] in calls
    adverts = {c[1] for c in calls if c[0] == "Advert"}
    assert adverts == {SENSOR}  # the non-matching device was never delivered
    assert [d for d, _ in rec.states if d == "a4c138000002"] == []


async def test_silent_device_goes_offline_trigger_device_does_not(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", address=SENSOR, service_data={"fcd2": "4002CA09"})
    await fake_bluez.call("add_device", address=OTHER, service_data={"fcd2": "443A01"})  # trigger-based button
    cfg = {"device_timeout": 0.3, "watchdog_timeout": 60.0}
    async with scanner(rec, **cfg):
        await rec.wait(lambda: ("a4c138000001", "offline") in rec.states)
        await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "4002C409"})
        await rec.wait(lambda: rec.states.count(("a4c138000001", "online")) == 2)
    assert ("a4c138000002", "offline") not in rec.states
    assert ("a4c138000002", {"button": "press"}, -60, "bthome") in rec.readings


async def test_adapter_removed_and_returned_scanning_resumes(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    async with scanner(rec, watchdog_timeout=0.2, device_timeout=60.0) as sc:
        await rec.wait(lambda: len(rec.readings) == 1)
        await fake_bluez.call("remove_adapter")
        await async_wait_for(lambda: sc.stats.start_failures >= 1, 5, "start fails w/o adapter")
        await fake_bluez.call("add_adapter")
        await async_wait_for(lambda: sc.scanning, 5, "scan restarted")
        await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"})
        await rec.wait(lambda: len(rec.readings) == 2)
        assert sc.stats.watchdog_restarts >= 1
    assert (await fake_bluez.state())["sessions"] == 0


async def test_watchdog_restarts_a_silently_stopped_scan(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    async with scanner(rec, watchdog_timeout=0.2, device_timeout=60.0) as sc:
        await rec.wait(lambda: len(rec.readings) == 1)
        await fake_bluez.call("go_deaf")
        assert not await fake_bluez.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"})
        # The restart's StartDiscovery re-hears the device with its latest data.
        await rec.wait(lambda: len(rec.readings) == 2)
        assert rec.readings[1][1] == {"temperature": 25.0}
        assert sc.stats.watchdog_restarts >= 1
    assert len(await fake_bluez.calls("StartDiscovery")) >= 2


GATT_DEVICE = {
    "address": PERIPH,
    "name": "ess-node",
    "gatt": [
        {"uuid": "181a", "chars": [
            {"uuid": "2a6e", "flags": ["read", "notify"], "value": "6608"},
            {"uuid": "2a6f", "flags": ["read", "notify"], "value": "BF13"},
            {"uuid": "2a6d", "flags": ["read"], "value": "04760F00"},
        ]},
        {"uuid": "180f", "chars": [{"uuid": "2a19", "flags": ["read"], "value": "61"}]},
        {"uuid": "12345678-1234-5678-1234-56789abcdef1", "chars": [
            {"uuid": CUSTOM, "flags": ["read", "write", "write-without-response", "notify"], "value": "CA09E204"},
        ]},
    ],
}

GATT_CFG = GattDeviceConfig(
    PERIPH,
    (
        CharacteristicConfig("2a6e", "notify"),
        CharacteristicConfig("2a6f", "both", poll_interval=30.0),
        CharacteristicConfig("2a6d", "poll", poll_interval=30.0),
        CharacteristicConfig("2a19", "poll", poll_interval=30.0),
        CharacteristicConfig(
            CUSTOM, "notify", layout=StructLayout("<hH", (Field("temperature", 0.01, "°C"), Field("co2", 1, "ppm")))
        ),
    ),
    device_id="ess",
)


async def test_gatt_notify_poll_write_and_reconnect(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    await fake_bluez.call("add_device", **GATT_DEVICE)
    gm = GattManager((GATT_CFG,), on_reading=rec.on_reading, on_device_state=rec.on_state,
                     backoff=(0.05, 0.2), connect_timeout=5.0)
    async with gm:
        await rec.wait(lambda: ("ess", "online") in rec.states)
        await rec.wait(lambda: len(rec.readings) == 3)  # the three polled reads
        assert {k: v for _, vals, _, _ in rec.readings for k, v in vals.items()} == {
            "humidity": 50.55, "pressure": 1013.252, "battery": 97,  # hPa (1013252 × 0.1 Pa)
        }
        await async_wait_for(lambda: _notifying(fake_bluez, 3), 5, "3 subscriptions")
        assert await fake_bluez.call("notify", address=PERIPH, uuid="2a6e", value="C409")
        assert await fake_bluez.call("notify", address=PERIPH, uuid=CUSTOM, value="6608E204")
        await rec.wait(lambda: len(rec.readings) == 5)
        assert rec.readings[3:] == [
            ("ess", {"temperature": 25.0}, None, "gatt"),
            ("ess", {"temperature": 21.5, "co2": 1250}, None, "gatt"),
        ]
        assert gm.stats.echoes_dropped == 1  # the read of 2a6f (notifying) echoed through Value

        await gm.write("ess", CUSTOM, b"\x01\x02")
        await gm.write(PERIPH, CUSTOM, b"\x03", response=False)
        assert await fake_bluez.call("writes", address=PERIPH) == [
            {"uuid": CUSTOM, "value": "0102", "type": "request"},
            {"uuid": CUSTOM, "value": "03", "type": "command"},
        ]
        with pytest.raises(GattError, match="failed"):
            await gm.write("ess", "2a19", b"\x00")  # read-only
        with pytest.raises(GattError, match="unknown"):
            await gm.write("nope", "2a19", b"\x00")

        await fake_bluez.call("drop", address=PERIPH)  # link loss → offline → reconnect → online
        await rec.wait(lambda: rec.states.count(("ess", "online")) == 2)
        assert ("ess", "offline") in rec.states and gm.stats.disconnects == 1
    assert rec.states[-1] == ("ess", "offline")
    assert (await fake_bluez.state())["connected"] == []


async def _notifying(fake: FakeBluezClient, n: int) -> bool:
    return len((await fake.state())["notifying"]) >= n


async def test_gatt_connection_slots_and_backoff(fake_bluez: FakeBluezClient) -> None:
    rec = Recorder()
    addr = {"one": PERIPH, "two": "C0:FF:EE:00:00:02"}
    await fake_bluez.call("add_device", **GATT_DEVICE)
    await fake_bluez.call("add_device", **{**GATT_DEVICE, "address": addr["two"], "fail_connects": 2})
    devs = tuple(GattDeviceConfig(a, (CharacteristicConfig("2a19", "poll"),), device_id=d) for d, a in addr.items())
    gm = GattManager(devs, on_reading=rec.on_reading, on_device_state=rec.on_state, max_connections=1,
                     backoff=(0.05, 0.1), connect_timeout=5.0)
    async with gm:
        await rec.wait(lambda: any(s == "online" for _, s in rec.states))
        first = next(d for d, s in rec.states if s == "online")
        second = "two" if first == "one" else "one"
        assert (await fake_bluez.state())["connected"] == [addr[first]]
        # The first device becomes unreachable and its link drops: its slot goes to the other device.
        await fake_bluez.call("set_fail_connects", address=addr[first], n=1000)
        await fake_bluez.call("drop", address=addr[first])
        await rec.wait(lambda: (second, "online") in rec.states, timeout=8)
        assert (await fake_bluez.state())["connected"] == [addr[second]]
        assert gm.connected == [second]
        assert gm.stats.connect_failures >= 2
        online = [d for d, s in rec.states if s == "online"]
        assert online == [first, second]  # never two at once: one slot
