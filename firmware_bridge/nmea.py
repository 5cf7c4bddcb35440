"""NMEA 0183 GGA and RMC sentences -> position fixes -> readings.

Sentence form (NMEA 0183 v4.11, section 5.3): ``$<talker><type>,<fields>*<hh>\\r\\n`` where ``hh`` is
the XOR of every byte between ``$`` and ``*``, as two hex digits. Any two-letter talker is accepted
(GP GPS, GL GLONASS, GA Galileo, GB/BD BeiDou, GN multi-constellation, ...). The standard limits a
sentence to 82 characters, but receivers with high-precision or proprietary fields exceed it, so the
line bound is larger (``DEFAULT_MAX_LINE``).

GGA (fix data)::  $GPGGA,hhmmss.ss,ddmm.mmmm,N,dddmm.mmmm,E,q,nn,hdop,alt,M,sep,M,age,stn*hh
RMC (minimum)::   $GPRMC,hhmmss.ss,A,ddmm.mmmm,N,dddmm.mmmm,E,spd_kn,course,ddmmyy,mv,E[,mode[,nav]]*hh

Empty fields (no fix yet) give ``None``. GGA carries no date: the decoder applies the date of the last
RMC it saw (rolling over midnight when GGA's time is more than 12 h before that RMC's time), so GGA
readings have ``ts=None`` until an RMC has been seen.

Counters (each bad line lands in exactly one): ``checksum_errors`` (well-formed, wrong checksum),
``lines_bad`` (garbled: no ``$``, no/short checksum, non-ASCII, bad field), ``unsupported`` (a valid
sentence of another type, e.g. GSV), plus ``overflows``/``bytes_dropped``. ``feed`` never raises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Final, Literal

from firmware_bridge._linebuf import LineBuffer
from firmware_bridge.readings import Reading

__all__ = [
    "DEFAULT_MAX_LINE",
    "ChecksumError",
    "Fix",
    "NmeaDecoder",
    "NmeaError",
    "UnsupportedSentence",
    "nmea_checksum",
    "parse_sentence",
]

DEFAULT_MAX_LINE: Final = 256
# 1 international knot = 1852 m / 3600 s (exact, BIPM SI brochure table 8).
KNOT_MS: Final = 1852 / 3600


class NmeaError(ValueError):
    """A garbled sentence (structure, checksum syntax or field values)."""


class ChecksumError(NmeaError):
    """A well-formed sentence whose checksum does not match."""


class UnsupportedSentence(NmeaError):
    """A valid sentence of a type this decoder does not handle."""


@dataclass(frozen=True, slots=True)
class Fix:
    """One GGA or RMC sentence, decoded. Latitude/longitude are signed decimal degrees (S/W negative)."""

    talker: str
    sentence: Literal["GGA", "RMC"]
    time_utc: time | None
    date_utc: date | None = None
    lat: float | None = None
    lon: float | None = None
    alt_m: float | None = None
    fix_quality: int | None = None
    satellites: int | None = None
    hdop: float | None = None
    speed_kn: float | None = None
    course_deg: float | None = None
    valid: bool = False  # RMC status A, or GGA quality > 0

    @property
    def speed_ms(self) -> float | None:
        return None if self.speed_kn is None else self.speed_kn * KNOT_MS

    @property
    def ts(self) -> float | None:
        """Epoch seconds when both date and time are known."""
        if self.time_utc is None or self.date_utc is None:
            return None
        return datetime.combine(self.date_utc, self.time_utc, tzinfo=UTC).timestamp()


def nmea_checksum(body: bytes) -> int:
    """XOR of all bytes of ``body`` (the text between ``$`` and ``*``)."""
    c = 0
    for b in body:
        c ^= b
    return c


def _float(field: str, name: str) -> float | None:
    if not field:
        return None
    if "_" in field:  # float() accepts "1_0"; NMEA does not
        raise NmeaError(f"bad {name}")
    try:
        v = float(field)
    except ValueError:
        raise NmeaError(f"bad {name}") from None
    if not math.isfinite(v):
        raise NmeaError(f"bad {name}")
    return v


def _int(field: str, name: str) -> int | None:
    if not field:
        return None
    if not (field.isascii() and field.isdigit() and len(field) <= 6):
        raise NmeaError(f"bad {name}")
    return int(field)


def _time(field: str) -> time | None:
    if not field:
        return None
    hh, mm, ss = field[0:2], field[2:4], field[4:]
    if len(field) < 6 or not (hh + mm).isdigit():
        raise NmeaError("bad time")
    sec = _float(ss, "time")
    if sec is None or not 0 <= sec < 61 or not ss[:2].isdigit():  # 60 = leap second
        raise NmeaError("bad time")
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise NmeaError("bad time")
    whole = min(int(sec), 59)
    micro = min(round((sec - int(sec)) * 1_000_000), 999_999)
    return time(h, m, whole, micro)


def _date(field: str) -> date | None:
    if not field:
        return None
    if len(field) != 6 or not field.isdigit():
        raise NmeaError("bad date")
    d, m, y = int(field[0:2]), int(field[2:4]), int(field[4:6])
    # Two-digit year: NMEA 0183 has no century; receivers built after 2000 report 20yy.
    try:
        return date(2000 + y, m, d)
    except ValueError:
        raise NmeaError("bad date") from None


def _coord(value: str, hemi: str, deg_digits: int, neg: str, pos: str, limit: float) -> float | None:
    """``ddmm.mmmm``/``dddmm.mmmm`` + hemisphere -> signed decimal degrees."""
    if not value and not hemi:
        return None
    whole = value.split(".", 1)[0]
    if hemi not in (neg, pos) or len(whole) != deg_digits + 2 or not whole.isdigit():
        raise NmeaError("bad coordinate")
    minutes = _float(value[deg_digits:], "coordinate")
    degrees = int(value[:deg_digits])
    if minutes is None or not 0 <= minutes < 60:
        raise NmeaError("bad coordinate")
    result = degrees + minutes / 60
    if result > limit:
        raise NmeaError("bad coordinate")
    return -result if hemi == neg else result


def parse_sentence(line: bytes, require_checksum: bool = True) -> Fix:
    """Decode one NMEA sentence (without CR/LF).

    Raises:
        ChecksumError: the checksum does not match.
        UnsupportedSentence: valid but neither GGA nor RMC.
        NmeaError: anything else wrong.
    """
    if not line.startswith(b"$") or not line.isascii():
        raise NmeaError("not an NMEA sentence")
    star = line.rfind(b"*")
    if star >= 0:
        body, given = line[1:star], line[star + 1 :].strip()
        if len(given) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in given):
            raise NmeaError("bad checksum field")
        if int(given, 16) != nmea_checksum(body):
            raise ChecksumError("checksum mismatch")
    elif require_checksum:
        raise NmeaError("missing checksum")
    else:
        body = line[1:]
    fields = body.decode("ascii").split(",")
    address = fields[0]
    if len(address) != 5 or not address.isalnum():
        raise UnsupportedSentence(address) if address.startswith("P") else NmeaError("bad address")
    talker, kind = address[:2], address[2:]
    if kind == "GGA":
        return _gga(talker, fields)
    if kind == "RMC":
        return _rmc(talker, fields)
    raise UnsupportedSentence(address)


def _gga(talker: str, f: list[str]) -> Fix:
    if len(f) < 15:
        raise NmeaError("GGA needs 14 fields")
    quality = _int(f[6], "fix quality")
    alt = _float(f[9], "altitude")
    if alt is not None and f[10] not in ("M", ""):
        raise NmeaError("altitude unit is not metres")
    return Fix(
        talker=talker,
        sentence="GGA",
        time_utc=_time(f[1]),
        lat=_coord(f[2], f[3], 2, "S", "N", 90.0),
        lon=_coord(f[4], f[5], 3, "W", "E", 180.0),
        fix_quality=quality,
        satellites=_int(f[7], "satellites"),
        hdop=_float(f[8], "hdop"),
        alt_m=alt,
        valid=bool(quality),
    )


def _rmc(talker: str, f: list[str]) -> Fix:
    if len(f) < 12:
        raise NmeaError("RMC needs at least 11 fields")
    if f[2] not in ("A", "V"):
        raise NmeaError("bad RMC status")
    return Fix(
        talker=talker,
        sentence="RMC",
        time_utc=_time(f[1]),
        lat=_coord(f[3], f[4], 2, "S", "N", 90.0),
        lon=_coord(f[5], f[6], 3, "W", "E", 180.0),
        speed_kn=_float(f[7], "speed"),
        course_deg=_float(f[8], "course"),
        date_utc=_date(f[9]),
        valid=f[2] == "A",
    )


class NmeaDecoder:
    """Decode a stream of NMEA 0183 sentences into readings.

    Channels (unit): ``lat``/``lon`` (deg), ``alt`` (m), ``fix_quality``, ``satellites``, ``hdop``
    (GGA); ``lat``/``lon``, ``speed_kn`` (kn), ``speed_ms`` (m/s), ``course`` (deg), ``valid`` (RMC).
    Only fields present in the sentence are reported. ``last_fix`` holds the latest decoded ``Fix``.
    """

    output: Final[Literal["readings"]] = "readings"

    def __init__(self, max_line: int = DEFAULT_MAX_LINE, require_checksum: bool = True) -> None:
        if not isinstance(require_checksum, bool):
            raise ValueError("require_checksum: must be a boolean")
        self.require_checksum: Final = require_checksum
        self._lines = LineBuffer(max_line)
        self._date: date | None = None
        self._date_time: time | None = None
        self.last_fix: Fix | None = None
        self.lines_ok = 0
        self.lines_bad = 0
        self.checksum_errors = 0
        self.unsupported = 0

    @property
    def bytes_dropped(self) -> int:
        return self._lines.bytes_dropped

    @property
    def overflows(self) -> int:
        return self._lines.overflows

    def counters(self) -> dict[str, int]:
        """Snapshot of all counters, for metrics."""
        return {
            "lines_ok": self.lines_ok,
            "lines_bad": self.lines_bad,
            "checksum_errors": self.checksum_errors,
            "unsupported": self.unsupported,
            "bytes_dropped": self.bytes_dropped,
            "overflows": self.overflows,
        }

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reading]:
        """Consume ``data``; return readings of every complete valid GGA/RMC sentence, in order."""
        out: list[Reading] = []
        for line in self._lines.feed(data):
            try:
                fix = parse_sentence(line.strip(), self.require_checksum)
            except ChecksumError:
                self.checksum_errors += 1
            except UnsupportedSentence:
                self.unsupported += 1
            except NmeaError:
                self.lines_bad += 1
            else:
                self.lines_ok += 1
                out.extend(self._readings(self._dated(fix)))
                continue
            self._lines.bytes_dropped += len(line)
        return out

    def _dated(self, fix: Fix) -> Fix:
        if fix.sentence == "RMC":
            if fix.date_utc is not None and fix.time_utc is not None:
                self._date, self._date_time = fix.date_utc, fix.time_utc
        elif fix.time_utc is not None and self._date is not None and self._date_time is not None:
            d = self._date
            gap = _seconds(self._date_time) - _seconds(fix.time_utc)
            if gap > 12 * 3600:  # GGA just after midnight, last RMC just before it
                d += timedelta(days=1)
            elif gap < -12 * 3600:  # GGA just before midnight, RMC already on the next day
                d -= timedelta(days=1)
            fix = replace(fix, date_utc=d)
        self.last_fix = fix
        return fix

    @staticmethod
    def _readings(fix: Fix) -> list[Reading]:
        ts = fix.ts
        pairs: list[tuple[str, float | int | bool | None, str | None]] = [
            ("lat", fix.lat, "deg"),
            ("lon", fix.lon, "deg"),
        ]
        if fix.sentence == "GGA":
            pairs += [
                ("alt", fix.alt_m, "m"),
                ("fix_quality", fix.fix_quality, None),
                ("satellites", fix.satellites, None),
                ("hdop", fix.hdop, None),
            ]
        else:
            pairs += [
                ("speed_kn", fix.speed_kn, "kn"),
                ("speed_ms", fix.speed_ms, "m/s"),
                ("course", fix.course_deg, "deg"),
                ("valid", fix.valid, None),
            ]
        return [Reading(ch, v, unit, None, ts) for ch, v, unit in pairs if v is not None]


def _seconds(t: time) -> float:
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
