"""Bounded line splitting shared by the line-oriented codecs (jsonl, nmea, lines)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_MAX_LINE", "LineBuffer"]

# A sensor line is short; 4096 matches nats-server's MAX_CONTROL_LINE_SIZE (server/const.go) so one
# bound rules every serial line on a port.
DEFAULT_MAX_LINE: Final = 4096


class LineBuffer:
    """Split a byte stream at ``\\n`` (a ``\\r`` before it is dropped); never buffer more than ``max_line``.

    A line longer than ``max_line`` bytes (terminator excluded) is an overflow: counted once in
    ``overflows``, its bytes are counted in ``bytes_dropped`` and discarded up to the next ``\\n``.
    Blank lines are skipped silently.
    """

    def __init__(self, max_line: int = DEFAULT_MAX_LINE) -> None:
        if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 1:
            raise ValueError(f"max_line: must be a positive integer, got {max_line!r}")
        self.max_line: Final = max_line
        self._buf = bytearray()
        self._skipping = False
        self.bytes_dropped = 0
        self.overflows = 0

    @property
    def pending(self) -> int:
        """Bytes of an incomplete line held (at most ``max_line + 1``, the +1 for a pending ``\\r``)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Return the complete, non-blank lines in ``data`` (without terminators), in order."""
        chunk = bytes(data)
        lines: list[bytes] = []
        start = 0
        n = len(chunk)
        limit = self.max_line + 1  # + a possible "\r" that belongs to the terminator
        while start < n:
            end = chunk.find(b"\n", start)
            seg_end = n if end < 0 else end
            seg_len = seg_end - start
            if self._skipping:
                self.bytes_dropped += seg_len
            elif len(self._buf) + seg_len > limit:
                self.overflows += 1
                self.bytes_dropped += len(self._buf) + seg_len
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += chunk[start:seg_end]
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                line = bytes(self._buf[:-1] if self._buf.endswith(b"\r") else self._buf)
                self._buf.clear()
                if len(line) > self.max_line:  # max_line + 1 bytes without a trailing \r
                    self.overflows += 1
                    self.bytes_dropped += len(line)
                elif line.strip():
                    lines.append(line)
            start = end + 1
        return lines
