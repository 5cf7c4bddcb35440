"""RuuviTag data format 5 / RAWv2 (device-formats.md §2.2): manufacturer data under company 0x0499.

All fields big-endian two's complement. Fields holding their "not available" value are omitted.
"""

from __future__ import annotations

import struct
from typing import Final

from ._types import Channels, ChannelSpec, DecodeResult, Measurement, measure, rejected

FORMAT: Final = "ruuvi_v5"
COMPANY_ID: Final = 0x0499
DATA_FORMAT_5: Final = 0x05
LENGTH: Final = 24
_LAYOUT: Final = struct.Struct(">BhHHhhhHBH6s")  # §2.2 offsets 0..23

NA_INT16: Final = -0x8000
NA_UINT16: Final = 0xFFFF
NA_BATTERY: Final = 2047
NA_TX: Final = 31
NA_MOVEMENT: Final = 255
NA_MAC: Final = b"\xff" * 6
STANDARD_GRAVITY: Final = 9.80665  # m/s² per g: acceleration in m/s² like BTHome's

CHANNELS: Final[Channels] = {
    "temperature": ChannelSpec("°C"),
    "humidity": ChannelSpec("%"),
    "pressure": ChannelSpec("hPa"),  # hPa like BTHome and Home Assistant (the frame carries Pa)
    "acceleration_x": ChannelSpec("m/s²"),
    "acceleration_y": ChannelSpec("m/s²"),
    "acceleration_z": ChannelSpec("m/s²"),
    "battery_voltage": ChannelSpec("V"),
    "tx_power": ChannelSpec("dBm", "info"),
    "movement_counter": ChannelSpec(),
    "measurement_sequence": ChannelSpec(),
}


def decode(data: bytes) -> DecodeResult:
    """Decode manufacturer data (after the company id). Never raises on bad input."""
    if not data:
        return rejected(FORMAT, "truncated")
    if data[0] != DATA_FORMAT_5:
        return rejected(FORMAT, "unsupported_version")
    if len(data) != LENGTH:
        return rejected(FORMAT, "bad_length")
    _fmt, t, h, p, ax, ay, az, power, movement, seq, mac = _LAYOUT.unpack(data)
    out: list[Measurement] = []
    if t != NA_INT16:
        out.append(measure(CHANNELS, "temperature", round(t * 0.005, 3)))
    if h != NA_UINT16:
        out.append(measure(CHANNELS, "humidity", round(h * 0.0025, 4)))
    if p != NA_UINT16:
        out.append(measure(CHANNELS, "pressure", round((p + 50_000) / 100, 2)))  # Pa → hPa, exact
    for axis, v in (("x", ax), ("y", ay), ("z", az)):
        if v != NA_INT16:  # mG → m/s², exact (8 decimals cover mG × 0.00980665)
            out.append(measure(CHANNELS, f"acceleration_{axis}", round(v * STANDARD_GRAVITY / 1000, 8)))
    battery, tx = power >> 5, power & 0x1F
    if battery != NA_BATTERY:
        out.append(measure(CHANNELS, "battery_voltage", round((battery + 1600) / 1000, 3)))
    if tx != NA_TX:
        out.append(measure(CHANNELS, "tx_power", -40 + 2 * tx))
    if movement != NA_MOVEMENT:
        out.append(measure(CHANNELS, "movement_counter", movement))
    if seq != NA_UINT16:
        out.append(measure(CHANNELS, "measurement_sequence", seq))
    identity = {} if mac == NA_MAC else {"mac": ":".join(f"{b:02X}" for b in mac)}
    return DecodeResult(
        format=FORMAT,
        measurements=tuple(out),
        dedupe_key=None if seq == NA_UINT16 else seq,  # §2.2: the sequence is the dedupe key
        identity=identity,
    )
