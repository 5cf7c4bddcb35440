"""BLE advertisement decoders against the vendor vectors in device-formats.md §2, plus garbage input."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.adapters.ble.decoders import (
    FORMAT_CHANNELS,
    REJECT_REASONS,
    DecoderState,
    Field,
    Measurement,
    StructLayout,
    bthome,
    channel_units,
    channels_markdown,
    decode_advertisement,
    decode_characteristic,
    uuid16,
)
from edge.adapters.ble.decoders.gatt_values import SIG_CHARACTERISTICS

BTHOME = uuid16(0xFCD2)
ESS = uuid16(0x181A)
EDDY = uuid16(0xFEAA)
MAC = "A4:C1:38:07:FC:EE"


def bt(payload_hex: str, *, address: str = MAC, state: DecoderState | None = None, keys=None):
    return decode_advertisement(
        address, {}, {BTHOME: bytes.fromhex(payload_hex)}, keys=keys, state=state or DecoderState()
    )


def values(result) -> dict[str, object]:
    return {m.channel: m.value for m in result.measurements}


def test_importing_decoders_does_not_import_bleak() -> None:
    assert "bleak" not in sys.modules or "edge.adapters.ble.scanner" in sys.modules


# --- BTHome v2 (§2.1), one row per object id of the reference table: (object hex, channel, value, unit)
BTHOME_VECTORS = [
    ("0161", "battery", 97, "%"),
    ("02CA09", "temperature", 25.06, "°C"),
    ("03BF13", "humidity", 50.55, "%"),
    ("04138A01", "pressure", 1008.83, "hPa"),
    ("05138A14", "illuminance", 13460.67, "lx"),
    ("065E1F", "mass", 80.3, "kg"),
    ("073E1D", "mass", 33.9559, "kg"),  # 74.86 lb × 0.45359237 kg/lb (one unit per channel)
    ("08CA06", "dewpoint", 17.38, "°C"),
    ("0960", "count", 96, ""),
    ("0A138A14", "energy", 1346.067, "kWh"),
    ("0B021B00", "power", 69.14, "W"),
    ("0C020C", "voltage", 3.074, "V"),
    ("0D120C", "pm25", 3090, "ug/m3"),
    ("0E021C", "pm10", 7170, "ug/m3"),
    ("12E204", "co2", 1250, "ppm"),
    ("133301", "tvoc", 307, "ug/m3"),
    ("14020C", "moisture", 30.74, "%"),
    ("2E23", "humidity", 35, "%"),
    ("2F23", "moisture", 35, "%"),
    ("3D0960", "count", 24585, ""),
    ("3E2A2C0960", "count", 1611213866, ""),
    ("3F020C", "rotation", 307.4, "°"),
    ("400C00", "distance", 0.012, "m"),  # 12 mm
    ("414E00", "distance", 7.8, "m"),
    ("424E3400", "duration", 13.390, "s"),
    ("434E34", "current", 13.39, "A"),
    ("444E34", "speed", 133.90, "m/s"),
    ("451101", "temperature", 27.3, "°C"),
    ("4632", "uv_index", 5.0, ""),
    ("478756", "volume", 2215.1, "L"),
    ("48DC87", "volume", 34.78, "L"),  # 34780 mL
    ("49DC87", "volume_flow_rate", 34.780, "m3/hr"),
    ("4A020C", "voltage", 307.4, "V"),
    ("4B138A14", "gas", 1346.067, "m3"),
    ("4C41018A01", "gas", 25821.505, "m3"),
    ("4d12138a14", "energy", 344593.170, "kWh"),
    ("4E87562A01", "volume", 19551.879, "L"),
    ("4F87562A01", "water", 19551.879, "L"),
    ("505d396164", "timestamp", "2023-05-14T19:41:17Z", ""),
    ("518756", "acceleration", 22.151, "m/s²"),
    ("528756", "gyroscope", 22.151, "°/s"),
    ("530C48656C6C6F20576F726C6421", "text", "Hello World!", ""),
    ("540C48656C6C6F20576F726C6421", "raw", "48656c6c6f20576f726c6421", ""),
    ("5587562A01", "volume_storage", 19551.879, "L"),
    ("56E803", "conductivity", 1000, "µS/cm"),
    ("57EA", "temperature", -22, "°C"),
    ("58EA", "temperature", -7.7, "°C"),
    ("59EA", "count", -22, ""),
    ("5AEAEA", "count", -5398, ""),
    ("5BEA0234EA", "count", -365690134, ""),
    ("5C02FBFFFF", "power", -12.78, "W"),
    ("5D02EA", "current", -5.63, "A"),
    ("5E9F8C", "direction", 359.99, "°"),
    ("5FA00F", "precipitation", 400.0, "mm"),
    ("6001", "channel", 1, ""),
    ("61AC0D", "rotational_speed", 3500, "rpm"),
    ("624099DFFF", "speed", -2.123456, "m/s"),
    ("630057D0FF", "acceleration", -3.123456, "m/s²"),
    ("6402", "light_level", 2, ""),
    ("6503", "settings_revision", 3, ""),
]


@pytest.mark.parametrize(
    ("obj", "channel", "value", "unit"), BTHOME_VECTORS, ids=[v[0][:2] for v in BTHOME_VECTORS]
)
def test_bthome_object_vectors(obj: str, channel: str, value: object, unit: str) -> None:
    r = bt("40" + obj)
    assert r.ok and r.format == "bthome"
    assert r.measurements == (Measurement(channel, value, unit),)  # type: ignore[arg-type]
    assert type(r.measurements[0].value) is type(value)


def test_every_table_id_has_a_vector() -> None:
    tested = {int(v[0][:2], 16) for v in BTHOME_VECTORS}
    table = {oid for oid, spec in bthome.OBJECTS.items() if spec.kind == "sensor"}
    assert table <= tested | {0xF0}


def test_bthome_spec_example_advert() -> None:
    # §2.1 example advert: ... 0A16D2FC4002C40903BF13 → service data 40 02C409 03BF13.
    r = bt("4002C40903BF13")
    assert values(r) == {"temperature": 25.0, "humidity": 50.55}
    assert not r.trigger_based and not r.encrypted


BINARY_IDS = {
    0x0F: "generic_boolean", 0x10: "power_on", 0x11: "opening", 0x15: "battery_low", 0x16: "battery_charging",
    0x17: "carbon_monoxide", 0x18: "cold", 0x19: "connectivity", 0x1A: "door", 0x1B: "garage_door",
    0x1C: "gas_detected", 0x1D: "heat", 0x1E: "light", 0x1F: "lock", 0x20: "moisture_detected",
    0x21: "motion", 0x22: "moving", 0x23: "occupancy", 0x24: "plug", 0x25: "presence", 0x26: "problem",
    0x27: "running", 0x28: "safety", 0x29: "smoke", 0x2A: "sound", 0x2B: "tamper", 0x2C: "vibration",
    0x2D: "window",
}


@pytest.mark.parametrize(("oid", "channel"), sorted(BINARY_IDS.items()))
def test_bthome_binary_sensors(oid: int, channel: str) -> None:
    on, off = bt(f"40{oid:02X}01"), bt(f"40{oid:02X}00")
    assert on.measurements == (Measurement(channel, True, "", "binary"),)
    assert off.measurements == (Measurement(channel, False, "", "binary"),)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("3A01", [Measurement("button", "press", "", "event")]),
        ("3A80", [Measurement("button", "hold_press", "", "event")]),
        ("3A04", [Measurement("button", "long_press", "", "event")]),
        # Two buttons, first "none": numbering still counts it (button_2 is the second button).
        ("3A003A02", [Measurement("button_2", "double_press", "", "event")]),
        ("3B0002", [Measurement("command", "toggle", "", "event", None)]),
        ("3B010305", [Measurement("command", "step_up", "", "event", 5)]),
        ("3C020A", [Measurement("dimmer", "rotate_right", "", "event", 10)]),
        ("3C0103", [Measurement("dimmer", "rotate_left", "", "event", 3)]),
    ],
)
def test_bthome_events(payload: str, expected: list[Measurement]) -> None:
    r = bt("44" + payload)
    assert r.trigger_based
    assert list(r.measurements) == expected


def test_bthome_device_info_objects() -> None:
    r = bt("40F00100F100010204F2000106")
    assert values(r) == {"device_type_id": 1, "firmware_version": "4.2.1.0", "firmware_version_2": "6.1.0"}
    assert all(m.kind == "info" for m in r.measurements)


def test_bthome_repeated_ids_are_numbered_in_order() -> None:
    r = bt("4002CA0902C409451101")
    assert [(m.channel, m.value) for m in r.measurements] == [
        ("temperature", 25.06), ("temperature_2", 25.0), ("temperature_3", 27.3),
    ]


def test_bthome_packet_id_dedupe() -> None:
    s = DecoderState()
    a = bt("40000902CA09", state=s)
    b = bt("40000902C409", state=s)
    c = bt("40000A02C409", state=s)
    assert a.dedupe_key == 9 and not a.duplicate
    assert b.duplicate and values(b) == {"temperature": 25.0}
    assert c.dedupe_key == 10 and not c.duplicate


def test_bthome_unknown_id_stops_decoding_keeps_earlier() -> None:
    s = DecoderState()
    r = bt("4002CA09FE0103BF13", state=s)
    assert r.ok and values(r) == {"temperature": 25.06}
    assert r.note == "stopped_at_unknown_object_id_0xfe"
    r = bt("40FE01", state=s)
    assert r.reject == "unknown_object_id"
    assert s.rejects["unknown_object_id"] == 1


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "truncated"),
        ("4002CA", "truncated"),  # temperature needs 2 bytes
        ("40530548656C", "truncated"),  # text length beyond the end
        ("403B0203", "truncated"),  # command with missing params
        ("20", "unsupported_version"),  # v1 info byte
        ("403A07", "bad_value"),  # undefined button event
        ("4053 02 C328".replace(" ", ""), "bad_value"),  # invalid UTF-8
        ("41" + "00" * 4, "missing_key"),
    ],
)
def test_bthome_malformed_rejected_and_counted(payload: str, reason: str) -> None:
    s = DecoderState()
    r = bt(payload, state=s)
    assert r.reject == reason and r.measurements == () and not r.ok
    assert s.rejects == {reason: 1}


# --- BTHome encryption (§2.1)
KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
ENC_MAC = "54:48:E6:8F:80:A5"


def test_bthome_decrypt_reference_nonce_layout() -> None:
    # bthome-ble's v2 example inputs (MAC 5448E68F80A5, counter bytes 00112233, info 0x42, plain
    # 02CA0903BF13). Its stored expected frame ends in MIC 045bbc2a, which is only reproduced with v1's
    # associated data b"\x11"; §2.1 says v2 drops it, so the v2 MIC is a2c73839 and the v1-style frame
    # must fail authentication.
    mac = bytes.fromhex("5448E68F80A5")
    v2 = bytes.fromhex("696c8c91856f" "00112233" "a2c73839")
    assert bthome.decrypt(KEY, mac, 0x42, v2) == (bytes.fromhex("02CA0903BF13"), 0x33221100)
    v1_aad = bytes.fromhex("696c8c91856f" "00112233" "045bbc2a")
    assert bthome.decrypt(KEY, mac, 0x42, v1_aad) is None
    assert bthome.decrypt(KEY, bytes.fromhex("5448E68F80A6"), 0x42, v2) is None


def encrypt(plain_hex: str, counter: int, *, key: bytes = KEY, mac: str = ENC_MAC, info: int = 0x41) -> str:
    """Build an encrypted frame straight from the spec's nonce layout with the cryptography package."""
    ctr = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + b"\xd2\xfc" + bytes((info,)) + ctr
    sealed = AESCCM(key, tag_length=4).encrypt(nonce, bytes.fromhex(plain_hex), None)
    return (bytes((info,)) + sealed[:-4] + ctr + sealed[-4:]).hex()


def test_bthome_encrypted_roundtrip_and_replay() -> None:
    s = DecoderState()
    keys = {ENC_MAC: KEY}
    f1 = encrypt("02CA0903BF13", 5)
    r = bt(f1, address=ENC_MAC.lower(), state=s, keys=keys)
    assert r.ok and r.encrypted and values(r) == {"temperature": 25.06, "humidity": 50.55}
    # The identical frame again (repeated advert / RSSI update) is a duplicate, not a replay.
    assert bt(f1, address=ENC_MAC, state=s, keys=keys).duplicate
    # Older or equal counter with other content: replay.
    for ctr in (4, 5):
        assert bt(encrypt("02C409", ctr), address=ENC_MAC, state=s, keys=keys).reject == "replayed_counter"
    r = bt(encrypt("02C409", 6), address=ENC_MAC, state=s, keys=keys)
    assert r.ok and values(r) == {"temperature": 25.0} and r.dedupe_key == 6
    assert s.rejects == {"replayed_counter": 2}


def test_bthome_bad_mic_does_not_advance_counter() -> None:
    s = DecoderState()
    keys = {ENC_MAC: KEY}
    frame = bytearray(bytes.fromhex(encrypt("02CA09", 100)))
    frame[-1] ^= 1
    assert bt(frame.hex(), address=ENC_MAC, state=s, keys=keys).reject == "bad_mic"
    wrong_key = encrypt("02CA09", 100, key=bytes(16))
    assert bt(wrong_key, address=ENC_MAC, state=s, keys=keys).reject == "bad_mic"
    assert bt(encrypt("02CA09", 1), address=ENC_MAC, state=s, keys=keys).ok
    assert s.rejects == {"bad_mic": 2}


def test_bthome_unencrypted_frame_for_keyed_mac_rejected() -> None:
    s = DecoderState()
    r = bt("4002CA09", address=ENC_MAC, state=s, keys={ENC_MAC: KEY})
    assert r.reject == "unencrypted_for_keyed_device"
    # ... and other formats from that MAC too.
    r = decode_advertisement(ENC_MAC, {0x0499: bytes(24)}, {}, keys={ENC_MAC: KEY}, state=s)
    assert r.reject == "unencrypted_for_keyed_device"


def test_bthome_encrypted_short_frame() -> None:
    s = DecoderState()
    assert bt("41" + "00" * 8, address=ENC_MAC, state=s, keys={ENC_MAC: KEY}).reject == "truncated"


# --- RuuviTag data format 5 (§2.2 and the vendor's dataformat_05.md test vectors)
def ruuvi(hex_: str, state: DecoderState | None = None):
    md = {0x0499: bytes.fromhex(hex_)}
    return decode_advertisement("CB:B8:33:4C:88:4F", md, {}, state=state or DecoderState())


def test_ruuvi_valid_vector() -> None:
    r = ruuvi("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
    assert r.format == "ruuvi_v5"
    assert values(r) == {
        # 100044 Pa = 1000.44 hPa; 4 / -4 / 1036 mG × 9.80665 m/s² per g (device-formats.md: 1.036 G ≈ 10.16 m/s²)
        "temperature": 24.3, "humidity": 53.49, "pressure": 1000.44,
        "acceleration_x": 0.0392266, "acceleration_y": -0.0392266, "acceleration_z": 10.1596894,
        "battery_voltage": 2.977, "tx_power": 4, "movement_counter": 66, "measurement_sequence": 205,
    }
    assert r.dedupe_key == 205 and r.identity == {"mac": "CB:B8:33:4C:88:4F"}
    units = {m.channel: m.unit for m in r.measurements}
    assert units["temperature"] == "°C" and units["pressure"] == "hPa" and units["acceleration_z"] == "m/s²"


def test_ruuvi_max_min_invalid_vectors() -> None:
    assert values(ruuvi("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F")) == {
        "temperature": 163.835, "humidity": 163.835, "pressure": 1155.34,  # 115534 Pa
        "acceleration_x": 321.33450055, "acceleration_y": 321.33450055, "acceleration_z": 321.33450055,  # 32767 mG
        "battery_voltage": 3.646, "tx_power": 20, "movement_counter": 254, "measurement_sequence": 65534,
    }
    assert values(ruuvi("058001000000008001800180010000000000CBB8334C884F")) == {
        "temperature": -163.835, "humidity": 0.0, "pressure": 500.0,  # 50000 Pa
        "acceleration_x": -321.33450055, "acceleration_y": -321.33450055, "acceleration_z": -321.33450055,
        "battery_voltage": 1.6, "tx_power": -40, "movement_counter": 0, "measurement_sequence": 0,
    }
    r = ruuvi("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF")
    assert r.ok and r.measurements == () and r.identity == {} and r.dedupe_key is None


def test_ruuvi_sequence_dedupe_and_bad_frames() -> None:
    s = DecoderState()
    v = "0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F"
    assert not ruuvi(v, s).duplicate
    assert ruuvi(v, s).duplicate
    assert ruuvi(v[:-2], s).reject == "bad_length"
    assert ruuvi("03" + v[2:], s).reject == "unsupported_version"
    assert ruuvi("", s).reject == "truncated"
    assert s.rejects == {"bad_length": 1, "unsupported_version": 1, "truncated": 1}


# --- Xiaomi custom firmware (§2.3)
def test_atc1441_vector() -> None:
    sd = {ESS: bytes.fromhex("A4C13807FCEE00ED24290A3F08")}
    r = decode_advertisement(MAC, {}, sd, state=DecoderState())
    assert r.format == "atc1441"
    assert values(r) == {"temperature": 23.7, "humidity": 36, "battery": 41, "battery_voltage": 2.623}
    assert r.dedupe_key == 8 and r.identity == {"mac": "A4:C1:38:07:FC:EE"}


def test_pvvx_custom_frame() -> None:
    # Little-endian, MAC reversed: 23.71 °C, 36.55 %, 2623 mV, 41 %, counter 9, flags reed + temp trigger.
    payload = bytes.fromhex("EEFC0738C1A4" "4309" "470E" "3F0A" "29" "09" "09")
    r = decode_advertisement(MAC, {}, {ESS: payload}, state=DecoderState())
    assert r.format == "pvvx" and r.identity == {"mac": MAC} and r.dedupe_key == 9
    assert values(r) == {
        "temperature": 23.71, "humidity": 36.55, "battery_voltage": 2.623, "battery": 41,
        "reed_switch": True, "gpio_trigger_output": False, "threshold_trigger": False,
        "temperature_trigger_event": True, "humidity_trigger_event": False,
    }


@pytest.mark.parametrize("n", [0, 1, 12, 14, 16, 20])
def test_xiaomi_bad_length(n: int) -> None:
    s = DecoderState()
    assert decode_advertisement(MAC, {}, {ESS: bytes(n)}, state=s).reject == "bad_length"
    assert s.rejects["bad_length"] == 1


# --- Beacons (§2.5)
def test_ibeacon() -> None:
    md = bytes.fromhex("0215" "E2C56DB5DFFB48D2B060D0F5A71096E0" "0001" "0102" "C5")
    r = decode_advertisement(MAC, {0x004C: md}, {}, state=DecoderState())
    assert r.format == "ibeacon" and r.dedupe_key is None
    assert r.measurements == (
        Measurement("ibeacon_uuid", "e2c56db5-dffb-48d2-b060-d0f5a71096e0", kind="info"),
        Measurement("ibeacon_major", 1, kind="info"),
        Measurement("ibeacon_minor", 258, kind="info"),
        Measurement("measured_power", -59, "dBm", kind="info"),
    )
    # Other Apple adverts are not iBeacons and not errors.
    s = DecoderState()
    assert decode_advertisement(MAC, {0x004C: bytes.fromhex("1005")}, {}, state=s).format is None
    assert decode_advertisement(MAC, {0x004C: md[:-1]}, {}, state=s).reject == "bad_length"


def test_eddystone_uid_and_tlm() -> None:
    s = DecoderState()
    uid = bytes.fromhex("00EE" "00112233445566778899" "AABBCCDDEEFF" "0000")
    r = decode_advertisement(MAC, {}, {EDDY: uid}, state=s)
    assert r.format == "eddystone_uid"
    assert r.measurements == (
        Measurement("eddystone_namespace", "00112233445566778899", kind="info"),
        Measurement("eddystone_instance", "aabbccddeeff", kind="info"),
        Measurement("tx_power", -18, "dBm", kind="info"),
    )
    tlm = bytes.fromhex("20" "00" "0BB8" "1580" "00000064" "00002710")
    r = decode_advertisement(MAC, {}, {EDDY: tlm}, state=s)
    assert r.format == "eddystone_tlm" and r.dedupe_key == 100
    assert values(r) == {
        "battery_voltage": 3.0, "temperature": 21.5, "advertisement_count": 100, "uptime": 1000.0,
    }
    unsupported = bytes.fromhex("20" "00" "0000" "8000" "00000001" "00000000")
    assert values(decode_advertisement(MAC, {}, {EDDY: unsupported}, state=s)) == {
        "advertisement_count": 1, "uptime": 0.0,
    }
    assert decode_advertisement(MAC, {}, {EDDY: tlm[:-1]}, state=s).reject == "bad_length"
    eid = decode_advertisement(MAC, {}, {EDDY: b"\x20\x01" + tlm[2:]}, state=s)
    assert eid.reject == "unsupported_version"


def test_eddystone_url() -> None:
    sd = {EDDY: bytes.fromhex("10EB03") + b"goo.gl/S6zT6P"}
    r = decode_advertisement(MAC, {}, sd, state=DecoderState())
    assert r.format == "eddystone_url" and r.measurements == (
        Measurement("url", "https://goo.gl/S6zT6P", kind="info"), Measurement("tx_power", -21, "dBm", kind="info"),
    )


def test_unrecognised_advert_is_not_a_reject() -> None:
    s = DecoderState()
    r = decode_advertisement(MAC, {0x0006: b"\x01\x02"}, {uuid16(0x180F): b"\x50"}, state=s)
    assert r.format is None and r.reject is None and not r.ok
    assert not s.rejects


# --- GATT values (§2.4)
@pytest.mark.parametrize(
    ("uuid", "data", "expected"),
    [
        (uuid16(0x2A6E), "6608", (Measurement("temperature", 21.5, "°C"),)),
        (uuid16(0x2A6E), "0080", ()),
        (uuid16(0x2A6E), "1A95", (Measurement("temperature", -273.66, "°C"),)),
        (uuid16(0x2A6F), "BF13", (Measurement("humidity", 50.55, "%"),)),
        (uuid16(0x2A6F), "FFFF", ()),
        (uuid16(0x2A6D), "04760F00", (Measurement("pressure", 1013.252, "hPa"),)),  # 1013252 × 0.1 Pa
        (uuid16(0x2A19), "61", (Measurement("battery", 97, "%"),)),
        (uuid16(0x2A19), "6161", None),
        (uuid16(0x2A6E), "66", None),
        ("12345678-1234-5678-1234-567812345678", "00", None),
    ],
)
def test_gatt_sig_values(uuid: str, data: str, expected: object) -> None:
    assert decode_characteristic(uuid, bytes.fromhex(data)) == expected


def test_gatt_struct_layout() -> None:
    layout = StructLayout("<hHB", (Field("temperature", 0.01, "°C"), Field("co2", 1, "ppm"), Field("state")))
    assert decode_characteristic("x", bytes.fromhex("CA09E20401"), layout) == (
        Measurement("temperature", 25.06, "°C"), Measurement("co2", 1250, "ppm"), Measurement("state", 1, ""),
    )
    assert decode_characteristic("x", b"\x00", layout) is None
    with pytest.raises(ValueError, match="fields"):
        StructLayout("<hH", (Field("a"),))


# --- state bounds
def test_state_is_bounded_and_keyed_devices_survive() -> None:
    s = DecoderState(max_devices=3)
    keys = {ENC_MAC: KEY}
    assert bt(encrypt("02CA09", 50), address=ENC_MAC, state=s, keys=keys).ok
    for i in range(10):
        bt("4002CA09", address=f"00:00:00:00:00:{i:02X}", state=s)
    assert len(s.devices) == 3 and s.evictions == 8
    assert s.devices[ENC_MAC].bthome_counter == 50
    assert bt(encrypt("02CA09", 50), address=ENC_MAC, state=s, keys=keys).duplicate


# --- garbage never raises (Hypothesis)
payloads = st.binary(max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    md=st.dictionaries(st.sampled_from([0x0499, 0x004C, 0x0006]), payloads, max_size=2),
    sd=st.dictionaries(st.sampled_from([BTHOME, ESS, EDDY, uuid16(0x180F)]), payloads, max_size=3),
    keyed=st.booleans(),
)
def test_garbage_never_raises(md: dict[int, bytes], sd: dict[str, bytes], keyed: bool) -> None:
    s = DecoderState(max_devices=4)
    keys = {ENC_MAC: KEY} if keyed else None
    r = decode_advertisement(ENC_MAC, md, sd, keys=keys, state=s)
    assert r.note != "decoder_error"
    if r.reject is not None:
        assert r.reject in REJECT_REASONS and r.measurements == ()
        assert sum(s.rejects.values()) == 1
    for m in r.measurements:
        assert m.channel and "." not in m.channel and " " not in m.channel


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=30), info=st.sampled_from([0x40, 0x44, 0x41, 0x45]))
def test_bthome_garbage_bodies(body: bytes, info: int) -> None:
    s = DecoderState()
    r = bt(bytes((info,)).hex() + body.hex(), state=s, keys=None)
    assert r.note != "decoder_error"
    assert r.ok or r.reject in REJECT_REASONS


# --- one unit per channel name, and the documented table is the decoders' own metadata
CHANNELS_MD = Path(__file__).resolve().parents[2] / "edge/adapters/ble/CHANNELS.md"


def test_one_unit_per_channel_name_across_formats() -> None:
    units = channel_units()  # raises on a conflict
    assert (units["pressure"].unit, units["temperature"].unit, units["battery_voltage"].unit) == ("hPa", "°C", "V")
    assert (units["humidity"].unit, units["battery"].unit, units["distance"].unit, units["volume"].unit) == (
        "%", "%", "m", "L",
    )


def test_channels_doc_is_generated_from_the_decoders() -> None:
    assert channels_markdown() in CHANNELS_MD.read_text(encoding="utf-8"), (
        "edge/adapters/ble/CHANNELS.md is out of date: paste decoders.channels_markdown() into it"
    )


DECLARED_VECTORS = [  # (manufacturer data, service data): every format's vectors from this file
    ({0x0499: bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")}, {}),
    ({0x004C: bytes.fromhex("0215E2C56DB5DFFB48D2B060D0F5A71096E000010102C5")}, {}),
    ({}, {EDDY: bytes.fromhex("00EE00112233445566778899AABBCCDDEEFF0000")}),
    ({}, {EDDY: bytes.fromhex("10EB03") + b"goo.gl/S6zT6P"}),
    ({}, {EDDY: bytes.fromhex("20000BB8158000000064" "00002710")}),
    ({}, {ESS: bytes.fromhex("A4C13807FCEE00ED24290A3F08")}),
    ({}, {ESS: bytes.fromhex("EEFC0738C1A44309470E3F0A290909")}),
    ({}, {BTHOME: bytes.fromhex("40" "3A01" "3C020A" "3B0002" "505d396164" "530C48656C6C6F20576F726C6421")}),
    ({}, {BTHOME: bytes.fromhex("40" "540C48656C6C6F20576F726C6421" "F100010204")}),
    *(({}, {BTHOME: bytes.fromhex("40" + v[0])}) for v in BTHOME_VECTORS),
]


@pytest.mark.parametrize(("md", "sd"), DECLARED_VECTORS)
def test_decoders_emit_only_declared_channels(md: dict[int, bytes], sd: dict[str, bytes]) -> None:
    r = decode_advertisement(MAC, md, sd, state=DecoderState())
    assert r.ok and r.measurements and r.format is not None
    declared = FORMAT_CHANNELS[r.format]
    for m in r.measurements:
        spec = declared[m.channel]
        assert (m.unit, m.kind) == (spec.unit, spec.kind), m


def test_gatt_sig_channels_are_declared() -> None:
    for uuid, sig in SIG_CHARACTERISTICS.items():
        (m,) = decode_characteristic(uuid, bytes(struct.calcsize(sig.fmt))) or (None,)
        assert m is not None and FORMAT_CHANNELS["gatt"][m.channel].unit == m.unit, uuid
