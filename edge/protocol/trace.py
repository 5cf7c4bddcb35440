"""Go's formatting of the values nats-server writes in its ``-V`` trace lines, so ours read the same.
Sans-IO: text only."""

from __future__ import annotations

from typing import Final

__all__ = ["go_duration", "go_quote"]

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


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (``45s``, ``1m30s``, ``7.5s``, ``1h0m0s``, ``0s``)."""
    if seconds <= 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes:
        return f"{int(minutes)}m{sec_text}"
    return sec_text
