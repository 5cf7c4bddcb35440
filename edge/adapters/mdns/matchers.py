"""Pure matching code for mDNS discovery: TXT decoding, Home-Assistant-style matchers, device ids.

Nothing here imports zeroconf or does I/O, so it is unit tested with plain values.

A :class:`ServiceMatcher` matches a resolved service on its type, its instance name (a glob, case
insensitive, like Home Assistant's ``"name": "shelly*"``) and TXT keys (``properties``: key -> glob, the
key must be present and its value must match; HA's ``"properties": {"gen": "2"}``). The first matcher
that matches decides the device's ``kind`` and which poller (if any) reads it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from edge.protocol.subjects import sanitize_token

__all__ = [
    "DEFAULT_MATCHERS",
    "MAX_TXT_KEYS",
    "MAX_TXT_VALUE",
    "ServiceMatcher",
    "TxtResult",
    "device_id_for",
    "instance_of",
    "match_service",
    "normalize_type",
    "parse_txt",
]

MAX_TXT_KEYS: Final = 64  # keys kept per service; more are counted as dropped
MAX_TXT_VALUE: Final = 255  # a TXT string is at most 255 bytes on the wire (RFC 6763 6.1)


def normalize_type(service_type: str) -> str:
    """``"_http._tcp"`` -> ``"_http._tcp.local."``; lower case, fully qualified."""
    t = service_type.strip().lower().rstrip(".")
    if not t.endswith(".local"):
        t += ".local"
    return t + "."


def instance_of(name: str, service_type: str) -> str:
    """The instance part of a full service name (``"Kitchen._http._tcp.local."`` -> ``"Kitchen"``)."""
    suffix = "." + service_type
    if name.lower().endswith(suffix.lower()):
        return name[: -len(suffix)]
    return name.split(".", 1)[0]


def device_id_for(instance: str) -> str:
    """The subject token for a device: its instance name, lower-cased and sanitised.

    The same device announced under several types (Shelly: ``_http._tcp`` and ``_shelly._tcp``) gets
    the same id and so one registry entry.
    """
    return sanitize_token(instance.lower(), "unknown")


@dataclass(frozen=True, slots=True)
class TxtResult:
    """Decoded TXT: ``txt`` maps lower-case keys to str values ("" for a key without ``=``)."""

    txt: dict[str, str]
    malformed: int = 0  # keys or values that were not UTF-8, empty keys, over-long values
    dropped: int = 0  # keys beyond MAX_TXT_KEYS


def parse_txt(properties: Mapping[bytes, bytes | None] | Mapping[str, str | None] | None) -> TxtResult:
    """Decode zeroconf's ``ServiceInfo.properties`` into str -> str, skipping and counting bad entries.

    Keys are compared case-insensitively (RFC 6763 6.4) so they are lower-cased; the first of duplicate
    keys wins. A value that is not UTF-8 makes the whole entry malformed (skipped).
    """
    out: dict[str, str] = {}
    malformed = dropped = 0
    for raw_key, raw_value in (properties or {}).items():
        try:
            key = raw_key.decode("utf-8") if isinstance(raw_key, bytes) else str(raw_key)
            if raw_value is None:
                value = ""
            elif isinstance(raw_value, bytes):
                value = raw_value.decode("utf-8")
            else:
                value = str(raw_value)
        except UnicodeDecodeError:
            malformed += 1
            continue
        key = key.strip().lower()
        if not key or not key.isprintable() or len(value) > MAX_TXT_VALUE or not value.isprintable():
            malformed += 1
            continue
        if key in out:
            continue
        if len(out) >= MAX_TXT_KEYS:
            dropped += 1
            continue
        out[key] = value
    return TxtResult(out, malformed, dropped)


@dataclass(frozen=True, slots=True)
class ServiceMatcher:
    """Matches a service type plus optional instance-name glob and TXT globs; names a kind and a poller."""

    type: str
    kind: str = ""
    name: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    poller: str | None = None
    _props_lower: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", normalize_type(self.type))
        object.__setattr__(
            self, "_props_lower", tuple((k.lower(), v.lower()) for k, v in self.properties)
        )

    def matches(self, service_type: str, instance: str, txt: Mapping[str, str]) -> bool:
        if normalize_type(service_type) != self.type:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(instance.lower(), self.name.lower()):
            return False
        for key, pattern in self._props_lower:
            value = txt.get(key)
            if value is None or not fnmatch.fnmatchcase(value.lower(), pattern):
                return False
        return True


def match_service(
    matchers: Sequence[ServiceMatcher], service_type: str, instance: str, txt: Mapping[str, str]
) -> ServiceMatcher | None:
    """The first matcher that matches, or None."""
    for m in matchers:
        if m.matches(service_type, instance, txt):
            return m
    return None


# Defaults in the style of Home Assistant's zeroconf manifests: common IoT devices on a LAN.
DEFAULT_MATCHERS: Final[tuple[ServiceMatcher, ...]] = (
    ServiceMatcher("_esphomelib._tcp", kind="esphome"),
    ServiceMatcher("_shelly._tcp", kind="shelly", name="shelly*", poller="shelly"),
    # Shelly Gen2+ also announce _http._tcp with TXT gen=2|3|4; Gen1 devices only the name.
    ServiceMatcher("_http._tcp", kind="shelly", name="shelly*", properties=(("gen", "[234]"),), poller="shelly"),
    ServiceMatcher("_http._tcp", kind="shelly", name="shelly*"),
    ServiceMatcher("_wled._tcp", kind="wled"),
    ServiceMatcher("_hap._tcp", kind="homekit"),
    ServiceMatcher("_mqtt._tcp", kind="mqtt"),
    ServiceMatcher("_nats._tcp", kind="nats"),
    ServiceMatcher("_coap._udp", kind="coap"),
)


def types_of(matchers: Sequence[ServiceMatcher]) -> tuple[str, ...]:
    """The distinct service types to browse, in matcher order."""
    return tuple(dict.fromkeys(m.type for m in matchers))
