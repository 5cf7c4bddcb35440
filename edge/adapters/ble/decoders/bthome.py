"""BTHome v2 (device-formats.md §2.1): service data under UUID 0xFCD2, optionally AES-CCM encrypted.

Theory of operation: the first byte is the device-info byte (bit0 encrypted, bit2 trigger-based,
bits5-7 version). The rest is a run of ``object id + value`` records in little-endian. Fixed-size
objects are described by ``OBJECTS`` (id → channel, size, signedness, factor, unit, kind); variable or
structured ones (packet id, text, raw, events, firmware versions) are handled by name. Decoding stops at
the first unknown id (the spec's forward-compatibility rule) and keeps what came before.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ._state import DeviceState
from ._types import (
    Channels,
    ChannelSpec,
    DecodeResult,
    Measurement,
    MeasurementKind,
    RejectReason,
    Value,
    measure,
    rejected,
)

FORMAT: Final = "bthome"
UUID: Final = "0000fcd2-0000-1000-8000-00805f9b34fb"
UUID16_LE: Final = b"\xd2\xfc"  # §2.1: part of the AES-CCM nonce

INFO_ENCRYPTED: Final = 0x01
INFO_TRIGGER: Final = 0x04
VERSION_2: Final = 2
MIC_LEN: Final = 4
COUNTER_LEN: Final = 4
KEY_LEN: Final = 16


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One fixed-size object: ``size`` bytes LE, value = raw × factor rounded to ``decimals``."""

    channel: str
    size: int
    signed: bool = False
    factor: float = 1
    unit: str = ""
    kind: MeasurementKind = "sensor"
    decimals: int = 0


def _s(channel: str, size: int, signed: bool, factor: float, unit: str, decimals: int = 0) -> ObjectSpec:
    return ObjectSpec(channel, size, signed, factor, unit, "sensor", decimals)


def _b(channel: str) -> ObjectSpec:
    return ObjectSpec(channel, 1, kind="binary")


# §2.1 sensor table (bthome.io format.html @ 0cf388b). Channel names are subject tokens: no dots or spaces;
# ids that share a property share a channel name (repeats become ``name_2``, …) and so one unit: the ids
# sent in another unit are converted exactly (mass lb → kg, distance mm → m, volume mL → L).
OBJECTS: Final[Mapping[int, ObjectSpec]] = {
    0x01: _s("battery", 1, False, 1, "%"),
    0x02: _s("temperature", 2, True, 0.01, "°C", 2),
    0x03: _s("humidity", 2, False, 0.01, "%", 2),
    0x04: _s("pressure", 3, False, 0.01, "hPa", 2),
    0x05: _s("illuminance", 3, False, 0.01, "lx", 2),
    0x06: _s("mass", 2, False, 0.01, "kg", 2),
    0x07: _s("mass", 2, False, 0.01 * 0.45359237, "kg", 4),  # lb → kg (0.01 lb ≈ 4.5 g: 4 decimals keep it)
    0x08: _s("dewpoint", 2, True, 0.01, "°C", 2),
    0x09: _s("count", 1, False, 1, ""),
    0x0A: _s("energy", 3, False, 0.001, "kWh", 3),
    0x0B: _s("power", 3, False, 0.01, "W", 2),
    0x0C: _s("voltage", 2, False, 0.001, "V", 3),
    0x0D: _s("pm25", 2, False, 1, "ug/m3"),
    0x0E: _s("pm10", 2, False, 1, "ug/m3"),
    # §2.1 binary sensors (uint8 0/1); names that would collide with a sensor channel get a suffix.
    0x0F: _b("generic_boolean"),
    0x10: _b("power_on"),
    0x11: _b("opening"),
    0x12: _s("co2", 2, False, 1, "ppm"),
    0x13: _s("tvoc", 2, False, 1, "ug/m3"),
    0x14: _s("moisture", 2, False, 0.01, "%", 2),
    0x15: _b("battery_low"),
    0x16: _b("battery_charging"),
    0x17: _b("carbon_monoxide"),
    0x18: _b("cold"),
    0x19: _b("connectivity"),
    0x1A: _b("door"),
    0x1B: _b("garage_door"),
    0x1C: _b("gas_detected"),
    0x1D: _b("heat"),
    0x1E: _b("light"),
    0x1F: _b("lock"),  # 1 = unlocked
    0x20: _b("moisture_detected"),
    0x21: _b("motion"),
    0x22: _b("moving"),
    0x23: _b("occupancy"),
    0x24: _b("plug"),
    0x25: _b("presence"),
    0x26: _b("problem"),
    0x27: _b("running"),
    0x28: _b("safety"),  # 1 = safe
    0x29: _b("smoke"),
    0x2A: _b("sound"),
    0x2B: _b("tamper"),
    0x2C: _b("vibration"),
    0x2D: _b("window"),
    0x2E: _s("humidity", 1, False, 1, "%"),
    0x2F: _s("moisture", 1, False, 1, "%"),
    0x3D: _s("count", 2, False, 1, ""),
    0x3E: _s("count", 4, False, 1, ""),
    0x3F: _s("rotation", 2, True, 0.1, "°", 1),
    0x40: _s("distance", 2, False, 0.001, "m", 3),  # mm → m
    0x41: _s("distance", 2, False, 0.1, "m", 1),
    0x42: _s("duration", 3, False, 0.001, "s", 3),
    0x43: _s("current", 2, False, 0.001, "A", 3),
    0x44: _s("speed", 2, False, 0.01, "m/s", 2),
    0x45: _s("temperature", 2, True, 0.1, "°C", 1),
    0x46: _s("uv_index", 1, False, 0.1, "", 1),
    0x47: _s("volume", 2, False, 0.1, "L", 1),
    0x48: _s("volume", 2, False, 0.001, "L", 3),  # mL → L
    0x49: _s("volume_flow_rate", 2, False, 0.001, "m3/hr", 3),
    0x4A: _s("voltage", 2, False, 0.1, "V", 1),
    0x4B: _s("gas", 3, False, 0.001, "m3", 3),
    0x4C: _s("gas", 4, False, 0.001, "m3", 3),
    0x4D: _s("energy", 4, False, 0.001, "kWh", 3),
    0x4E: _s("volume", 4, False, 0.001, "L", 3),
    0x4F: _s("water", 4, False, 0.001, "L", 3),
    0x51: _s("acceleration", 2, False, 0.001, "m/s²", 3),
    0x52: _s("gyroscope", 2, False, 0.001, "°/s", 3),
    0x55: _s("volume_storage", 4, False, 0.001, "L", 3),
    0x56: _s("conductivity", 2, False, 1, "µS/cm"),
    0x57: _s("temperature", 1, True, 1, "°C"),
    0x58: _s("temperature", 1, True, 0.35, "°C", 2),
    0x59: _s("count", 1, True, 1, ""),
    0x5A: _s("count", 2, True, 1, ""),
    0x5B: _s("count", 4, True, 1, ""),
    0x5C: _s("power", 4, True, 0.01, "W", 2),
    0x5D: _s("current", 2, True, 0.001, "A", 3),
    0x5E: _s("direction", 2, False, 0.01, "°", 2),
    0x5F: _s("precipitation", 2, False, 0.1, "mm", 1),
    0x60: _s("channel", 1, False, 1, ""),
    0x61: _s("rotational_speed", 2, False, 1, "rpm"),
    0x62: _s("speed", 4, True, 0.000001, "m/s", 6),
    0x63: _s("acceleration", 4, True, 0.000001, "m/s²", 6),
    0x64: _s("light_level", 1, False, 1, ""),
    0x65: _s("settings_revision", 1, False, 1, ""),
    0xF0: ObjectSpec("device_type_id", 2, kind="info"),
}

# Objects decoded by hand (§2.1), and their channels.
OBJ_PACKET_ID: Final = 0x00
OBJ_BUTTON: Final = 0x3A
OBJ_DIMMER: Final = 0x3C
OBJ_COMMAND: Final = 0x3B
OBJ_TIMESTAMP: Final = 0x50
OBJ_TEXT: Final = 0x53
OBJ_RAW: Final = 0x54
OBJ_FW_32: Final = 0xF1
OBJ_FW_24: Final = 0xF2

BUTTON_EVENTS: Final[Mapping[int, str]] = {
    0x00: "none", 0x01: "press", 0x02: "double_press", 0x03: "triple_press", 0x04: "long_press",
    0x05: "long_double_press", 0x06: "long_triple_press", 0x80: "hold_press",
}
DIMMER_EVENTS: Final[Mapping[int, str]] = {0x00: "none", 0x01: "rotate_left", 0x02: "rotate_right"}
COMMAND_EVENTS: Final[Mapping[int, str]] = {
    0x00: "off", 0x01: "on", 0x02: "toggle", 0x03: "step_up", 0x04: "step_down",
}
_HAND_DECODED: Final[Channels] = {
    "button": ChannelSpec(kind="event"), "dimmer": ChannelSpec(kind="event"), "command": ChannelSpec(kind="event"),
    "timestamp": ChannelSpec(), "text": ChannelSpec(), "raw": ChannelSpec(),
    "firmware_version": ChannelSpec(kind="info"),
}


def _channels() -> dict[str, ChannelSpec]:
    out = dict(_HAND_DECODED)
    for spec in OBJECTS.values():
        ch = ChannelSpec(spec.unit, spec.kind)
        if out.setdefault(spec.channel, ch) != ch:  # one unit per channel name, whatever the object id
            raise AssertionError(f"BTHome channel {spec.channel!r} declared as {out[spec.channel]} and {ch}")
    return out


CHANNELS: Final[Channels] = _channels()


class _Truncated(Exception):
    pass


class _BadValue(Exception):
    pass


class _UnknownFirst(Exception):
    pass


def _take(data: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(data):
        raise _Truncated
    return data[pos : pos + n]


def _scaled(raw: int, spec: ObjectSpec) -> Value:
    if spec.kind == "binary":
        return raw != 0
    if spec.factor == 1:
        return raw
    return round(raw * spec.factor, spec.decimals)


def decrypt(key: bytes, mac: bytes, info: int, payload: bytes) -> tuple[bytes, int] | None:
    """AES-CCM-decrypt an encrypted BTHome v2 body (§2.1 Encryption).

    Args:
        key: 16-byte per-device key.
        mac: the advertiser's 6-byte address in display order (first byte = most significant).
        info: the device-info byte (part of the nonce).
        payload: ``ciphertext ‖ counter(4, LE) ‖ MIC(4)`` — the service data after the info byte.

    Returns:
        ``(plaintext, counter)``, or None when the MIC does not verify.
    """
    from cryptography.exceptions import InvalidTag  # local: only keyed deployments pay the import
    from cryptography.hazmat.primitives.ciphers.aead import AESCCM

    ciphertext = payload[: -(COUNTER_LEN + MIC_LEN)]
    counter_b = payload[-(COUNTER_LEN + MIC_LEN) : -MIC_LEN]
    mic = payload[-MIC_LEN:]
    # Nonce (13 B) = MAC(6) ‖ UUID16 LE ‖ device-info(1) ‖ counter(4 LE); v2 has no associated data.
    nonce = mac + UUID16_LE + bytes((info,)) + counter_b
    try:
        plain = AESCCM(key, tag_length=MIC_LEN).decrypt(nonce, ciphertext + mic, None)
    except InvalidTag:
        return None
    return plain, int.from_bytes(counter_b, "little")


def _objects(body: bytes) -> tuple[list[Measurement], int | None, str | None]:
    """Decode the object run. Returns (measurements, packet id, note). Raises _Truncated/_BadValue."""
    out: list[Measurement] = []
    seen: dict[str, int] = {}
    packet_id: int | None = None
    note: str | None = None

    def emit(channel: str, value: Value, detail: int | None = None, skip: bool = False) -> None:
        # §2.1 "Repeated ids → temperature_2, …": numbering counts every occurrence, so a skipped
        # "none" event still shifts the next button to button_2.
        n = seen[channel] = seen.get(channel, 0) + 1
        if not skip:
            m = measure(CHANNELS, channel, value, detail)
            out.append(m if n == 1 else dataclasses.replace(m, channel=f"{channel}_{n}"))

    pos = 0
    while pos < len(body):
        oid = body[pos]
        pos += 1
        spec = OBJECTS.get(oid)
        if spec is not None:
            raw = int.from_bytes(_take(body, pos, spec.size), "little", signed=spec.signed)
            pos += spec.size
            emit(spec.channel, _scaled(raw, spec))
        elif oid == OBJ_PACKET_ID:
            packet_id = _take(body, pos, 1)[0]
            pos += 1
        elif oid == OBJ_BUTTON:
            ev = _take(body, pos, 1)[0]
            pos += 1
            name = BUTTON_EVENTS.get(ev)
            if name is None:
                raise _BadValue
            emit("button", name, skip=name == "none")
        elif oid == OBJ_DIMMER:
            ev, steps = _take(body, pos, 2)
            pos += 2
            name = DIMMER_EVENTS.get(ev)
            if name is None:
                raise _BadValue
            emit("dimmer", name, detail=steps, skip=name == "none")
        elif oid == OBJ_COMMAND:
            # [param count n][event][n param bytes]; the parameter is read as an unsigned LE integer.
            n = _take(body, pos, 1)[0]
            ev = _take(body, pos + 1, 1)[0]
            params = _take(body, pos + 2, n)
            pos += 2 + n
            name = COMMAND_EVENTS.get(ev)
            if name is None:
                raise _BadValue
            emit("command", name, detail=int.from_bytes(params, "little") if n else None)
        elif oid == OBJ_TIMESTAMP:
            secs = int.from_bytes(_take(body, pos, 4), "little")
            pos += 4
            ts = _dt.datetime.fromtimestamp(secs, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            emit("timestamp", ts)
        elif oid in (OBJ_TEXT, OBJ_RAW):
            n = _take(body, pos, 1)[0]
            chunk = _take(body, pos + 1, n)
            pos += 1 + n
            if oid == OBJ_TEXT:
                try:
                    emit("text", chunk.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise _BadValue from exc
            else:
                emit("raw", chunk.hex())
        elif oid == OBJ_FW_32:
            v = _take(body, pos, 4)
            pos += 4
            emit("firmware_version", ".".join(str(b) for b in reversed(v)))
        elif oid == OBJ_FW_24:
            v = _take(body, pos, 3)
            pos += 3
            emit("firmware_version", ".".join(str(b) for b in reversed(v)))
        else:
            # Forward compatibility (§2.1): stop at the first unknown id, keep what came before.
            note = f"stopped_at_unknown_object_id_0x{oid:02x}"
            if not out and packet_id is None:
                raise _UnknownFirst
            break
    return out, packet_id, note


def decode(
    address: str,
    data: bytes,
    key: bytes | None,
    state: DeviceState,
) -> DecodeResult:
    """Decode BTHome v2 service data (the bytes after the UUID). Never raises on bad input.

    Args:
        address: the advertiser's MAC, ``AA:BB:CC:DD:EE:FF`` (nonce input for encrypted frames).
        data: service data value under UUID 0xFCD2.
        key: the device's 16-byte key, or None. With a key, unencrypted frames are rejected.
        state: this device's state; the encryption counter is updated only after the MIC verifies.
    """
    if not data:
        return rejected(FORMAT, "truncated")
    info = data[0]
    if info >> 5 != VERSION_2:
        return rejected(FORMAT, "unsupported_version")
    encrypted = bool(info & INFO_ENCRYPTED)
    counter: int | None = None
    body = data[1:]
    if encrypted:
        if key is None:
            return rejected(FORMAT, "missing_key")
        if len(body) < COUNTER_LEN + MIC_LEN + 1:
            return rejected(FORMAT, "truncated")
        # Devices repeat each frame several times and BlueZ re-reports it on every RSSI change: the
        # identical last frame is a duplicate, not an attack (it carries nothing new).
        if data == state.bthome_last_frame:
            return DecodeResult(
                format=FORMAT, duplicate=True, encrypted=True, dedupe_key=state.bthome_counter
            )
        try:
            mac = bytes.fromhex(address.replace(":", ""))
        except ValueError:
            mac = b""
        if len(mac) != 6:
            return rejected(FORMAT, "bad_address")
        got = decrypt(key, mac, info, body)
        if got is None:
            return rejected(FORMAT, "bad_mic")
        body, counter = got
        # §2.1: require a strictly increasing counter per device (replay protection).
        if state.bthome_counter is not None and counter <= state.bthome_counter:
            return rejected(FORMAT, "replayed_counter")
    elif key is not None:
        return rejected(FORMAT, "unencrypted_for_keyed_device")
    reason: RejectReason
    try:
        measurements, packet_id, note = _objects(body)
    except _Truncated:
        reason = "truncated"
    except _BadValue:
        reason = "bad_value"
    except _UnknownFirst:
        reason = "unknown_object_id"
    else:
        if counter is not None:
            state.bthome_counter = counter
            state.bthome_last_frame = data
        # Dedupe key: the packet id when present (§2.1 0x00), else the authenticated counter.
        return DecodeResult(
            format=FORMAT,
            measurements=tuple(measurements),
            dedupe_key=packet_id if packet_id is not None else counter,
            trigger_based=bool(info & INFO_TRIGGER),
            encrypted=encrypted,
            note=note,
        )
    return rejected(FORMAT, reason)
