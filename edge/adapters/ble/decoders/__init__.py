"""Pure BLE advertisement decoders (device-formats.md §2). Importing this package never imports bleak.

Entry point: ``decode_advertisement(address, manufacturer_data, service_data, keys=..., state=...)``.
It tries the formats in a fixed order (BTHome, Xiaomi custom, Ruuvi, Eddystone, iBeacon), returns the
first one that recognises the advert, marks repeats of the last dedupe key as ``duplicate`` and counts
rejects in ``state.rejects``. It never raises on malformed payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from . import beacons, bthome, gatt_values, ruuvi, xiaomi
from ._state import MAX_DEVICES, DecoderState, DeviceState
from ._types import REJECT_REASONS, Channels, ChannelSpec, DecodeResult, Measurement, RejectReason, Value
from .gatt_values import Field, StructLayout, decode_characteristic, uuid16

__all__ = [
    "FORMAT_CHANNELS",
    "MAX_DEVICES",
    "REJECT_REASONS",
    "DecodeResult",
    "DecoderState",
    "DeviceState",
    "Field",
    "Measurement",
    "RejectReason",
    "StructLayout",
    "Value",
    "channel_units",
    "channels_markdown",
    "decode_advertisement",
    "decode_characteristic",
    "normalize_address",
    "uuid16",
]


#: Every format's channels, in the table's column order (the ``format`` readings and /devicez report).
FORMAT_CHANNELS: Final[Mapping[str, Channels]] = {
    bthome.FORMAT: bthome.CHANNELS,
    xiaomi.FORMAT_ATC: xiaomi.ATC_CHANNELS,
    xiaomi.FORMAT_PVVX: xiaomi.PVVX_CHANNELS,
    ruuvi.FORMAT: ruuvi.CHANNELS,
    beacons.FORMAT_IBEACON: beacons.IBEACON_CHANNELS,
    beacons.FORMAT_EDDYSTONE_UID: beacons.EDDYSTONE_UID_CHANNELS,
    beacons.FORMAT_EDDYSTONE_URL: beacons.EDDYSTONE_URL_CHANNELS,
    beacons.FORMAT_EDDYSTONE_TLM: beacons.EDDYSTONE_TLM_CHANNELS,
    gatt_values.FORMAT: gatt_values.CHANNELS,
}


def channel_units() -> dict[str, ChannelSpec]:
    """Channel name → its spec across all formats; ValueError if two formats give one name two units."""
    out: dict[str, ChannelSpec] = {}
    for fmt, channels in FORMAT_CHANNELS.items():
        for name, spec in channels.items():
            if out.setdefault(name, spec).unit != spec.unit:
                raise ValueError(f"channel {name!r}: {fmt} says {spec.unit!r}, another format {out[name].unit!r}")
    return out


def channels_markdown() -> str:
    """The channel table of ``edge/adapters/ble/CHANNELS.md`` (and the README's config reference)."""
    rows = ["| channel | unit | kind | formats |", "|---|---|---|---|"]
    for name, spec in sorted(channel_units().items()):
        formats = ", ".join(f for f, chans in FORMAT_CHANNELS.items() if name in chans)
        kinds = sorted({FORMAT_CHANNELS[f][name].kind for f in formats.split(", ")})
        rows.append(f"| `{name}` | {spec.unit or '–'} | {'/'.join(kinds)} | {formats} |")
    return "\n".join(rows) + "\n"


def normalize_address(address: str) -> str:
    """``aa:bb:…`` → ``AA:BB:…`` (the key used for state, keys and allow/deny lists)."""
    return address.upper()


def _dispatch(
    address: str,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    key: bytes | None,
    dev: DeviceState,
) -> DecodeResult:
    sd = service_data.get(bthome.UUID)
    if sd is not None:
        return bthome.decode(address, sd, key, dev)
    if key is not None:
        # §2.1: a keyed MAC must only send encrypted BTHome; anything else from it is refused.
        return DecodeResult(format=bthome.FORMAT, reject="unencrypted_for_keyed_device")
    sd = service_data.get(xiaomi.UUID)
    if sd is not None:
        return xiaomi.decode(sd)
    md = manufacturer_data.get(ruuvi.COMPANY_ID)
    if md is not None:
        return ruuvi.decode(md)
    sd = service_data.get(beacons.EDDYSTONE_UUID)
    if sd is not None:
        return beacons.decode_eddystone(sd)
    md = manufacturer_data.get(beacons.APPLE_COMPANY_ID)
    if md is not None and beacons.is_ibeacon(md):
        return beacons.decode_ibeacon(md)
    return DecodeResult(format=None)


def decode_advertisement(
    address: str,
    manufacturer_data: Mapping[int, bytes],
    service_data: Mapping[str, bytes],
    *,
    keys: Mapping[str, bytes] | None = None,
    state: DecoderState,
) -> DecodeResult:
    """Decode one advertisement.

    Args:
        address: advertiser MAC (any case).
        manufacturer_data: company id → bytes after the id (bleak's ``AdvertisementData`` shape).
        service_data: full lowercase 128-bit UUID → bytes after the UUID (bleak's shape).
        keys: normalised MAC → 16-byte BTHome key. A keyed MAC's plain frames are rejected.
        state: caller-owned, bounded per-device state (dedupe keys, replay counters, reject counts).

    Returns:
        A ``DecodeResult``; ``result.reject`` names the reason for a malformed frame (also counted in
        ``state.rejects``); ``result.duplicate`` marks a repeat of the last dedupe key.
    """
    addr = normalize_address(address)
    keys = keys or {}
    key = keys.get(addr)
    dev = state.device(addr, pinned=key is not None)
    try:
        result = _dispatch(addr, manufacturer_data, service_data, key, dev)
    except Exception:  # a decoder bug must not take the scanner down: count it like a malformed frame
        state.rejects["bad_value"] += 1
        return DecodeResult(format="unknown", reject="bad_value", note="decoder_error")
    if result.reject is not None:
        state.rejects[result.reject] += 1
        return result
    if result.format is None or result.dedupe_key is None or result.duplicate:
        return result
    last = dev.last_key.get(result.format)
    dev.last_key[result.format] = result.dedupe_key
    if last == result.dedupe_key:
        return DecodeResult(
            format=result.format,
            measurements=result.measurements,
            dedupe_key=result.dedupe_key,
            duplicate=True,
            trigger_based=result.trigger_based,
            encrypted=result.encrypted,
            identity=result.identity,
            note=result.note,
        )
    return result
