"""Codec registry: ``get_codec(name, options)`` builds the decoder a serial port is configured with.

Every codec has ``feed(data: bytes) -> list[...]``, ``counters() -> dict[str, int]`` and an ``output``
attribute: ``"protocol"`` (``nats``, ``frames``: a list of NATS client-protocol byte chunks for the
broker's client parser) or ``"readings"`` (``jsonl``, ``nmea``, ``lines``: a list of ``Reading``).
``options`` is the port's TOML table for the codec; unknown keys and wrongly typed values raise
``ValueError`` whose message starts with the offending key, so the broker can name it in the error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, Protocol

from firmware_bridge.frames import FrameDecoder
from firmware_bridge.jsonl import JsonlDecoder
from firmware_bridge.lines import LinesDecoder
from firmware_bridge.nats import NatsPassthrough
from firmware_bridge.nmea import NmeaDecoder
from firmware_bridge.readings import Reading

__all__ = ["CODEC_NAMES", "Codec", "get_codec"]


class Codec(Protocol):
    output: Literal["protocol", "readings"]

    def feed(self, data: bytes) -> list[bytes] | list[Reading]: ...

    def counters(self) -> dict[str, int]: ...


# Option name -> (accepted types, human description) for each codec.
_Spec = dict[str, tuple[tuple[type, ...], str]]
_INT: Final = ((int,), "an integer")
_BOOL: Final = ((bool,), "a boolean")
_STR: Final = ((str,), "a string")
_STR_OR_NONE: Final = ((str, type(None)), "a string")
_LIST: Final = ((list, tuple), "a list of strings")
_TABLE: Final = ((dict,), "a table of strings")

_REGISTRY: Final[dict[str, tuple[Callable[..., Codec], _Spec, frozenset[str]]]] = {
    "nats": (NatsPassthrough, {}, frozenset()),
    "frames": (FrameDecoder, {"max_payload": _INT}, frozenset()),
    "jsonl": (
        JsonlDecoder,
        {
            "channels": _LIST,
            "units": _TABLE,
            "device_field": _STR_OR_NONE,
            "ts_field": _STR_OR_NONE,
            "max_line": _INT,
        },
        frozenset(),
    ),
    "nmea": (NmeaDecoder, {"max_line": _INT, "require_checksum": _BOOL}, frozenset()),
    "lines": (
        LinesDecoder,
        {"pattern": _STR, "units": _TABLE, "fullmatch": _BOOL, "max_line": _INT},
        frozenset({"pattern"}),
    ),
}

CODEC_NAMES: Final = tuple(_REGISTRY)


def get_codec(name: str, options: Mapping[str, Any] | None = None) -> Codec:
    """Build the codec ``name`` with ``options``.

    Raises:
        ValueError: unknown codec name, unknown or missing option, or an option of the wrong type
            or value. The message names the codec and the option.
    """
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None:
        raise ValueError(f"codec: unknown codec {name!r}; expected one of {', '.join(CODEC_NAMES)}")
    factory, spec, required = entry
    opts = dict(options or {})
    for key, value in opts.items():
        if key not in spec:
            known = ", ".join(sorted(spec)) or "none"
            raise ValueError(f"{key}: unknown option for codec {name!r} (known options: {known})")
        types, what = spec[key]
        # bool is an int subclass; a TOML `true` is not a valid max_line.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{key}: codec {name!r} expects {what}, got {type(value).__name__}")
    for key in sorted(required - opts.keys()):
        raise ValueError(f"{key}: required option of codec {name!r} is missing")
    try:
        return factory(**opts)
    except ValueError as exc:
        # Constructors word their errors "<option>: <problem>", so the key leads the message.
        raise ValueError(f"{exc} (codec {name!r})") from None
