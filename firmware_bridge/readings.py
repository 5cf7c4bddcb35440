"""The value type every reading-producing codec (jsonl, nmea, lines) returns.

A ``Reading`` is one sample of one channel. ``device`` is ``None`` when the wire format does not name
the device; the serial adapter then uses the port's configured device name. ``ts`` is seconds since
the Unix epoch (UTC) when the device supplied a time, else ``None`` (the adapter stamps arrival time).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Reading", "Value", "convert_scalar", "is_str_table"]

Value = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample: ``channel`` (e.g. ``"temperature"``) = ``value`` in ``unit``."""

    channel: str
    value: Value
    unit: str | None = None
    device: str | None = None
    ts: float | None = None


def convert_scalar(text: str) -> Value:
    """Convert a text field the way the line codecs promise: int, else finite float, else the text.

    ``"21"`` -> 21, ``"-0.5"`` -> -0.5, ``"1e3"`` -> 1000.0, ``"nan"``/``"inf"``/``"ok"`` -> the string
    (non-finite floats are kept as text because they cannot be encoded as JSON numbers).
    Never raises.
    """
    s = text.strip()
    # int() accepts "1_000" and surrounding whitespace; only plain signed digits are integers here.
    body = s[1:] if s[:1] in ("+", "-") else s
    if body.isascii() and body.isdigit():
        try:
            return int(s)
        except ValueError:  # more digits than sys.get_int_max_str_digits() allows
            return text
    if s.isascii() and s and not any(c.isalpha() and c not in "eE" for c in s) and "_" not in s:
        try:
            f = float(s)
        except ValueError:
            return text
        if math.isfinite(f):
            return f
    return text


def is_str_table(obj: object) -> bool:
    """True for a mapping of str to str (the shape of a ``units`` option)."""
    return isinstance(obj, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items())
