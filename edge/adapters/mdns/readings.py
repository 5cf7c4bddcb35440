"""Pure extraction of readings from device JSON: Shelly Gen2 ``Shelly.GetStatus`` and a generic mapping.

A reading is ``(channel, value, unit)`` with ``channel`` a sanitised subject token, ``value`` a JSON
scalar (number, bool or short string) and ``unit`` a string or None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.protocol.subjects import sanitize_token

if TYPE_CHECKING:
    from .actions import HttpAction

__all__ = [
    "SHELLY_PATH",
    "FieldSpec",
    "PollerSpec",
    "Reading",
    "extract_fields",
    "extract_shelly",
    "lookup",
]

Reading = tuple[str, Any, str | None]

SHELLY_PATH: Final = "/rpc/Shelly.GetStatus"
MAX_READINGS: Final = 128  # per poll; more are ignored
MAX_STRING_VALUE: Final = 256

# Shelly Gen2 component fields -> (channel suffix, unit). Components are "<kind>:<id>" keys.
_SHELLY_FIELDS: Final[dict[str, tuple[tuple[tuple[str, ...], str, str | None], ...]]] = {
    "switch": (
        (("output",), "output", None),
        (("apower",), "power", "W"),
        (("voltage",), "voltage", "V"),
        (("current",), "current", "A"),
        (("aenergy", "total"), "energy", "Wh"),
        (("temperature", "tC"), "temperature", "°C"),
    ),
    "pm1": ((("apower",), "power", "W"), (("voltage",), "voltage", "V"), (("current",), "current", "A"),
            (("aenergy", "total"), "energy", "Wh")),
    "cover": ((("current_pos",), "position", "%"), (("state",), "state", None), (("apower",), "power", "W")),
    "light": ((("output",), "output", None), (("brightness",), "brightness", "%")),
    "input": ((("state",), "state", None), (("percent",), "percent", "%")),
    "temperature": ((("tC",), "", "°C"),),
    "humidity": ((("rh",), "", "%"),),
    "illuminance": ((("lux",), "", "lx"),),
    "voltmeter": ((("voltage",), "", "V"),),
    "devicepower": ((("battery", "percent"), "battery", "%"), (("external", "present"), "external_power", None)),
    "em": ((("total_act_power",), "power", "W"), (("total_current",), "current", "A")),
    "em1": ((("act_power",), "power", "W"), (("voltage",), "voltage", "V"), (("current",), "current", "A")),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A generic poller field: ``path`` into the JSON (dots; list indexes as numbers), optional unit."""

    channel: str
    path: str
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class PollerSpec:
    """How to poll a device: ``kind`` "shelly" (built-in mapping) or "generic" (``path`` + ``fields``)."""

    name: str
    kind: str = "generic"
    path: str = "/"
    fields: tuple[FieldSpec, ...] = ()
    interval: float = 10.0
    timeout: float = 3.0
    max_backoff: float = 300.0
    offline_after: int = 3  # consecutive failures before the device is reported offline
    max_bytes: int = 256 * 1024
    actions: tuple[HttpAction, ...] = ()  # generic devices' command table (Shelly's is built in)


def _scalar(value: Any) -> bool:
    if isinstance(value, bool | int | float):
        return True
    return isinstance(value, str) and len(value) <= MAX_STRING_VALUE


def lookup(doc: Any, path: str) -> Any:
    """Follow a dotted path (``"a.b.0.c"``) through dicts and lists; None if absent."""
    node = doc
    for part in path.split(".") if path else ():
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.lstrip("-").isdigit():
            i = int(part)
            node = node[i] if -len(node) <= i < len(node) else None
        else:
            return None
        if node is None:
            return None
    return node


def extract_fields(doc: Any, fields: tuple[FieldSpec, ...]) -> list[Reading]:
    """Readings for the configured fields that exist and are scalars; others are skipped."""
    out: list[Reading] = []
    for f in fields:
        value = lookup(doc, f.path)
        if value is not None and _scalar(value):
            out.append((f.channel, value, f.unit))
    return out


def extract_shelly(doc: Any) -> list[Reading]:
    """Readings from a Shelly Gen2+ ``Shelly.GetStatus`` result (component keys like ``"switch:0"``).

    Channel names: ``<kind><id>_<field>`` (``switch0_power``), ``<kind><id>`` for single-value
    components (``temperature0``), plus ``wifi_rssi`` and ``uptime``. Unknown components are ignored.
    """
    if not isinstance(doc, Mapping):
        return []
    out: list[Reading] = []
    for key, comp in doc.items():
        if not isinstance(key, str) or not isinstance(comp, Mapping):
            continue
        kind, _, ident = key.partition(":")
        spec = _SHELLY_FIELDS.get(kind)
        if spec is None:
            continue
        base = sanitize_token(f"{kind}{ident}")
        for path, suffix, unit in spec:
            value: Any = comp
            for p in path:
                value = value.get(p) if isinstance(value, Mapping) else None
            if value is not None and _scalar(value):
                out.append((f"{base}_{suffix}" if suffix else base, value, unit))
        if len(out) >= MAX_READINGS:
            break
    wifi = doc.get("wifi")
    if isinstance(wifi, Mapping) and isinstance(wifi.get("rssi"), int | float):
        out.append(("wifi_rssi", wifi["rssi"], "dBm"))
    sys_ = doc.get("sys")
    if isinstance(sys_, Mapping) and isinstance(sys_.get("uptime"), int | float):
        out.append(("uptime", sys_["uptime"], "s"))
    return out[:MAX_READINGS]


def extract(spec: PollerSpec, doc: Any) -> list[Reading]:
    return extract_shelly(doc) if spec.kind == "shelly" else extract_fields(doc, spec.fields)
