"""Typed readers for configuration values, in nats-server's spelling.

Each reader takes the raw TOML value and returns the typed value or raises ``ValueError`` with a
short description of what was expected; :mod:`edge.config.loader` turns that into a
:class:`~edge.errors.ConfigError` naming the file and the key.

Sizes accept integers or strings with nats-server's suffixes (conf/lex.go: ``k`` = 1000,
``kb``/``ki``/``kib`` = 1024, likewise m, g, t); durations accept numbers of seconds or strings such
as ``"2m"``, ``"10s"``, ``"250ms"`` (Go's time.ParseDuration units).
"""

from __future__ import annotations

import re
from typing import Any, Final

_SIZE_RE: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1024,
    "ki": 1024,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1024**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1024**3,
    "gi": 1024**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1024**4,
    "ti": 1024**4,
    "tib": 1024**4,
}
_DURATION_PART_RE: Final = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS: Final[dict[str, float]] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def read_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    raise ValueError(f"expected true or false, got {value!r}")


def read_int(value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    _check_range(value, minimum, maximum)
    return value


def read_size(value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A byte count: ``1048576``, ``"1MB"`` (= 1 MiB, as nats-server reads it) or ``"512k"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 1048576 or \"1MB\", got {value!r}")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        unit = m.group(2).lower() if m else ""
        if m is None or unit not in _SIZE_UNITS:
            raise ValueError(f"expected a size such as 1048576 or \"1MB\", got {value!r}")
        result = int(float(m.group(1)) * _SIZE_UNITS[unit])
    else:
        raise ValueError(f"expected a size such as 1048576 or \"1MB\", got {value!r}")
    _check_range(result, minimum, maximum)
    return result


def read_duration(value: Any, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """Seconds as a float, from a number of seconds or a string like ``"2m"``, ``"1m30s"``, ``"250ms"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as \"10s\" or 10, got {value!r}")
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        text = value.strip()
        pos = 0
        result = 0.0
        for m in _DURATION_PART_RE.finditer(text):
            if m.start() != pos:
                break
            result += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        if pos == 0 or pos != len(text):
            raise ValueError(f"expected a duration such as \"10s\", \"2m\" or \"250ms\", got {value!r}")
    else:
        raise ValueError(f"expected a duration such as \"10s\" or 10, got {value!r}")
    if minimum is not None and result < minimum:
        raise ValueError(f"must be at least {minimum:g}s, got {value!r}")
    if maximum is not None and result > maximum:
        raise ValueError(f"must be at most {maximum:g}s, got {value!r}")
    return result


def read_str(value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if not allow_empty and not value:
        raise ValueError("must not be empty")
    return value


def read_str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of non-empty strings, got {value!r}")
    return list(value)


def read_port(value: Any, *, allow_random: bool = True) -> int:
    """A TCP port; ``-1`` (nats-server's RANDOM_PORT) and ``0`` pick a free one when allowed."""
    port = read_int(value, minimum=-1 if allow_random else 1, maximum=65535)
    return port


def _check_range(value: int, minimum: int | None, maximum: int | None) -> None:
    if minimum is not None and value < minimum:
        raise ValueError(f"must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be at most {maximum}, got {value}")
