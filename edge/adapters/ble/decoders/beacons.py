"""iBeacon and Eddystone UID/URL/TLM (device-formats.md §2.5). Beacons carry identity, TLM telemetry."""

from __future__ import annotations

import struct
import uuid as _uuid
from typing import Final

from ._types import DecodeResult, Measurement, rejected

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


def is_ibeacon(data: bytes) -> bool:
    """True when Apple manufacturer data starts with the iBeacon type/length (other Apple adverts don't)."""
    return data[:2] == IBEACON_PREFIX


def decode_ibeacon(data: bytes) -> DecodeResult:
    """Decode Apple manufacturer data ``02 15 uuid major minor power``. Identity only, no measurements."""
    if len(data) != 2 + _IBEACON.size:
        return rejected(FORMAT_IBEACON, "bad_length")
    u, major, minor, power = _IBEACON.unpack_from(data, 2)
    return DecodeResult(
        format=FORMAT_IBEACON,
        identity={"uuid": str(_uuid.UUID(bytes=u)), "major": major, "minor": minor, "measured_power": power},
    )


def decode_eddystone(data: bytes) -> DecodeResult:
    """Decode Eddystone service data (after the UUID). TLM yields measurements; UID/URL give identity."""
    if not data:
        return rejected(FORMAT_EDDYSTONE_UID, "truncated")
    frame = data[0]
    if frame == FRAME_UID:
        # 0x00, TX power at 0 m (int8), namespace 10 B, instance 6 B, optional 2 reserved bytes.
        if len(data) not in (18, 20):
            return rejected(FORMAT_EDDYSTONE_UID, "bad_length")
        return DecodeResult(
            format=FORMAT_EDDYSTONE_UID,
            identity={
                "namespace": data[2:12].hex(),
                "instance": data[12:18].hex(),
                "tx_power": int.from_bytes(data[1:2], "big", signed=True),
            },
        )
    if frame == FRAME_TLM:
        if len(data) != _TLM.size:
            return rejected(FORMAT_EDDYSTONE_TLM, "bad_length")
        _f, version, vbatt, temp, adv_cnt, sec_cnt = _TLM.unpack(data)
        if version != 0:  # 0x01 is encrypted TLM, which needs the EID key
            return rejected(FORMAT_EDDYSTONE_TLM, "unsupported_version")
        out: list[Measurement] = []
        if vbatt:  # 0 = not supported
            out.append(Measurement("battery_voltage", round(vbatt / 1000, 3), "V"))
        if temp != TLM_TEMP_NA:
            out.append(Measurement("temperature", temp / 256, "°C"))  # signed 8.8 fixed point
        out.append(Measurement("advertisement_count", adv_cnt))
        out.append(Measurement("uptime", round(sec_cnt / 10, 1), "s"))
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
        return DecodeResult(
            format=FORMAT_EDDYSTONE_URL,
            identity={"url": "".join(parts), "tx_power": int.from_bytes(data[1:2], "big", signed=True)},
        )
    return DecodeResult(format=None)  # EID and future frames: not decoded
