"""Plain text lines matched by a configured regular expression with named groups.

Example: pattern ``T=(?P<temperature>\\S+) H=(?P<humidity>\\S+)`` turns ``T=21.5 H=40.2`` into
``Reading("temperature", 21.5)`` and ``Reading("humidity", 40.2)``. Every named group is a channel,
except ``device`` (the device id) . Values are converted with ``convert_scalar``: integers, finite
floats, otherwise the text. A group that did not take part in the match is skipped.

A line that is not UTF-8 or does not match (``re.search``, or ``re.fullmatch`` with ``fullmatch``) is
counted in ``lines_bad`` and skipped (its bytes added to ``bytes_dropped``); ``feed`` never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

from firmware_bridge._linebuf import DEFAULT_MAX_LINE, LineBuffer
from firmware_bridge.readings import Reading, convert_scalar, is_str_table

__all__ = ["DEVICE_GROUP", "LinesDecoder"]

DEVICE_GROUP: Final = "device"


class LinesDecoder:
    """Decode regex-matched text lines into readings.

    Args:
        pattern: a regular expression with at least one named group other than ``device``.
        units: unit per channel (group name).
        fullmatch: require the whole line to match instead of searching within it.
        max_line: longest accepted line in bytes.

    Raises:
        ValueError: the pattern does not compile or names no channel; another option is mistyped.
    """

    output: Final[Literal["readings"]] = "readings"

    def __init__(
        self,
        pattern: str,
        units: Mapping[str, str] | None = None,
        fullmatch: bool = False,
        max_line: int = DEFAULT_MAX_LINE,
    ) -> None:
        if not isinstance(pattern, str) or not pattern:
            raise ValueError("pattern: must be a non-empty regular expression string")
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern: does not compile: {exc}") from None
        channels = [g for g in regex.groupindex if g != DEVICE_GROUP]
        if not channels:
            raise ValueError("pattern: must have at least one named group (?P<channel>...) besides 'device'")
        if units is not None and not is_str_table(units):
            raise ValueError("units: must be a table of string to string")
        if not isinstance(fullmatch, bool):
            raise ValueError("fullmatch: must be a boolean")
        self.pattern: Final = regex
        self.channels: Final = tuple(channels)
        self.units: Final = dict(units or {})
        self._match = regex.fullmatch if fullmatch else regex.search
        self._lines = LineBuffer(max_line)
        self.lines_ok = 0
        self.lines_bad = 0

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
            "bytes_dropped": self.bytes_dropped,
            "overflows": self.overflows,
        }

    def feed(self, data: bytes | bytearray | memoryview) -> list[Reading]:
        """Consume ``data``; return the readings of every complete matching line, in order."""
        out: list[Reading] = []
        for line in self._lines.feed(data):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                m = None
            else:
                m = self._match(text)
            if m is None:
                self.lines_bad += 1
                self._lines.bytes_dropped += len(line)
                continue
            self.lines_ok += 1
            groups = m.groupdict()
            device = groups.get(DEVICE_GROUP) or None
            for ch in self.channels:
                raw = groups[ch]
                if raw is not None:
                    out.append(Reading(ch, convert_scalar(raw), self.units.get(ch), device))
        return out
