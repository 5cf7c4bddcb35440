"""GATT characteristic values (device-formats.md §2.4) and declared raw struct layouts. Pure."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ._types import Channels, ChannelSpec, Measurement

FORMAT: Final = "gatt"
SIG_BASE: Final = "-0000-1000-8000-00805f9b34fb"


def uuid16(short: int) -> str:
    """Full lowercase 128-bit UUID for a Bluetooth SIG 16-bit UUID (the form BlueZ and bleak use)."""
    return f"0000{short:04x}{SIG_BASE}"


TEMPERATURE: Final = uuid16(0x2A6E)
HUMIDITY: Final = uuid16(0x2A6F)
PRESSURE: Final = uuid16(0x2A6D)
BATTERY_LEVEL: Final = uuid16(0x2A19)


@dataclass(frozen=True, slots=True)
class SigCharacteristic:
    """A SIG characteristic: struct format (LE), factor, unit, decimals and the "unknown" raw value."""

    channel: str
    fmt: str
    factor: float
    unit: str
    decimals: int
    unknown: int | None


# §2.4 Environmental Sensing and Battery Service.
SIG_CHARACTERISTICS: Final[Mapping[str, SigCharacteristic]] = {
    TEMPERATURE: SigCharacteristic("temperature", "<h", 0.01, "°C", 2, -0x8000),
    HUMIDITY: SigCharacteristic("humidity", "<H", 0.01, "%", 2, 0xFFFF),
    PRESSURE: SigCharacteristic("pressure", "<I", 0.001, "hPa", 3, None),  # 0.1 Pa = 0.001 hPa (hPa as BTHome)
    BATTERY_LEVEL: SigCharacteristic("battery", "<B", 1, "%", 0, None),
}

#: The SIG characteristics' channels (declared layouts name their own channels and units).
CHANNELS: Final[Channels] = {c.channel: ChannelSpec(c.unit) for c in SIG_CHARACTERISTICS.values()}


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a declared raw layout: value = raw × factor (rounded to ``decimals``)."""

    channel: str
    factor: float = 1
    unit: str = ""
    decimals: int = 3


@dataclass(frozen=True, slots=True)
class StructLayout:
    """A raw characteristic described by a ``struct`` format (e.g. ``"<hH"``) and one Field per item."""

    fmt: str
    fields: Sequence[Field]

    def __post_init__(self) -> None:
        n = len(struct.unpack(self.fmt, bytes(struct.calcsize(self.fmt))))
        if n != len(self.fields):
            raise ValueError(f"layout {self.fmt!r} has {n} items but {len(self.fields)} fields")


def _scale(raw: float, factor: float, decimals: int) -> float | int:
    if factor == 1 and isinstance(raw, int):
        return raw
    return round(raw * factor, decimals)


def decode_characteristic(
    uuid: str, data: bytes, layout: StructLayout | None = None
) -> tuple[Measurement, ...] | None:
    """Decode a characteristic value; None when it cannot be decoded (wrong length, unknown UUID).

    A declared ``layout`` wins over the SIG table. A SIG "unknown" value decodes to no measurement (``()``).
    """
    if layout is not None:
        try:
            raws = struct.unpack(layout.fmt, data)
        except struct.error:
            return None
        return tuple(
            Measurement(f.channel, _scale(r, f.factor, f.decimals), f.unit)
            for f, r in zip(layout.fields, raws, strict=True)
        )
    sig = SIG_CHARACTERISTICS.get(uuid.lower())
    if sig is None:
        return None
    try:
        (raw,) = struct.unpack(sig.fmt, data)
    except struct.error:
        return None
    if raw == sig.unknown:
        return ()
    return (Measurement(sig.channel, _scale(raw, sig.factor, sig.decimals), sig.unit),)
