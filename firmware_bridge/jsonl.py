"""JSON Lines: one JSON object per line, mapped to readings by configuration.

Example line: ``{"id": "node7", "ts": 1790000000.5, "t": 21.5, "h": 40.2, "fw": "1.2"}``. With the
defaults (``device_field="id"``, ``ts_field="ts"``) and the default channel selection (every numeric key
that is not the device or time field; booleans are not numeric here) it yields ``Reading("t", 21.5, ...)``
and ``Reading("h", 40.2, ...)`` of device ``node7`` at the line's time. Listing ``channels`` explicitly
also admits string and boolean values. ``ts_field`` defaults to ``"ts"`` because a device's timestamp
published as a reading channel of its own (``dev...ts``) is never what anyone wants; ``""`` (TOML has no
null) or ``None`` turns either field off, and the off time field is then an ordinary key.

A line that is not UTF-8, not JSON (RFC 8259: NaN/Infinity are rejected), nested beyond the
recursion limit, not an object, or whose time field is unusable, is counted in ``lines_bad`` and
skipped (its bytes added to ``bytes_dropped``). Overlong lines are counted in ``overflows`` (see
``LineBuffer``). ``feed`` never raises.

A line carrying ``cid`` and ``ok`` is a device's answer to a command (:mod:`firmware_bridge.commands`):
``feed`` returns it as a :class:`~firmware_bridge.commands.CommandReply` among the readings, in order,
counted in ``replies``, never as readings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from firmware_bridge._linebuf import DEFAULT_MAX_LINE, LineBuffer
from firmware_bridge.commands import CID_FIELD, CommandReply, parse_reply
from firmware_bridge.readings import Reading, is_str_table

__all__ = ["JsonlDecoder"]


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN/Infinity/-Infinity by default; RFC 8259 does not, and a reading that
    # carries one could not be re-encoded as JSON by the broker.
    raise ValueError(f"non-finite number {name}")


def _parse_ts(value: object) -> float | None:
    """Epoch seconds from a number or an ISO-8601 string (naive = UTC); None if unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.timestamp()
    return None


class JsonlDecoder:
    """Decode JSON Lines into readings.

    Args:
        channels: keys to report; ``None`` = every int/float key except the device and time fields.
        units: unit per channel key, e.g. ``{"t": "°C"}``.
        device_field: key holding the device id (str or int); ``None`` or ``""`` to ignore.
        ts_field: key holding the sample time (epoch seconds or ISO-8601); ``None`` or ``""`` to ignore.
        max_line: longest accepted line in bytes.

    Raises:
        ValueError: an option has the wrong type.
    """

    output: Final[Literal["readings"]] = "readings"

    def __init__(
        self,
        channels: Sequence[str] | None = None,
        units: Mapping[str, str] | None = None,
        device_field: str | None = "id",
        ts_field: str | None = "ts",
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        if channels is not None and (isinstance(channels, str) or not all(isinstance(c, str) and c for c in channels)):
            raise ValueError("channels: must be a list of non-empty strings")
        if units is not None and not is_str_table(units):
            raise ValueError("units: must be a table of string to string")
        for name, val in (("device_field", device_field), ("ts_field", ts_field)):
            if val is not None and not isinstance(val, str):
                raise ValueError(f"{name}: must be a string")
        device_field = device_field or None
        ts_field = ts_field or None
        self.channels: Final = tuple(channels) if channels is not None else None
        self.units: Final = dict(units or {})
        self.device_field: Final = device_field
        self.ts_field: Final = ts_field
        self._lines = LineBuffer(max_line)
        self.lines_ok = 0
        self.lines_bad = 0
        self.replies = 0

    @property
    def bytes_dropped(self) -> int:
        return self._lines.bytes_dropped

    @property
    def overflows(self) -> int:
        return self._lines.overflows

    @property
    def pending(self) -> int:
        """Bytes of the device's incomplete line held (0 = between lines: a good time to write to it)."""
        return self._lines.pending

    def counters(self) -> dict[str, int]:
        """Snapshot of all counters, for metrics."""
        return {
            "lines_ok": self.lines_ok,
            "lines_bad": self.lines_bad,
            "replies": self.replies,
            "bytes_dropped": self.bytes_dropped,
            "overflows": self.overflows,
        }

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reading | CommandReply]:
        """Consume ``data``; return the readings (and command replies) of every complete, valid line, in order."""
        out: list[Reading | CommandReply] = []
        for line in self._lines.feed(data):
            readings = self._decode(line)
            if readings is None:
                self.lines_bad += 1
                self._lines.bytes_dropped += len(line)
            else:
                self.lines_ok += 1
                out.extend(readings)
        return out

    def _decode(self, line: bytes) -> list[Reading | CommandReply] | None:
        try:
            obj = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError):
            # ValueError covers json.JSONDecodeError and _reject_constant; RecursionError comes from
            # deeply nested arrays ("[[[[...") that fit in max_line.
            return None
        if not isinstance(obj, dict):
            return None
        if CID_FIELD in obj and "ok" in obj:
            reply = parse_reply(obj)
            if reply is None:
                return None
            self.replies += 1
            return [reply]
        device: str | None = None
        if self.device_field is not None:
            raw_dev = obj.get(self.device_field)
            if isinstance(raw_dev, str) and raw_dev:
                device = raw_dev
            elif isinstance(raw_dev, int) and not isinstance(raw_dev, bool):
                device = str(raw_dev)
        ts: float | None = None
        if self.ts_field is not None and self.ts_field in obj:
            ts = _parse_ts(obj[self.ts_field])
            if ts is None:
                return None
        readings: list[Reading | CommandReply] = []
        if self.channels is None:
            skip = {self.device_field, self.ts_field}
            for key, value in obj.items():
                if key not in skip and isinstance(value, int | float) and not isinstance(value, bool):
                    readings.append(Reading(key, value, self.units.get(key), device, ts))
        else:
            for key in self.channels:
                value = obj.get(key)
                if isinstance(value, int | float | str | bool):
                    readings.append(Reading(key, value, self.units.get(key), device, ts))
        return readings
