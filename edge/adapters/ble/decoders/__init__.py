"""Pure BLE advertisement decoders (device-formats.md §2). Importing this package never imports bleak.

Entry point: ``decode_advertisement(address, manufacturer_data, service_data, keys=..., state=...)``.
It tries the formats in a fixed order (BTHome, Xiaomi custom, Ruuvi, Eddystone, iBeacon), returns the
first one that recognises the advert, marks repeats of the last dedupe key as ``duplicate`` and counts
rejects in ``state.rejects``. It never raises on malformed payloads.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import beacons, bthome, ruuvi, xiaomi
from ._state import MAX_DEVICES, DecoderState, DeviceState
from ._types import REJECT_REASONS, DecodeResult, Measurement, RejectReason, Value
from .gatt_values import Field, StructLayout, decode_characteristic, uuid16

__all__ = [
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
    "decode_advertisement",
    "decode_characteristic",
    "normalize_address",
    "uuid16",
]


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
