"""BLE advertisement scanner: bleak ``BleakScanner`` → decode → dedupe → throttle → callbacks.

Theory of operation: ``BleScanner`` owns one long-lived task. It starts a bleak scanner (active, or passive
through a BlueZ advertisement monitor), then wakes every ``check_interval`` to mark silent devices offline
and to run the watchdog: when devices are expected but no advertisement at all has arrived for
``watchdog_timeout`` seconds (BlueZ silently stops scanning, or the adapter went away), it stops and
restarts the scan, with capped exponential backoff while the adapter is missing.

The per-advert work (``handle_advertisement``) is synchronous, bleak-free and takes ``now``, so it is unit
tested with a fake clock. bleak is imported only in ``_start_scanner``. No broker imports: the caller
passes plain callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from .decoders import DecoderState, Measurement, decode_advertisement, normalize_address

log = logging.getLogger(__name__)

DeviceStateName = Literal["online", "offline", "discovered", "lost"]
OnReading = Callable[[str, Sequence[Measurement], int | None, str], None]
OnDeviceState = Callable[[str, DeviceStateName], None]

MAX_TRACKED_DEVICES: Final = 512  # presence entries; phones with rotating MACs would grow this forever
# Logged once when passive mode falls back to active (BlueZ without AdvertisementMonitorManager1).
PASSIVE_UNAVAILABLE: Final = (
    "BLE passive scanning is not available on %s (BlueZ lacks AdvertisementMonitorManager1: it needs BlueZ >= 5.56 "
    "with bluetoothd started with --experimental); scanning in active mode instead. To enable passive mode add a "
    "systemd drop-in (systemctl edit bluetooth): [Service] ExecStart= ExecStart=/usr/libexec/bluetooth/bluetoothd "
    "--experimental (one per line), then systemctl restart bluetooth"
)

# Passive scans need at least one pattern (bleak/BlueZ); these match every format decoders/ knows.
# (start position, AD type, content): 0x16 = service data UUID16, 0xFF = manufacturer data.
DEFAULT_PASSIVE_PATTERNS: Final[tuple[tuple[int, int, bytes], ...]] = (
    (0, 0x16, b"\xd2\xfc"),  # BTHome (device-formats.md §2.1)
    (0, 0x16, b"\x1a\x18"),  # atc1441 / pvvx (§2.3)
    (0, 0x16, b"\xaa\xfe"),  # Eddystone (§2.5)
    (0, 0xFF, b"\x99\x04"),  # Ruuvi (§2.2)
    (0, 0xFF, b"\x4c\x00\x02\x15"),  # iBeacon (§2.5)
)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A device the operator named. ``timeout``/``min_interval`` override the scanner defaults."""

    address: str
    device_id: str | None = None
    timeout: float | None = None
    min_interval: float | None = None
    key: bytes | None = None  # BTHome v2 AES-CCM key (16 bytes)


@dataclass(frozen=True, slots=True)
class ScannerConfig:
    """Scanner settings. ``allow`` empty = every address; ``deny`` always wins."""

    adapter: str = "hci0"
    mode: Literal["active", "passive"] = "active"
    devices: tuple[DeviceConfig, ...] = ()
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    device_timeout: float = 300.0  # s of silence before a device is offline
    min_interval: float = 0.0  # s between published readings per device
    watchdog_timeout: float = 120.0  # s without any advert (while devices are expected) → restart
    check_interval: float = 1.0  # s between housekeeping passes
    restart_backoff: tuple[float, float] = (1.0, 30.0)  # first, max delay between failed starts
    passive_patterns: tuple[tuple[int, int, bytes], ...] = DEFAULT_PASSIVE_PATTERNS
    max_devices: int = MAX_TRACKED_DEVICES


@dataclass(slots=True)
class ScannerStats:
    """Counters (monotonic). Decoder rejects by reason live in ``BleScanner.decoder_state.rejects``."""

    adverts: int = 0
    unrecognised: int = 0
    rejected: int = 0
    duplicates: int = 0
    throttled: int = 0
    filtered: int = 0
    published: int = 0
    callback_errors: int = 0
    evictions: int = 0
    scan_starts: int = 0
    start_failures: int = 0
    watchdog_restarts: int = 0
    passive_fallbacks: int = 0


@dataclass(slots=True)
class _Track:
    device_id: str
    last_seen: float
    last_publish: float | None = None
    online: bool = True
    trigger_based: bool = False


@dataclass(slots=True)
class _Scan:
    """The running bleak scanner (opaque here so this module does not import bleak at load time)."""

    scanner: Any = None
    started_at: float = 0.0


def default_device_id(address: str) -> str:
    """``AA:BB:CC:DD:EE:FF`` → ``aabbccddeeff`` (a valid subject token)."""
    return address.replace(":", "").lower()


class BleScanner:
    """Scan, decode and report BLE advertisements through plain callbacks.

    Args:
        config: scanner settings.
        on_reading: ``(device_id, measurements, rssi, format)`` for each new, unthrottled reading.
        on_device_state: ``(device_id, "discovered" | "online" | "offline" | "lost")`` on presence changes;
            "discovered" is reported once per tracked device, before its first "online"; "lost" when the
            device is evicted from the bounded tracking table (heard again, it is "discovered" again).
    """

    def __init__(self, config: ScannerConfig, on_reading: OnReading, on_device_state: OnDeviceState) -> None:
        self.config = config
        self.on_reading = on_reading
        self.on_device_state = on_device_state
        self.stats = ScannerStats()
        self.decoder_state = DecoderState(max_devices=config.max_devices)
        self._configured: dict[str, DeviceConfig] = {normalize_address(d.address): d for d in config.devices}
        self._keys: dict[str, bytes] = {a: d.key for a, d in self._configured.items() if d.key is not None}
        self._allow = frozenset(normalize_address(a) for a in config.allow)
        self._deny = frozenset(normalize_address(a) for a in config.deny)
        self._tracks: OrderedDict[str, _Track] = OrderedDict()
        # BLEDevice handles of configured devices only (bounded by the config), for GATT connects.
        self._ble_devices: dict[str, Any] = {}
        self._heard = {a: asyncio.Event() for a in self._configured}
        self._started = asyncio.Event()  # set once the first scan has started (and the mode is settled)
        self.mode: Literal["active", "passive"] = config.mode  # effective: passive may fall back to active
        self._last_advert: float | None = None
        self._scan = _Scan()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.scanning = False

    # --- pure part (no bleak, explicit time)
    def _allowed(self, addr: str) -> bool:
        if addr in self._deny:
            return False
        return not self._allow or addr in self._allow

    def handle_advertisement(
        self,
        address: str,
        manufacturer_data: Mapping[int, bytes],
        service_data: Mapping[str, bytes],
        rssi: int | None,
        now: float,
    ) -> None:
        """Process one advertisement (called from bleak's detection callback; safe to call directly)."""
        self.stats.adverts += 1
        self._last_advert = now
        addr = normalize_address(address)
        if not self._allowed(addr):
            self.stats.filtered += 1
            return
        result = decode_advertisement(addr, manufacturer_data, service_data, keys=self._keys,
                                      state=self.decoder_state)
        if result.reject is not None:
            self.stats.rejected += 1
            if log.isEnabledFor(logging.DEBUG):
                log.debug("BLE %s: %s frame rejected: %s", addr, result.format, result.reject)
            return
        if result.format is None and addr not in self._configured:
            self.stats.unrecognised += 1
            return
        track = self._seen(addr, now, result.trigger_based)
        if result.format is None:
            self.stats.unrecognised += 1
            return
        if result.duplicate:
            self.stats.duplicates += 1
            return
        if not result.measurements:
            return
        cfg = self._configured.get(addr)
        interval = cfg.min_interval if cfg and cfg.min_interval is not None else self.config.min_interval
        has_event = any(m.kind == "event" for m in result.measurements)  # events are never throttled
        if (not has_event and track.last_publish is not None and interval > 0
                and now - track.last_publish < interval):
            self.stats.throttled += 1
            return
        if not has_event:  # events neither wait for nor restart the interval
            track.last_publish = now
        self.stats.published += 1
        try:
            self.on_reading(track.device_id, result.measurements, rssi, result.format)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("BLE on_reading callback failed for %s", track.device_id)

    def _seen(self, addr: str, now: float, trigger_based: bool) -> _Track:
        track = self._tracks.get(addr)
        if track is not None:
            self._tracks.move_to_end(addr)
            track.last_seen = now
            track.trigger_based = track.trigger_based or trigger_based
            if not track.online:
                track.online = True
                self._state(track.device_id, "online")
            return track
        if len(self._tracks) >= self.config.max_devices:
            victim = next((a for a in self._tracks if a not in self._configured), next(iter(self._tracks)))
            lost = self._tracks.pop(victim)
            self.stats.evictions += 1
            self._state(lost.device_id, "lost")
        cfg = self._configured.get(addr)
        device_id = cfg.device_id if cfg and cfg.device_id else default_device_id(addr)
        track = self._tracks[addr] = _Track(device_id, now, trigger_based=trigger_based)
        self._state(device_id, "discovered")
        self._state(device_id, "online")
        return track

    def _state(self, device_id: str, state: DeviceStateName) -> None:
        try:
            self.on_device_state(device_id, state)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("BLE on_device_state callback failed for %s", device_id)

    def check(self, now: float) -> bool:
        """Mark silent devices offline; return True when the watchdog wants the scan restarted."""
        for addr, track in self._tracks.items():
            if not track.online or track.trigger_based:  # §2.1 trigger-based devices: no silence timeout
                continue
            cfg = self._configured.get(addr)
            timeout = cfg.timeout if cfg and cfg.timeout is not None else self.config.device_timeout
            if now - track.last_seen > timeout:
                track.online = False
                self._state(track.device_id, "offline")
        expected = bool(self._configured) or bool(self._tracks)
        if not (expected and self.scanning):
            return False
        since = max(self._last_advert or 0.0, self._scan.started_at)
        return now - since > self.config.watchdog_timeout

    @property
    def alive(self) -> bool:
        """True while the scan task runs (started and not ended by a bug; failed starts are retried inside)."""
        return self._task is not None and not self._task.done()

    async def connect_target(self, address: str, timeout: float) -> Any:
        """The bleak ``BLEDevice`` a GATT connect to the configured ``address`` should use, or None.

        Waits (at most ``timeout`` s, else TimeoutError) until the first scan has started, then, in active
        mode, until this scanner has heard the device: a connect by address would open a discovery session
        of its own, which BlueZ refuses with ``org.bluez.Error.InProgress`` while ours runs (one session per
        D-Bus sender, ble-testing.md pitfall 17), or which makes our own scan start fail. In passive mode we
        hold no discovery session, so None (connect by address, bleak finds the device) is fine.
        """
        addr = normalize_address(address)
        async with asyncio.timeout(timeout):
            await self._started.wait()
            heard = self._heard.get(addr)
            if self.mode == "active" and heard is not None:
                await heard.wait()
        return self._ble_devices.get(addr)

    # --- bleak part
    def _on_detect(self, device: Any, adv: Any) -> None:
        addr = normalize_address(device.address)
        heard = self._heard.get(addr)
        if heard is not None:
            self._ble_devices[addr] = device
            heard.set()
        self.handle_advertisement(addr, adv.manufacturer_data, adv.service_data, adv.rssi,
                                  asyncio.get_running_loop().time())

    async def _start_scanner(self) -> None:
        from bleak import BleakScanner  # lazy: only a running BLE adapter pays for bleak
        from bleak.exc import BleakDBusError, BleakError

        bluez: dict[str, Any] = {"adapter": self.config.adapter}
        if self.mode == "passive":
            from bleak.args.bluez import OrPattern

            patterns = self.config.passive_patterns
            bluez["or_patterns"] = [OrPattern(s, t, c) for s, t, c in patterns]  # type: ignore[arg-type]
        scanner = BleakScanner(self._on_detect, scanning_mode=self.mode, bluez=bluez)  # type: ignore[arg-type]
        self.stats.scan_starts += 1
        try:
            await scanner.start()
        except BleakError as exc:
            # bleak's answer when the adapter has no AdvertisementMonitorManager1 (RegisterMonitor is an
            # UnknownMethod): BlueZ < 5.56 or bluetoothd without --experimental, as on Raspberry Pi OS. Retrying
            # cannot help; active scanning decodes the same adverts (plus scan responses).
            if self.mode != "passive" or isinstance(exc, BleakDBusError) or "--experimental" not in str(exc):
                raise
            log.warning(PASSIVE_UNAVAILABLE, self.config.adapter)
            self.stats.passive_fallbacks += 1
            self.mode = "active"
            await self._start_scanner()
            return
        self._scan = _Scan(scanner, asyncio.get_running_loop().time())
        self.scanning = True
        self._started.set()

    async def _stop_scanner(self) -> None:
        scan, self._scan = self._scan, _Scan(started_at=self._scan.started_at)
        self.scanning = False
        if scan.scanner is not None:
            try:
                await scan.scanner.stop()
            except Exception as exc:  # adapter gone: BlueZ has already dropped the session
                log.debug("BLE scanner stop failed (ignored): %s", exc)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        first, cap = self.config.restart_backoff
        delay = first
        while not self._stopping:
            if not self.scanning:
                try:
                    await self._start_scanner()
                    delay = first
                    log.info("BLE scanning on %s (%s)", self.config.adapter, self.mode)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.stats.start_failures += 1
                    log.warning(
                        "BLE scan start on %s failed: %s (retry in %.1fs)", self.config.adapter, exc, delay
                    )
                    await self._sleep(delay)
                    delay = min(delay * 2, cap)
                    continue
            await self._sleep(self.config.check_interval)
            if self._stopping:
                break
            if self.check(loop.time()):
                self.stats.watchdog_restarts += 1
                log.warning(
                    "BLE watchdog: no advertisements for %.1fs, restarting scan", self.config.watchdog_timeout
                )
                await self._stop_scanner()

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds`` or until ``stop()`` wakes us."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def start(self) -> None:
        """Start the scan task (returns at once; start failures are retried in the background)."""
        if self._task is not None:
            return
        self._stopping = False
        self._wake.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ble-scanner")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop scanning and wait (bounded) for the task; safe to call twice."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.warning("BLE scanner task did not stop within %.1fs", timeout)
        await self._stop_scanner()

    async def __aenter__(self) -> BleScanner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


__all__ = [
    "DEFAULT_PASSIVE_PATTERNS",
    "BleScanner",
    "DeviceConfig",
    "DeviceStateName",
    "OnDeviceState",
    "OnReading",
    "ScannerConfig",
    "ScannerStats",
    "default_device_id",
]

