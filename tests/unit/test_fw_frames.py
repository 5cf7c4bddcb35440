"""COBS, CRC-16/CCITT-FALSE and the FrameDecoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.cobs import CobsDecodeError, cobs_decode, cobs_encode
from firmware_bridge.crc16 import CRC16_CHECK, crc16_ccitt_false
from firmware_bridge.frames import FrameDecoder, encode_frame, max_encoded_len
from tests.unit.fw.split import cut, run, split_points, ways

SEQ254 = bytes(range(1, 255))

# Cheshire & Baker's examples as collected on Wikipedia ("Consistent Overhead Byte Stuffing"), without
# the 0x00 delimiter. For a final run of exactly 254 bytes we emit the paper's trailing 0x01 block.
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (SEQ254, b"\xff" + SEQ254 + b"\x01"),
    (b"\x00" + SEQ254[:-1], b"\x01\xfe" + SEQ254[:-1]),
    (SEQ254 + b"\xff", b"\xff" + SEQ254 + b"\x02\xff"),
]


def test_crc16_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == CRC16_CHECK == 0x29B1
    assert crc16_ccitt_false(b"") == 0xFFFF
    assert crc16_ccitt_false(b"6789", crc16_ccitt_false(b"12345")) == 0x29B1


@given(st.binary(max_size=300))
def test_crc16_residue_is_zero(data: bytes) -> None:
    # A message followed by its own (non-reflected, xorout 0) CRC leaves remainder 0: the catalogue residue.
    assert crc16_ccitt_false(data + crc16_ccitt_false(data).to_bytes(2, "big")) == 0


@pytest.mark.parametrize(("raw", "encoded"), COBS_VECTORS)
def test_cobs_vectors(raw: bytes, encoded: bytes) -> None:
    assert cobs_encode(raw) == encoded
    assert cobs_decode(encoded) == raw


def test_cobs_decode_accepts_form_without_trailing_block() -> None:
    assert cobs_decode(b"\xff" + SEQ254) == SEQ254


@pytest.mark.parametrize("bad", [b"\x00", b"\x03\x11", b"\x02\x11\x00", b"\x05\x11\x22"])
def test_cobs_decode_errors(bad: bytes) -> None:
    with pytest.raises(CobsDecodeError):
        cobs_decode(bad)


@given(st.binary(max_size=1200))
def test_cobs_roundtrip_and_bound(data: bytes) -> None:
    enc = cobs_encode(data)
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(enc) == data


def test_encode_frame_layout() -> None:
    frame = encode_frame(b"PUB a 2\r\nhi\r\n")
    assert frame.endswith(b"\x00") and 0 not in frame[:-1]
    raw = cobs_decode(frame[:-1])
    assert raw[:-2] == b"PUB a 2\r\nhi\r\n"
    assert int.from_bytes(raw[-2:], "big") == crc16_ccitt_false(b"PUB a 2\r\nhi\r\n")
    assert encode_frame(b"123456789") == cobs_encode(b"123456789\x29\xb1") + b"\x00"


PAYLOADS = [b"PUB s.t 4\r\n21.5\r\n", b"", b"\x00\x00binary\x00", bytes(range(256)) * 3, b"PING\r\n"]


def test_decoder_good_stream_every_way() -> None:
    stream = b"".join(encode_frame(p) for p in PAYLOADS)
    for chunks in ways(stream):
        out, counters = run(FrameDecoder, chunks)
        assert out == PAYLOADS
        assert counters == {
            "frames_ok": 5,
            "frames_bad": 0,
            "cobs_errors": 0,
            "crc_errors": 0,
            "too_short": 0,
            "bytes_dropped": 0,
            "overflows": 0,
        }


def corrupted_stream() -> tuple[bytes, list[bytes], dict[str, int]]:
    good1, good2, good3 = encode_frame(b"first"), encode_frame(b"second"), encode_frame(b"third")
    crc_bad = bytearray(encode_frame(b"flipped"))
    crc_bad[3] ^= 0x01
    cobs_bad = b"\x09ab"  # code byte runs past the end of the frame
    short = b"\x02\x07"  # decodes to 1 byte: shorter than the CRC
    stream = b"\x00\x00" + good1 + bytes(crc_bad) + cobs_bad + b"\x00" + good2 + short + b"\x00" + b"\x00" + good3
    counters = {
        "frames_ok": 3,
        "frames_bad": 3,
        "cobs_errors": 1,
        "crc_errors": 1,
        "too_short": 1,
        "bytes_dropped": len(crc_bad) - 1 + len(cobs_bad) + len(short),
        "overflows": 0,
    }
    return stream, [b"first", b"second", b"third"], counters


def test_decoder_skips_bad_frames_and_delivers_the_next() -> None:
    stream, payloads, counters = corrupted_stream()
    for chunks in ways(stream):
        assert run(FrameDecoder, chunks) == (payloads, counters)


@given(split_points)
def test_decoder_random_splits(points: list[int]) -> None:
    stream, payloads, counters = corrupted_stream()
    assert run(FrameDecoder, cut(stream, points)) == (payloads, counters)


def test_decoder_overflow_is_bounded_and_counted() -> None:
    big = encode_frame(b"x" * 100)
    stream = encode_frame(b"ok1") + big + encode_frame(b"ok2")
    for chunks in ways(stream):
        dec = FrameDecoder(max_payload=50)
        out = [p for c in chunks for p in dec.feed(c)]
        assert out == [b"ok1", b"ok2"]
        assert dec.overflows == 1 and dec.frames_bad == 1 and dec.frames_ok == 2
        assert dec.bytes_dropped == len(big) - 1
        assert dec.pending == 0
    assert max_encoded_len(50) == 53


def test_decoder_pending_never_exceeds_bound() -> None:
    dec = FrameDecoder(max_payload=10)
    for _ in range(100):
        dec.feed(b"\x01" * 7)
        assert dec.pending <= dec.max_encoded
    assert dec.overflows == 1
    assert dec.feed(b"\x00" + encode_frame(b"after")) == [b"after"]


@given(st.lists(st.binary(max_size=400), max_size=8), split_points)
def test_decoder_roundtrip_random(payloads: list[bytes], points: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in payloads)
    out, counters = run(FrameDecoder, cut(stream, points))
    assert out == payloads
    assert counters["frames_ok"] == len(payloads) and counters["frames_bad"] == 0


@settings(max_examples=300)
@given(st.binary(max_size=2000), split_points)
def test_decoder_garbage_never_raises(garbage: bytes, points: list[int]) -> None:
    dec = FrameDecoder(max_payload=64)
    for chunk in cut(garbage, points):
        dec.feed(chunk)
    c = dec.counters()
    assert c["frames_bad"] == c["cobs_errors"] + c["crc_errors"] + c["too_short"] + c["overflows"]
    assert dec.pending <= dec.max_encoded
    # Whatever the noise did, the next good frame after a delimiter gets through.
    assert dec.feed(b"\x00" + encode_frame(b"resync")) == [b"resync"]


def test_decoder_rejects_bad_option() -> None:
    with pytest.raises(ValueError, match="max_payload"):
        FrameDecoder(max_payload=0)
