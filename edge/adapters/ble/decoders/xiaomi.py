"""Xiaomi LYWSD03MMC custom firmware adverts (device-formats.md §2.3): service data UUID 0x181A.

Dispatch on payload length: 13 bytes = atc1441 (big-endian), 15 bytes = pvvx custom (little-endian).
"""

from __future__ import annotations

import struct
from typing import Final

from ._types import Channels, ChannelSpec, DecodeResult, measure, rejected

UUID: Final = "0000181a-0000-1000-8000-00805f9b34fb"
FORMAT_ATC: Final = "atc1441"
FORMAT_PVVX: Final = "pvvx"
_ATC: Final = struct.Struct(">6shBBHB")  # MAC, temp×0.1, hum %, batt %, batt mV, frame counter
_PVVX: Final = struct.Struct("<6shHHBBB")  # MAC reversed, temp×0.01, hum×0.01, mV, batt %, counter, flags

# pvvx flags byte (§2.3): bit → channel (binary).
PVVX_FLAGS: Final = (
    (0, "reed_switch"),
    (1, "gpio_trigger_output"),
    (2, "threshold_trigger"),
    (3, "temperature_trigger_event"),
    (4, "humidity_trigger_event"),
)

ATC_CHANNELS: Final[Channels] = {
    "temperature": ChannelSpec("°C"),
    "humidity": ChannelSpec("%"),
    "battery": ChannelSpec("%"),
    "battery_voltage": ChannelSpec("V"),  # the frame carries mV
}
PVVX_CHANNELS: Final[Channels] = {
    **ATC_CHANNELS, **{name: ChannelSpec(kind="binary") for _bit, name in PVVX_FLAGS},
}


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02X}" for x in b)


def decode(data: bytes) -> DecodeResult:
    """Decode service data under 0x181A (after the UUID). Never raises on bad input."""
    if len(data) == _ATC.size:
        mac, t, hum, batt, mv, frame = _ATC.unpack(data)
        return DecodeResult(
            format=FORMAT_ATC,
            measurements=(
                measure(ATC_CHANNELS, "temperature", round(t * 0.1, 1)),
                measure(ATC_CHANNELS, "humidity", hum),
                measure(ATC_CHANNELS, "battery", batt),
                measure(ATC_CHANNELS, "battery_voltage", round(mv / 1000, 3)),
            ),
            dedupe_key=frame,
            identity={"mac": _mac(mac)},
        )
    if len(data) == _PVVX.size:
        mac, t, hum, mv, batt, counter, flags = _PVVX.unpack(data)
        out = [
            measure(PVVX_CHANNELS, "temperature", round(t * 0.01, 2)),
            measure(PVVX_CHANNELS, "humidity", round(hum * 0.01, 2)),
            measure(PVVX_CHANNELS, "battery_voltage", round(mv / 1000, 3)),
            measure(PVVX_CHANNELS, "battery", batt),
        ]
        out.extend(measure(PVVX_CHANNELS, name, bool(flags >> bit & 1)) for bit, name in PVVX_FLAGS)
        return DecodeResult(
            format=FORMAT_PVVX,
            measurements=tuple(out),
            dedupe_key=counter,
            identity={"mac": _mac(mac[::-1])},
        )
    return rejected(FORMAT_ATC if len(data) < _PVVX.size else FORMAT_PVVX, "bad_length")
