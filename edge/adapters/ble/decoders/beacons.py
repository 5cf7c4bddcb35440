"""iBeacon and Eddystone UID/URL/TLM (device-formats.md §2.5).

Beacon identities (iBeacon UUID/major/minor, Eddystone namespace/instance, URL) are measurements of kind
``info``, published like any reading (``dev.<gw>.ble.<device>.ibeacon_uuid``, ...) with the advert's RSSI,
which is what proximity uses; TLM frames are telemetry (sensor measurements).
"""

from __future__ import annotations

import struct
import uuid as _uuid
from typing import Final

from ._types import Channels, ChannelSpec, DecodeResult, Measurement, measure, rejected

APPLE_COMPANY_ID: Final = 0x004C
IBEACON_PREFIX: Final = b"\x02\x15"
FORMAT_IBEACON: Final = "ibeacon"
_IBEACON: Final = struct.Struct(">16sHHb")

EDDYSTONE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"
FORMAT_EDDYSTONE_UID: Final = "eddystone_uid"
FORMAT_EDDYSTONE_URL: Final = "eddystone_url"
FORMAT_EDDYSTONE_TLM: Final = "eddystone_tlm"
FRAME_UID: Final = 0x00
FRAME_URL: Final = 0x10
FRAME_TLM: Final = 0x20
_TLM: Final = struct.Struct(">BBHhII")  # frame, version, VBATT mV, TEMP 8.8, ADV_CNT, SEC_CNT
TLM_TEMP_NA: Final = -0x8000
URL_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
URL_EXPANSIONS: Final = (
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/",
    ".com", ".org", ".edu", ".net", ".info", ".biz", ".gov",
)

_INFO: Final = ChannelSpec(kind="info")
IBEACON_CHANNELS: Final[Channels] = {
    "ibeacon_uuid": _INFO, "ibeacon_major": _INFO, "ibeacon_minor": _INFO,
    "measured_power": ChannelSpec("dBm", "info"),  # RSSI expected at 1 m
}
EDDYSTONE_UID_CHANNELS: Final[Channels] = {
    "eddystone_namespace": _INFO, "eddystone_instance": _INFO,
    "tx_power": ChannelSpec("dBm", "info"),  # calibrated power at 0 m
}
EDDYSTONE_URL_CHANNELS: Final[Channels] = {"url": _INFO, "tx_power": ChannelSpec("dBm", "info")}
EDDYSTONE_TLM_CHANNELS: Final[Channels] = {
    "battery_voltage": ChannelSpec("V"),  # the frame carries mV
    "temperature": ChannelSpec("°C"),
    "advertisement_count": ChannelSpec(),
    "uptime": ChannelSpec("s"),
}


def is_ibeacon(data: bytes) -> bool:
    """True when Apple manufacturer data starts with the iBeacon type/length (other Apple adverts don't)."""
    return data[:2] == IBEACON_PREFIX


def decode_ibeacon(data: bytes) -> DecodeResult:
    """Decode Apple manufacturer data ``02 15 uuid major minor power`` into identity (``info``) measurements."""
    if len(data) != 2 + _IBEACON.size:
        return rejected(FORMAT_IBEACON, "bad_length")
    u, major, minor, power = _IBEACON.unpack_from(data, 2)
    ch = IBEACON_CHANNELS
    return DecodeResult(
        format=FORMAT_IBEACON,
        measurements=(
            measure(ch, "ibeacon_uuid", str(_uuid.UUID(bytes=u))), measure(ch, "ibeacon_major", major),
            measure(ch, "ibeacon_minor", minor), measure(ch, "measured_power", power),
        ),
    )


def decode_eddystone(data: bytes) -> DecodeResult:
    """Decode Eddystone service data (after the UUID): UID/URL identity (``info``) or TLM telemetry."""
    if not data:
        return rejected(FORMAT_EDDYSTONE_UID, "truncated")
    frame = data[0]
    if frame == FRAME_UID:
        # 0x00, TX power at 0 m (int8), namespace 10 B, instance 6 B, optional 2 reserved bytes.
        if len(data) not in (18, 20):
            return rejected(FORMAT_EDDYSTONE_UID, "bad_length")
        ch = EDDYSTONE_UID_CHANNELS
        return DecodeResult(
            format=FORMAT_EDDYSTONE_UID,
            measurements=(
                measure(ch, "eddystone_namespace", data[2:12].hex()),
                measure(ch, "eddystone_instance", data[12:18].hex()),
                measure(ch, "tx_power", int.from_bytes(data[1:2], "big", signed=True)),
            ),
        )
    if frame == FRAME_TLM:
        if len(data) != _TLM.size:
            return rejected(FORMAT_EDDYSTONE_TLM, "bad_length")
        _f, version, vbatt, temp, adv_cnt, sec_cnt = _TLM.unpack(data)
        if version != 0:  # 0x01 is encrypted TLM, which needs the EID key
            return rejected(FORMAT_EDDYSTONE_TLM, "unsupported_version")
        tlm = EDDYSTONE_TLM_CHANNELS
        out: list[Measurement] = []
        if vbatt:  # 0 = not supported
            out.append(measure(tlm, "battery_voltage", round(vbatt / 1000, 3)))
        if temp != TLM_TEMP_NA:
            out.append(measure(tlm, "temperature", temp / 256))  # signed 8.8 fixed point
        out.append(measure(tlm, "advertisement_count", adv_cnt))
        out.append(measure(tlm, "uptime", round(sec_cnt / 10, 1)))
        return DecodeResult(format=FORMAT_EDDYSTONE_TLM, measurements=tuple(out), dedupe_key=adv_cnt)
    if frame == FRAME_URL:
        if len(data) < 3 or data[2] >= len(URL_SCHEMES):
            return rejected(FORMAT_EDDYSTONE_URL, "bad_value" if len(data) >= 3 else "truncated")
        parts = [URL_SCHEMES[data[2]]]
        for b in data[3:]:
            if b < len(URL_EXPANSIONS):
                parts.append(URL_EXPANSIONS[b])
            elif 0x20 < b < 0x7F:
                parts.append(chr(b))
            else:
                return rejected(FORMAT_EDDYSTONE_URL, "bad_value")
        url = EDDYSTONE_URL_CHANNELS
        return DecodeResult(
            format=FORMAT_EDDYSTONE_URL,
            measurements=(
                measure(url, "url", "".join(parts)),
                measure(url, "tx_power", int.from_bytes(data[1:2], "big", signed=True)),
            ),
        )
    return DecodeResult(format=None)  # EID and future frames: not decoded
