"""The ``ble`` adapter kind: the BLE scanner and GATT manager wired into the broker's adapter framework.

Configuration (validated at load time, bleak is not imported here)::

    [[adapters.ble]]
    adapter = "hci0"              # BlueZ adapter (the hardware profiles' on-board radio is hci0)
    mode = "active"               # active | passive (advertisement monitor: BlueZ >= 5.56 run with --experimental;
                                  # without it: active, with one warning saying how to enable it)
    allow = ["A4:C1:38:00:00:01"] # only these advertisers (empty/absent = everyone); deny always wins
    deny = []
    min_interval = "0s"           # per-device minimum time between published readings
    device_timeout = "5m"         # silence -> evt.<gw>.ble.<device>.offline (trigger-based BTHome excepted)
    discovery = false             # unknown advertisers -> evt.<gw>.ble.<device>.discovered
    max_connections = 3           # GATT connection slots of the radio
    watchdog_timeout = "2m"       # no advert at all for this long while devices are expected -> rescan
    check_interval = "1s"         # housekeeping period (offline checks, watchdog)
    backoff_min = "1s"            # scan restart / GATT reconnect backoff, doubling ...
    backoff_max = "30s"           # ... up to this
    connect_timeout = "10s"
    max_pending_writes = 16       # write commands in flight; beyond: answered code "busy", counted

    [[adapters.ble.devices]]      # advertisers with a name, a BTHome key or their own timings
    address = "54:48:E6:8F:80:A5"
    name = "greenhouse"           # the <device> subject token (default: the address without colons)
    key = "231d39c1d7cc1ab1aee224cd096db932"   # BTHome v2 AES-CCM key (32 hex digits)
    timeout = "10m"
    min_interval = "30s"

    [[adapters.ble.devices]]      # a device with ``characteristics`` is also connected over GATT
    address = "C0:FF:EE:00:00:01"
    name = "ess"
    characteristics = [
      { uuid = "2a6e", mode = "notify" },                   # SIG ones decode by themselves
      { uuid = "2a19", mode = "poll", interval = "5m" },
      { uuid = "12345678-1234-5678-1234-56789abcdef0", mode = "both", interval = "1m",
        layout = { format = "<hH", fields = [ { channel = "temperature", factor = 0.01, unit = "°C" },
                                              { channel = "co2", unit = "ppm" } ] } },
    ]

Subjects: readings ``dev.<gw>.ble.<device>.<channel>`` (``{"value", "unit", "ts", "rssi"}``; GATT readings
have no rssi, BTHome events carry ``detail`` when the event has an argument; channels and units:
``CHANNELS.md``; beacon identities are ``info`` readings such as ``ibeacon_uuid``), lifecycle events
``evt.<gw>.ble.<device>.{online,offline,discovered,lost}`` (offline with ``reason`` "silence",
"disconnected" or "lost"; discovered/lost only for unconfigured advertisers with ``discovery = true``,
lost when the bounded tracking table evicts one), and for GATT devices the command ``write`` on
``cmd.<gw>.ble.<device>.write`` (the contract of :mod:`edge.adapters.commands`): ``{"uuid": "2a06",
"data": "<hex>", "response": true}``, or the value as ``"text"`` (UTF-8) or as ``"value"`` packed with a
``struct`` ``"format"`` (``{"uuid": "2a06", "value": 2, "format": "<B"}``); answered
``{"ok": true, "result": {"written": "<hex>"}}``, ``offline`` at once when the link is down, ``busy``
beyond ``max_pending_writes``.

Presence: the scanner decides online/offline for advertisers, the GATT link for connected devices (a
GATT device is also handed to the scanner, only so that its ``BLEDevice`` is remembered: the connect waits
until the scan has heard the device and needs no scan of its own, which BlueZ would refuse with InProgress
while ours runs: ble-testing.md pitfall 17).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from edge.adapters.base import Adapter, AdapterContext, sanitize_token
from edge.adapters.commands import Command, CommandError
from edge.config import values as v

from .decoders import REJECT_REASONS, Measurement, StructLayout, normalize_address
from .decoders.gatt_values import Field
from .gatt import DEFAULT_MAX_CONNECTIONS, CharacteristicConfig, GattDeviceConfig, GattError, GattManager
from .scanner import BleScanner, DeviceConfig, ScannerConfig, default_device_id

if TYPE_CHECKING:
    from collections.abc import Sequence

    from edge.config.sections import KeyReporter

__all__ = ["BleAdapter", "BleConfig", "BleDeviceSettings", "parse_ble"]

_KEYS: Final = frozenset({
    "adapter", "mode", "allow", "deny", "min_interval", "device_timeout", "discovery", "devices",
    "max_connections", "watchdog_timeout", "check_interval", "backoff_min", "backoff_max", "connect_timeout",
    "max_pending_writes",
})
_DEVICE_KEYS: Final = frozenset({"address", "name", "key", "timeout", "min_interval", "characteristics"})
_CHAR_KEYS: Final = frozenset({"uuid", "mode", "interval", "layout"})
_LAYOUT_KEYS: Final = frozenset({"format", "fields"})
_FIELD_KEYS: Final = frozenset({"channel", "factor", "unit", "decimals"})
_MAC_RE: Final = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_UUID_RE: Final = re.compile(r"^([0-9a-f]{4}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_ADAPTER_RE: Final = re.compile(r"^hci[0-9]{1,3}$")
_STOP_TIMEOUT: Final = 1.5  # s per part on shutdown (the broker gives the adapters 2 s in all)
_WRITE_DATA_MAX: Final = 512  # bytes: the largest ATT attribute value


@dataclass(frozen=True, slots=True)
class BleDeviceSettings:
    """One ``[[adapters.ble.devices]]`` entry. ``characteristics`` non-empty = a GATT device."""

    address: str
    name: str
    key: bytes | None = None
    timeout: float | None = None
    min_interval: float | None = None
    characteristics: tuple[CharacteristicConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class BleConfig:
    adapter: str = "hci0"
    mode: Literal["active", "passive"] = "active"
    allow: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()
    min_interval: float = 0.0
    device_timeout: float = 300.0
    discovery: bool = False
    devices: tuple[BleDeviceSettings, ...] = ()
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    watchdog_timeout: float = 120.0
    check_interval: float = 1.0
    backoff_min: float = 1.0
    backoff_max: float = 30.0
    connect_timeout: float = 10.0
    max_pending_writes: int = 16

    @property
    def gatt_devices(self) -> tuple[GattDeviceConfig, ...]:
        return tuple(
            GattDeviceConfig(d.address, d.characteristics, device_id=d.name) for d in self.devices if d.characteristics
        )

    def scanner_config(self) -> ScannerConfig:
        devices = tuple(DeviceConfig(d.address, d.name, d.timeout, d.min_interval, d.key) for d in self.devices)
        return ScannerConfig(
            adapter=self.adapter, mode=self.mode, devices=devices, allow=self.allow, deny=self.deny,
            device_timeout=self.device_timeout, min_interval=self.min_interval,
            watchdog_timeout=self.watchdog_timeout, check_interval=self.check_interval,
            restart_backoff=(self.backoff_min, self.backoff_max),
        )


# --- config parsing (no bleak, no I/O)

def _mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC_RE.match(value):
        raise ValueError(f"expected a Bluetooth address like \"A4:C1:38:00:00:01\", got {value!r}")
    return normalize_address(value)


def _mac_list(value: Any) -> frozenset[str]:
    items = v.read_str_list(value)
    return frozenset(_mac(a) for a in items)


def _choice(value: Any, *, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def _adapter_name(value: Any) -> str:
    if not isinstance(value, str) or not _ADAPTER_RE.match(value):
        raise ValueError(f"expected a BlueZ adapter name like \"hci0\", got {value!r}")
    return value


def _token(value: Any) -> str:
    text = v.read_str(value)
    if sanitize_token(text) != text:
        raise ValueError(f"{text!r} is not a valid subject token (no dots, spaces, '*', '>')")
    return text


def _key(value: Any) -> bytes:
    try:
        key = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        key = b""
    if len(key) != 16:
        raise ValueError(f"expected a BTHome key of 32 hex digits (16 bytes), got {value!r}")
    return key


def _uuid(value: Any) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if not _UUID_RE.match(text):
        raise ValueError(f"expected a 16-bit (\"2a6e\") or 128-bit characteristic UUID, got {value!r}")
    return text


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    return value


def _parse_layout(value: Any, rep: KeyReporter) -> StructLayout:
    table = rep.require_table(value, "layout")
    lrep = rep.child("layout")
    lrep.reject_unknown(table, _LAYOUT_KEYS)
    if "format" not in table:
        raise lrep.error("format", "required: a Python struct format such as \"<hH\" (little-endian)")
    fmt = lrep.read(table, "format", v.read_str)
    try:
        n = len(struct.unpack(fmt, bytes(struct.calcsize(fmt))))
    except struct.error as exc:
        raise lrep.error("format", f"bad struct format {fmt!r}: {exc}") from None
    raw_fields = table.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise lrep.error("fields", "required: a list of { channel, factor, unit, decimals } tables")
    fields: list[Field] = []
    for i, item in enumerate(raw_fields):
        ft = lrep.require_table(item, f"fields[{i}]")
        frep = lrep.child(f"fields[{i}]")
        frep.reject_unknown(ft, _FIELD_KEYS)
        if "channel" not in ft:
            raise frep.error("channel", "required: the channel token of this field")
        fields.append(Field(
            channel=frep.read(ft, "channel", _token),
            factor=frep.read(ft, "factor", _number) if "factor" in ft else 1,
            unit=frep.read(ft, "unit", v.read_str, allow_empty=True) if "unit" in ft else "",
            decimals=frep.read(ft, "decimals", v.read_int, minimum=0, maximum=9) if "decimals" in ft else 3,
        ))
    if n != len(fields):
        raise lrep.error("fields", f"format {fmt!r} has {n} items but {len(fields)} fields are declared")
    return StructLayout(fmt, tuple(fields))


def _parse_characteristic(value: Any, rep: KeyReporter) -> CharacteristicConfig:
    table = rep.require_table(value, "")
    rep.reject_unknown(table, _CHAR_KEYS)
    if "uuid" not in table:
        raise rep.error("uuid", "required: the characteristic UUID")
    uuid = rep.read(table, "uuid", _uuid)
    mode = rep.read(table, "mode", _choice, choices=("notify", "poll", "both")) if "mode" in table else "notify"
    interval = 60.0
    if "interval" in table:
        interval = rep.read(table, "interval", v.read_duration, minimum=0.1, maximum=86400.0)
    layout = _parse_layout(table["layout"], rep) if "layout" in table else None
    if layout is None:
        from .decoders.gatt_values import SIG_CHARACTERISTICS

        if CharacteristicConfig(uuid).full_uuid not in SIG_CHARACTERISTICS:
            raise rep.error("layout", f"required for {uuid!r}: only SIG temperature, humidity, pressure and "
                                      "battery level decode without a declared layout")
    return CharacteristicConfig(uuid, mode, interval, layout)  # type: ignore[arg-type]


def _parse_device(value: Any, rep: KeyReporter) -> BleDeviceSettings:
    table = rep.require_table(value, "")
    rep.reject_unknown(table, _DEVICE_KEYS)
    if "address" not in table:
        raise rep.error("address", "required: the device's Bluetooth address")
    address = rep.read(table, "address", _mac)
    name = rep.read(table, "name", _token) if "name" in table else default_device_id(address)
    chars: list[CharacteristicConfig] = []
    if "characteristics" in table:
        raw = table["characteristics"]
        if not isinstance(raw, list) or not raw:
            raise rep.error("characteristics", "expected a non-empty list of { uuid, mode, interval, layout }")
        seen: set[str] = set()
        for i, item in enumerate(raw):
            ch = _parse_characteristic(item, rep.child(f"characteristics[{i}]"))
            if ch.full_uuid in seen:
                raise rep.child(f"characteristics[{i}]").error("uuid", f"duplicate characteristic {ch.uuid!r}")
            seen.add(ch.full_uuid)
            chars.append(ch)
    return BleDeviceSettings(
        address=address, name=name,
        key=rep.read(table, "key", _key) if "key" in table else None,
        timeout=rep.read(table, "timeout", v.read_duration, minimum=0.1, maximum=7 * 86400.0)
        if "timeout" in table else None,
        min_interval=rep.read(table, "min_interval", v.read_duration, minimum=0.0, maximum=86400.0)
        if "min_interval" in table else None,
        characteristics=tuple(chars),
    )


def parse_ble(table: dict[str, Any], rep: KeyReporter) -> BleConfig:
    """Validate one ``[[adapters.ble]]`` table; errors name the file and the key."""
    rep.reject_unknown(table, _KEYS)
    kw: dict[str, Any] = {}
    if "adapter" in table:
        kw["adapter"] = rep.read(table, "adapter", _adapter_name)
    if "mode" in table:
        kw["mode"] = rep.read(table, "mode", _choice, choices=("active", "passive"))
    for key in ("allow", "deny"):
        if key in table:
            kw[key] = rep.read(table, key, _mac_list)
    durations = {
        "min_interval": (0.0, 86400.0), "device_timeout": (0.1, 7 * 86400.0), "watchdog_timeout": (0.1, 86400.0),
        "check_interval": (0.01, 60.0), "backoff_min": (0.01, 3600.0), "backoff_max": (0.01, 3600.0),
        "connect_timeout": (0.1, 120.0),
    }
    for key, (lo, hi) in durations.items():
        if key in table:
            kw[key] = rep.read(table, key, v.read_duration, minimum=lo, maximum=hi)
    if "discovery" in table:
        kw["discovery"] = rep.read(table, "discovery", v.read_bool)
    if "max_connections" in table:
        kw["max_connections"] = rep.read(table, "max_connections", v.read_int, minimum=1, maximum=32)
    if "max_pending_writes" in table:
        kw["max_pending_writes"] = rep.read(table, "max_pending_writes", v.read_int, minimum=1, maximum=1024)
    if kw.get("backoff_min", 1.0) > kw.get("backoff_max", 30.0):
        raise rep.error("backoff_min", "must not exceed backoff_max")
    devices: list[BleDeviceSettings] = []
    if "devices" in table:
        raw = table["devices"]
        if not isinstance(raw, list):
            raise rep.error("devices", "expected an array of tables ([[adapters.ble.devices]])")
        names: set[str] = set()
        addresses: set[str] = set()
        for i, item in enumerate(raw):
            drep = rep.child(f"devices[{i}]")
            dev = _parse_device(item, drep)
            if dev.address in addresses:
                raise drep.error("address", f"duplicate device address {dev.address}")
            if dev.name in names:
                raise drep.error("name", f"duplicate device name {dev.name!r}")
            addresses.add(dev.address)
            names.add(dev.name)
            devices.append(dev)
    if sum(1 for d in devices if d.characteristics) > 64:
        raise rep.error("devices", "at most 64 GATT devices per adapter")
    return BleConfig(devices=tuple(devices), **kw)


def _address_of(device_id: str) -> str | None:
    """``aabbccddeeff`` (the default device id) → ``AA:BB:CC:DD:EE:FF``; None for a configured name."""
    if len(device_id) != 12 or not all(c in "0123456789abcdef" for c in device_id):
        return None
    return ":".join(device_id[i : i + 2] for i in range(0, 12, 2)).upper()


def _write_args(args: dict[str, Any]) -> tuple[str, bytes, bool]:
    """``(uuid, bytes, response)`` of a write command; CommandError ``bad_arguments`` naming the problem."""
    try:
        uuid = _uuid(args.get("uuid"))
        given = [k for k in ("data", "text", "value") if k in args]
        if len(given) != 1:
            raise ValueError("give the value as exactly one of 'data' (hex), 'text' or 'value' with 'format'")
        if "data" in args:
            if not isinstance(args["data"], str):
                raise ValueError("'data' must be a hex string")
            data = bytes.fromhex(args["data"])
        elif "text" in args:
            if not isinstance(args["text"], str):
                raise ValueError("'text' must be a string")
            data = args["text"].encode()
        else:
            fmt, value = args.get("format"), args["value"]
            if not isinstance(fmt, str):
                raise ValueError("'value' needs a struct 'format' such as \"<B\" or \"<h\"")
            try:
                data = struct.pack(fmt, *(value if isinstance(value, list) else [value]))
            except struct.error as exc:
                raise ValueError(f"cannot pack {value!r} as {fmt!r}: {exc}") from None
        if len(data) > _WRITE_DATA_MAX:
            raise ValueError(f"the value is {len(data)} bytes, at most {_WRITE_DATA_MAX}")
        response = args.get("response", True)
        if not isinstance(response, bool):
            raise ValueError("'response' must be true or false")
    except ValueError as exc:
        raise CommandError("bad_arguments", f"bad write request: {exc}") from None
    return uuid, data, response


# --- the adapter

class BleAdapter(Adapter):
    """Runs a :class:`BleScanner` and a :class:`GattManager`; see the module docstring."""

    kind = "ble"
    config: BleConfig

    @classmethod
    def parse_config(cls, table: dict[str, Any], rep: KeyReporter) -> BleConfig:
        return parse_ble(table, rep)

    def __init__(self, config: BleConfig, ctx: AdapterContext) -> None:
        super().__init__(config, ctx)
        self.scanner: BleScanner | None = None
        self.gatt: GattManager | None = None
        self.stats: dict[str, int] = dict.fromkeys(("writes_ok", "writes_failed", "readings", "links_dropped"), 0)
        self._by_name = {d.name: d for d in config.devices}
        self._gatt_names = frozenset(d.name for d in config.devices if d.characteristics)

    # -- counters / monitoring
    def counters(self) -> dict[str, int]:
        out = dict(self.stats)
        if self.scanner is not None:
            out.update({f"scan_{k}": n for k, n in dataclasses.asdict(self.scanner.stats).items()})
            rejects = self.scanner.decoder_state.rejects
            out.update({f"reject_{r}": rejects.get(r, 0) for r in REJECT_REASONS})
            out["decoder_evictions"] = self.scanner.decoder_state.evictions
        if self.gatt is not None:
            out.update({f"gatt_{k}": n for k, n in dataclasses.asdict(self.gatt.stats).items()})
            out["gatt_connected"] = len(self.gatt.connected)
        commands = self.ctx.commands
        out["pending_writes"] = commands.in_flight if commands is not None else 0
        if commands is not None:
            out.update(commands.counters())
        out["devices_dropped"] = self.ctx.devices_dropped
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        rows = super().snapshot()
        counters = self.counters()
        scanning = bool(self.scanner and self.scanner.scanning)
        for row in rows:
            row.update(counters=counters, scanning=scanning, bt_adapter=self.config.adapter)
        if not rows:
            rows.append({
                "adapter": "ble", "instance": self.ctx.name, "id": self.config.adapter, "name": self.config.adapter,
                "online": scanning, "last_seen": None, "subject": "", "readings": 0, "errors": 0,
                "counters": counters, "scanning": scanning, "bt_adapter": self.config.adapter,
            })
        return rows

    # -- callbacks from the scanner and the GATT manager (loop thread)
    def _on_reading(self, device: str, measurements: Sequence[Measurement], rssi: int | None, fmt: str) -> None:
        base: dict[str, Any] = {} if rssi is None else {"rssi": rssi}
        for m in measurements:
            extra = base if m.detail is None else {**base, "detail": m.detail}
            self.ctx.reading(device, m.channel, m.value, m.unit or None, **extra)
            self.stats["readings"] += 1
        state = self.ctx.device(device)
        if state is not None:
            state.extra["format"] = fmt
            if rssi is not None:
                state.extra["rssi"] = rssi

    def _on_scan_state(self, device: str, state: str) -> None:
        if device in self._gatt_names:
            return  # a GATT device's presence is its link's (the scanner only remembers its BLEDevice)
        unconfigured = device not in self._by_name
        if state == "discovered":
            if self.config.discovery and unconfigured:
                address = _address_of(device)
                self.ctx.event(device, "discovered", **({"address": address} if address else {}))
                st = self.ctx.device(device)
                if st is not None and address:
                    st.extra["address"] = address
            return
        if state == "lost":  # evicted from the scanner's bounded table: forgotten until heard again
            self.ctx.set_online(device, False, reason="lost")
            if unconfigured:
                self.ctx.devices.pop(device, None)
                if self.config.discovery:
                    address = _address_of(device)
                    self.ctx.event(device, "lost", **({"address": address} if address else {}))
            return
        if state == "online":
            self.ctx.set_online(device, True)
        else:
            self.ctx.set_online(device, False, reason="silence")

    def _on_gatt_state(self, device: str, state: str) -> None:
        if state == "online":
            self.ctx.set_online(device, True)
        else:
            self.ctx.set_online(device, False, reason="disconnected")

    # -- write commands
    def actions(self, device: str) -> list[str]:
        return ["write"] if device in self._gatt_names else []

    async def _command(self, cmd: Command) -> Any:
        """The ``write`` command (see the module docstring)."""
        if cmd.action != "write":
            raise CommandError("unsupported", f"unknown action {cmd.action!r} (supported: write)")
        uuid, data, response = _write_args(cmd.args)
        gatt = self.gatt
        if gatt is None or cmd.device not in gatt.connected:
            raise CommandError("offline", f"BLE device {cmd.device} is not connected")
        try:
            await asyncio.wait_for(gatt.write(cmd.device, uuid, data, response=response), self.config.connect_timeout)
        except GattError as exc:
            self.stats["writes_failed"] += 1
            raise CommandError("failed", str(exc)) from None
        except TimeoutError:
            self.stats["writes_failed"] += 1
            raise CommandError("timeout", f"write to {cmd.device} timed out") from None
        self.stats["writes_ok"] += 1
        return {"written": data.hex()}

    # -- lifecycle
    async def run(self) -> None:
        import bleak  # noqa: F401  # only a running BLE adapter pays for bleak; a missing package fails here

        cfg = self.config
        for dev in cfg.devices:  # listed in /devicez before they are heard
            st = self.ctx.device(dev.name)
            if st is not None:
                st.extra["address"] = dev.address
        scanner = self.scanner = BleScanner(cfg.scanner_config(), self._on_reading, self._on_scan_state)
        gatt = self.gatt = GattManager(
            cfg.gatt_devices, on_reading=self._on_reading, on_device_state=self._on_gatt_state,
            adapter=cfg.adapter, max_connections=cfg.max_connections, backoff=(cfg.backoff_min, cfg.backoff_max),
            connect_timeout=cfg.connect_timeout, resolve_device=scanner.connect_target,
        )
        self.ctx.serve_commands(self._command, sorted(self._gatt_names), timeout=cfg.connect_timeout + 1.0,
                                max_in_flight=cfg.max_pending_writes)
        try:
            await scanner.start()
            await gatt.start()
            start_failures = 0
            while True:
                await asyncio.sleep(cfg.check_interval)
                if not scanner.alive:
                    raise RuntimeError("BLE scanner task ended")
                if scanner.stats.start_failures > start_failures:
                    # The scan cannot start: the adapter is gone (unplugged, powered off). Connected links
                    # went with it, but bleak reports no disconnect when the device object just vanishes.
                    start_failures = scanner.stats.start_failures
                    if gatt.drop_links():
                        self.stats["links_dropped"] += 1
        finally:
            with contextlib.suppress(Exception):
                await gatt.stop(timeout=_STOP_TIMEOUT)
            with contextlib.suppress(Exception):
                await scanner.stop(timeout=_STOP_TIMEOUT)
