"""Values as Go prints them, for output that must read as nats-server's: durations (monitoring JSON,
trace lines) and ``%q``-quoted bytes (trace lines). Sans-IO: text only."""

from __future__ import annotations

from typing import Final

__all__ = ["go_duration", "go_quote"]


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` of ``seconds`` rounded to whole nanoseconds: "0s", "512ns",
    "640.123µs", "1.5ms", "2.3s", "3m21s", "1h0m5s"."""
    ns = round(seconds * 1e9)
    if ns <= 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_fraction(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{_fraction(ns, 6)}ms"
    minutes, sec_ns = divmod(ns, 60_000_000_000)
    hours, minutes = divmod(minutes, 60)
    s = f"{_fraction(sec_ns, 9)}s"
    if hours:
        return f"{hours}h{minutes}m{s}"
    if minutes:
        return f"{minutes}m{s}"
    return s


def _fraction(value: int, digits: int) -> str:
    """``value / 10**digits`` in decimal without trailing zeros (exact: no float formatting)."""
    whole, frac = divmod(value, 10**digits)
    tail = str(frac).rjust(digits, "0").rstrip("0")
    return f"{whole}.{tail}" if tail else str(whole)


_GO_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
                      '"': '\\"', "\\": "\\\\"}


def go_quote(data: bytes) -> str:
    """``data`` as Go's ``%q`` prints a byte slice (strconv.Quote): printable UTF-8 as is, the C escapes,
    ``\\xNN`` for invalid bytes and ASCII controls, ``\\uXXXX``/``\\UXXXXXXXX`` for other unprintables."""
    out = ['"']
    for ch in data.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
