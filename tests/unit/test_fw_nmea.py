"""NMEA 0183 GGA/RMC decoding."""

from __future__ import annotations

from datetime import date, time

import pytest
from hypothesis import given

from firmware_bridge.nmea import (
    KNOT_MS,
    ChecksumError,
    Fix,
    NmeaDecoder,
    NmeaError,
    UnsupportedSentence,
    nmea_checksum,
    parse_sentence,
)
from firmware_bridge.readings import Reading
from tests.unit.fw.split import cut, run, split_points, ways

# Widely published example sentences (gpsd "NMEA Revealed"; NMEA 0183 reference examples).
GGA = b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"
RMC = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
GN_RMC_S_W = b"$GNRMC,001031.00,A,3352.1234,S,15112.5678,W,0.5,,010126,,,A*71"


def sentence(body: str) -> bytes:
    return b"$" + body.encode() + b"*" + f"{nmea_checksum(body.encode()):02X}".encode()


def test_checksums_of_reference_sentences() -> None:
    assert nmea_checksum(GGA[1:-3]) == 0x47
    assert nmea_checksum(RMC[1:-3]) == 0x6A


def test_parse_gga() -> None:
    fix = parse_sentence(GGA)
    assert fix == Fix(
        talker="GP",
        sentence="GGA",
        time_utc=time(12, 35, 19),
        lat=pytest.approx(48 + 7.038 / 60),
        lon=pytest.approx(11 + 31.0 / 60),
        alt_m=545.4,
        fix_quality=1,
        satellites=8,
        hdop=0.9,
        valid=True,
    )


def test_parse_rmc() -> None:
    fix = parse_sentence(RMC)
    assert fix.date_utc == date(2094, 3, 23)  # two-digit year "94" read as 20yy; documented
    assert fix.speed_kn == 22.4 and fix.speed_ms == pytest.approx(22.4 * 1852 / 3600)
    assert fix.course_deg == 84.4 and fix.valid


def test_parse_rmc_southern_western_gn_talker() -> None:
    body = GN_RMC_S_W[1 : GN_RMC_S_W.index(b"*")].decode()
    fix = parse_sentence(sentence(body))
    assert fix.talker == "GN"
    assert fix.lat == pytest.approx(-(33 + 52.1234 / 60))
    assert fix.lon == pytest.approx(-(151 + 12.5678 / 60))
    assert fix.course_deg is None and fix.time_utc == time(0, 10, 31)
    assert fix.ts == 1767226231.0  # 2026-01-01T00:10:31Z


def test_no_fix_gga_has_empty_fields() -> None:
    fix = parse_sentence(sentence("GPGGA,000001.00,,,,,0,00,99.99,,,,,,"))
    assert fix.lat is None and fix.lon is None and fix.fix_quality == 0 and not fix.valid


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (GGA[:-2] + b"48", ChecksumError),
        (GGA[:-3], NmeaError),  # missing checksum
        (GGA[:-2] + b"4", NmeaError),
        (GGA[:-2] + b"zz", NmeaError),
        (b"GPGGA,1*00", NmeaError),
        (sentence("GPGSV,3,1,11,03,03,111,00"), UnsupportedSentence),
        (sentence("PUBX,00,1"), UnsupportedSentence),
        (sentence("GPGGA,123519,4807.038,N"), NmeaError),
        (sentence("GPGGA,123519,4860.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), NmeaError),
        (sentence("GPGGA,123519,9100.000,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), NmeaError),
        (sentence("GPGGA,123519,4807.038,X,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), NmeaError),
        (sentence("GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,"), NmeaError),
        (sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,nan,M,46.9,M,,"), NmeaError),
        (sentence("GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"), NmeaError),
        (sentence("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W"), NmeaError),
        ("$GPGGA,é*00".encode(), NmeaError),
    ],
)
def test_parse_errors(line: bytes, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        parse_sentence(line)
    assert type(info.value) is error


def test_checksum_optional_when_configured() -> None:
    assert parse_sentence(GGA[:-3], require_checksum=False).satellites == 8


STREAM = (
    b"$GPTXT,01,01,02,ANTSTATUS=OK*3B\r\n"  # valid, unsupported
    + GGA
    + b"\r\n"  # before any RMC: no date -> ts None
    + RMC[:-1]
    + b"B\r\n"  # checksum error
    + sentence("GNRMC,235959.50,A,4807.038,N,01131.000,E,1.0,90.0,311226,,")
    + b"\r\n"
    + b"garbage line\r\n"
    + sentence("GNGGA,000000.50,4807.038,N,01131.000,E,2,12,0.5,10.0,M,46.9,M,,")
    + b"\r\n"
)


def test_decoder_stream_every_way() -> None:
    lat, lon = 48 + 7.038 / 60, 11 + 31.0 / 60
    day_end = 1798761599.5  # 2026-12-31T23:59:59.5Z
    expected = [
        Reading("lat", lat, "deg"),
        Reading("lon", lon, "deg"),
        Reading("alt", 545.4, "m"),
        Reading("fix_quality", 1),
        Reading("satellites", 8),
        Reading("hdop", 0.9),
        Reading("lat", lat, "deg", ts=day_end),
        Reading("lon", lon, "deg", ts=day_end),
        Reading("speed_kn", 1.0, "kn", ts=day_end),
        Reading("speed_ms", KNOT_MS, "m/s", ts=day_end),
        Reading("course", 90.0, "deg", ts=day_end),
        Reading("valid", True, ts=day_end),
        # GGA just after midnight: the RMC's date rolls over to 2027-01-01.
        Reading("lat", lat, "deg", ts=day_end + 1),
        Reading("lon", lon, "deg", ts=day_end + 1),
        Reading("alt", 10.0, "m", ts=day_end + 1),
        Reading("fix_quality", 2, ts=day_end + 1),
        Reading("satellites", 12, ts=day_end + 1),
        Reading("hdop", 0.5, ts=day_end + 1),
    ]
    for chunks in ways(STREAM):
        out, counters = run(NmeaDecoder, chunks)
        assert len(out) == len(expected)
        for got, want in zip(out, expected, strict=True):
            assert (got.channel, got.unit, got.device, got.ts) == (want.channel, want.unit, want.device, want.ts)
            assert got.value == pytest.approx(want.value) and type(got.value) is type(want.value)
        assert counters == {
            "lines_ok": 3,
            "lines_bad": 1,
            "checksum_errors": 1,
            "unsupported": 1,
            "bytes_dropped": len(b"$GPTXT,01,01,02,ANTSTATUS=OK*3B") + len(RMC) + len(b"garbage line"),
            "overflows": 0,
        }


@given(split_points)
def test_decoder_random_splits(points: list[int]) -> None:
    assert run(NmeaDecoder, cut(STREAM, points)) == run(NmeaDecoder, [STREAM])


def test_decoder_overflow() -> None:
    dec = NmeaDecoder(max_line=90)
    assert dec.feed(b"$" + b"A" * 200 + b"\r\n" + GGA + b"\r\n")[-1] == Reading("hdop", 0.9)
    assert dec.overflows == 1 and dec.bytes_dropped == 202
