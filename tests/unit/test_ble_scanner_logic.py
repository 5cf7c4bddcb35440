"""BleScanner's per-advert logic with an explicit clock (no bleak, no D-Bus)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

from edge.adapters.ble.decoders import Measurement, uuid16
from edge.adapters.ble.scanner import BleScanner, DeviceConfig, ScannerConfig

BTHOME = uuid16(0xFCD2)
A = "AA:BB:CC:DD:EE:01"
B = "AA:BB:CC:DD:EE:02"


class Rec:
    def __init__(self) -> None:
        self.readings: list[tuple[str, dict[str, object], int | None, str]] = []
        self.states: list[tuple[str, str]] = []

    def reading(self, dev: str, ms: Sequence[Measurement], rssi: int | None, fmt: str) -> None:
        self.readings.append((dev, {m.channel: m.value for m in ms}, rssi, fmt))

    def state(self, dev: str, st: str) -> None:
        self.states.append((dev, st))


def make(**kw: object) -> tuple[BleScanner, Rec]:
    rec = Rec()
    return BleScanner(ScannerConfig(**kw), rec.reading, rec.state), rec  # type: ignore[arg-type]


def adv(sc: BleScanner, addr: str, payload: str, now: float, rssi: int = -50) -> None:
    sc.handle_advertisement(addr, {}, {BTHOME: bytes.fromhex(payload)}, rssi, now)


def test_reading_presence_and_configured_id() -> None:
    sc, rec = make(devices=(DeviceConfig(A.lower(), device_id="kitchen"),))
    adv(sc, A, "4002CA09", 0.0)
    assert rec.states == [("kitchen", "discovered"), ("kitchen", "online")]
    assert rec.readings == [("kitchen", {"temperature": 25.06}, -50, "bthome")]


def test_min_interval_throttles_but_not_events() -> None:
    sc, rec = make(min_interval=10.0)
    adv(sc, A, "4002CA09", 0.0)
    adv(sc, A, "4002C409", 5.0)
    adv(sc, A, "443A01", 6.0)  # event: never throttled
    adv(sc, A, "4002C409", 10.5)
    assert [r[1] for r in rec.readings] == [{"temperature": 25.06}, {"button": "press"}, {"temperature": 25.0}]
    assert sc.stats.throttled == 1


def test_allow_and_deny_lists() -> None:
    sc, rec = make(allow=frozenset({A, B}), deny=frozenset({B.lower()}))
    adv(sc, A, "4002CA09", 0.0)
    adv(sc, B, "4002CA09", 0.0)
    adv(sc, "11:22:33:44:55:66", "4002CA09", 0.0)
    assert [r[0] for r in rec.readings] == ["aabbccddee01"]
    assert sc.stats.filtered == 2


def test_offline_after_timeout_except_trigger_based() -> None:
    sc, rec = make(device_timeout=30.0, devices=(DeviceConfig(B, timeout=5.0),))
    adv(sc, A, "4002CA09", 0.0)
    adv(sc, B, "4002CA09", 0.0)
    adv(sc, "AA:BB:CC:DD:EE:03", "443A01", 0.0)
    sc.check(6.0)
    assert ("aabbccddee02", "offline") in rec.states and ("aabbccddee01", "offline") not in rec.states
    sc.check(31.0)
    assert ("aabbccddee01", "offline") in rec.states
    sc.check(10_000.0)
    assert ("aabbccddee03", "offline") not in rec.states
    adv(sc, A, "4002C409", 40.0)
    assert rec.states[-1] == ("aabbccddee01", "online")


def test_watchdog_only_when_devices_expected_and_scanning() -> None:
    sc, _ = make(watchdog_timeout=10.0)
    sc.scanning = True
    assert not sc.check(100.0)  # nothing expected yet
    adv(sc, A, "4002CA09", 100.0)
    assert not sc.check(105.0)
    assert sc.check(111.0)
    sc.scanning = False
    assert not sc.check(111.0)


def test_malformed_and_foreign_adverts_counted() -> None:
    sc, rec = make()
    adv(sc, A, "4002CA", 0.0)
    sc.handle_advertisement(B, {0x0006: b"\x01"}, {}, -70, 0.0)
    assert sc.stats.rejected == 1 and sc.decoder_state.rejects == {"truncated": 1}
    assert sc.stats.unrecognised == 1
    assert rec.readings == [] and rec.states == []


def test_callback_errors_are_counted_not_raised() -> None:
    def boom(*_: object) -> None:
        raise RuntimeError("subscriber bug")

    sc = BleScanner(ScannerConfig(), boom, boom)
    adv(sc, A, "4002CA09", 0.0)
    assert sc.stats.callback_errors == 3  # discovered, online, reading


def test_tracked_devices_bounded() -> None:
    sc, rec = make(max_devices=4, devices=(DeviceConfig(A),))
    adv(sc, A, "4002CA09", 0.0)
    for i in range(10):
        adv(sc, f"00:00:00:00:00:{i:02X}", "4002CA09", 0.0)
    assert len(sc._tracks) == 4 and sc.stats.evictions == 7
    assert A in sc._tracks  # configured devices are evicted last
    # Each eviction is reported as "lost" (oldest first); heard again, a device is "discovered" again.
    assert [d for d, st in rec.states if st == "lost"] == [f"00000000000{i}" for i in range(7)]
    adv(sc, "00:00:00:00:00:00", "4002C409", 1.0)
    assert rec.states[-2:] == [("000000000000", "discovered"), ("000000000000", "online")]


def test_imports_stay_lazy() -> None:
    code = (
        "import sys, edge.adapters.ble.decoders, edge.adapters.ble.scanner, edge.adapters.ble.gatt;"
        "print('bleak' in sys.modules, 'cryptography' in sys.modules, 'dbus_fast' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
