"""LineBuffer, the jsonl and lines codecs, Reading conversion and the codec registry."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge._linebuf import LineBuffer
from firmware_bridge.codecs import CODEC_NAMES, get_codec
from firmware_bridge.frames import FrameDecoder
from firmware_bridge.jsonl import JsonlDecoder
from firmware_bridge.lines import LinesDecoder
from firmware_bridge.nats import NatsPassthrough
from firmware_bridge.nmea import NmeaDecoder
from firmware_bridge.readings import Reading, convert_scalar
from tests.unit.fw.split import cut, run, split_points, ways


def test_linebuffer_crlf_lf_blank_and_overflow() -> None:
    data = b"a\r\nbb\n\r\n\n" + b"x" * 9 + b"\r\ncc\n" + b"y" * 20 + b"\ndd"
    for chunks in ways(data):
        buf = LineBuffer(max_line=8)
        lines = [line for c in chunks for line in buf.feed(c)]
        assert lines == [b"a", b"bb", b"cc"]
        assert buf.overflows == 2
        assert buf.bytes_dropped == 9 + 1 + 20  # the 9 x's with their \r, and the 20 y's
        assert buf.pending == 2  # "dd" awaits its newline


def test_linebuffer_exact_limit_accepted() -> None:
    buf = LineBuffer(max_line=4)
    assert buf.feed(b"abcd\r\nabcd\nabcde\n") == [b"abcd", b"abcd"]
    assert buf.overflows == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("21", 21),
        ("-3", -3),
        ("+7", 7),
        ("21.5", 21.5),
        ("1e3", 1000.0),
        ("-0.25", -0.25),
        ("ok", "ok"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1_000", "1_000"),
        ("", ""),
        ("0x10", "0x10"),
        ("٣", "٣"),
    ],
)
def test_convert_scalar(text: str, value: object) -> None:
    got = convert_scalar(text)
    assert got == value and type(got) is type(value)


JSONL = (
    b'{"id": "node7", "ts": 1790000000.5, "t": 21.5, "h": 40, "ok": true, "fw": "1.2"}\n'
    b"not json\n"
    b"[1, 2]\n"
    b'{"t": NaN}\n'
    b'{"id": 12, "t": -1.25}\r\n'
    b"\xff\xfe\n"
    b'{"id": "n8", "ts": "2026-11-26T12:00:00Z", "t": 1}\n'
    b'{"ts": "yesterday", "t": 1}\n'
)


def test_jsonl_defaults_every_way() -> None:
    expected = [
        Reading("t", 21.5, "°C", "node7", 1790000000.5),
        Reading("h", 40, None, "node7", 1790000000.5),
        Reading("t", -1.25, "°C", "12", None),
        Reading("t", 1, "°C", "n8", 1795694400.0),
    ]
    for chunks in ways(JSONL):
        out, counters = run(lambda: JsonlDecoder(units={"t": "°C"}, ts_field="ts"), chunks)
        assert out == expected
        assert counters == {
            "lines_ok": 3,
            "lines_bad": 5,
            "replies": 0,
            "bytes_dropped": len(b"not json[1, 2]" + b'{"t": NaN}' + b"\xff\xfe" + b'{"ts": "yesterday", "t": 1}'),
            "overflows": 0,
        }


@given(split_points)
def test_jsonl_random_splits(points: list[int]) -> None:
    whole = run(lambda: JsonlDecoder(ts_field="ts"), [JSONL])
    assert run(lambda: JsonlDecoder(ts_field="ts"), cut(JSONL, points)) == whole


def test_jsonl_explicit_channels_admit_strings_and_bools() -> None:
    dec = JsonlDecoder(channels=["ok", "fw", "missing", "t"], device_field=None)
    ts = 1790000000.5  # ts_field defaults to "ts"
    assert dec.feed(JSONL.split(b"\n")[0] + b"\n") == [
        Reading("ok", True, ts=ts),
        Reading("fw", "1.2", ts=ts),
        Reading("t", 21.5, ts=ts),
    ]


def test_jsonl_deep_nesting_and_overflow_are_counted() -> None:
    dec = JsonlDecoder(max_line=5000)
    assert dec.feed(b"[" * 4000 + b"\n" + b'{"a":1}\n') == [Reading("a", 1)]
    assert dec.lines_bad == 1
    small = JsonlDecoder(max_line=10)
    assert small.feed(b'{"aaaaaaaaaa": 1}\n{"b":2}\n') == [Reading("b", 2)]
    assert small.overflows == 1 and small.lines_bad == 0


LINES = b"T=21.5 H=40 dev=n1\r\nT=bad H=1e2\ngarbage\n\xff\nT=-3 dev=n2\n"
PATTERN = r"T=(?P<temperature>\S+)(?: H=(?P<humidity>\S+))?(?: dev=(?P<device>\w+))?"


def test_lines_every_way() -> None:
    expected = [
        Reading("temperature", 21.5, "°C", "n1"),
        Reading("humidity", 40, "%", "n1"),
        Reading("temperature", "bad", "°C"),
        Reading("humidity", 100.0, "%"),
        Reading("temperature", -3, "°C", "n2"),
    ]
    for chunks in ways(LINES):
        out, counters = run(lambda: LinesDecoder(PATTERN, units={"temperature": "°C", "humidity": "%"}), chunks)
        assert out == expected
        assert counters == {"lines_ok": 3, "lines_bad": 2, "bytes_dropped": 8, "overflows": 0}


def test_lines_fullmatch() -> None:
    dec = LinesDecoder(r"T=(?P<t>\d+)", fullmatch=True)
    assert dec.feed(b"T=1\nxT=2\nT=3x\n") == [Reading("t", 1)]
    assert dec.lines_bad == 2


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("serialx", {}, "codec: unknown codec 'serialx'"),
        ("lines", {}, "pattern: required option of codec 'lines' is missing"),
        ("lines", {"pattern": "("}, "pattern: does not compile"),
        ("lines", {"pattern": "(a)"}, "pattern: must have at least one named group"),
        ("lines", {"pattern": "(?P<a>x)", "unit": {}}, "unit: unknown option for codec 'lines'"),
        ("jsonl", {"max_line": True}, "max_line: codec 'jsonl' expects an integer, got bool"),
        ("jsonl", {"max_line": 0}, "max_line: must be a positive integer"),
        ("jsonl", {"units": {"t": 1}}, "units: must be a table"),
        ("jsonl", {"channels": "t"}, "channels: codec 'jsonl' expects a list of strings, got str"),
        ("jsonl", {"channels": ["t", 3]}, "channels: must be a list of non-empty strings"),
        ("frames", {"max_payload": "big"}, "max_payload: codec 'frames' expects an integer"),
        ("nmea", {"require_checksum": 1}, "require_checksum: codec 'nmea' expects a boolean"),
        ("nats", {"x": 1}, "x: unknown option for codec 'nats' \\(known options: none\\)"),
    ],
)
def test_registry_errors_name_the_key(name: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}"):
        get_codec(name, options)


def test_registry_builds_every_codec() -> None:
    assert CODEC_NAMES == ("nats", "frames", "jsonl", "nmea", "lines")
    assert isinstance(get_codec("nats", {}), NatsPassthrough)
    assert isinstance(get_codec("frames", {"max_payload": 100}), FrameDecoder)
    assert isinstance(get_codec("jsonl", {"channels": ["t"], "ts_field": None}), JsonlDecoder)
    assert isinstance(get_codec("nmea", {"require_checksum": False}), NmeaDecoder)
    lines = get_codec("lines", {"pattern": "(?P<t>x)"})
    assert lines.output == "readings" and get_codec("frames").output == "protocol"


def test_nats_passthrough() -> None:
    codec = get_codec("nats", {})
    assert codec.feed(b"PUB a 1\r\n") == [b"PUB a 1\r\n"]
    assert codec.feed(b"") == []
    assert codec.counters() == {"bytes_in": 9, "bytes_dropped": 0, "overflows": 0}


@settings(max_examples=200)
@given(st.binary(max_size=1500), split_points, st.sampled_from(["jsonl", "lines", "nmea", "frames", "nats"]))
def test_garbage_never_raises(garbage: bytes, points: list[int], name: str) -> None:
    opts = {"pattern": r"(?P<v>\d+)"} if name == "lines" else {}
    codec = get_codec(name, opts)
    for chunk in cut(garbage, points):
        codec.feed(chunk)
    assert all(v >= 0 for v in codec.counters().values())
