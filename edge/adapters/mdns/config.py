"""Schema of the ``[mdns]`` table: advertise the broker and discover LAN devices over mDNS.

Example::

    [mdns]
    enabled = true                 # default when the table exists
    interfaces = ["192.168.1.10"]  # addresses to use; [] = all interfaces
    advertise = true               # _nats._tcp on the client port (+ _http._tcp for monitoring)
    instance_name = ""             # default: the gateway (server) name; collisions get "-2", "-3", ...
    browse = true
    default_matchers = true        # ESPHome, Shelly, WLED, HomeKit, MQTT, NATS, CoAP
    types = ["_ipp._tcp"]          # extra types, every instance accepted (kind = "ipp")
    max_devices = 256              # discovered-device map bound; more are counted and ignored
    resolve_timeout = "3s"
    hub_service = "_nats-leaf._tcp" # without [leafnodes] remotes: join the first hub advertised so

    [[mdns.matchers]]              # tried before the defaults, first match wins (Home Assistant style)
    type = "_http._tcp"
    name = "mysensor*"             # glob on the instance name, case-insensitive
    properties = { model = "th*" } # TXT key -> glob; key must be present
    kind = "thsensor"
    poller = "thsensor"            # a poller below, or "shelly" (built in)

    [mdns.pollers.thsensor]        # generic JSON poller
    path = "/api/status"
    fields = { temperature = { path = "sensors.0.temp", unit = "°C" }, humidity = "sensors.0.rh" }
    interval = "10s"
    timeout = "3s"
    max_backoff = "5m"
    offline_after = 3              # consecutive failures before the device is offline

    [mdns.pollers.thsensor.actions.relay]   # commands: cmd.<gw>.mdns.<device>.relay {"on": true}
    method = "POST"
    path = "/api/relay"            # {name} placeholders take the command's arguments (URL-encoded)
    body = '{"on": {on}}'          # ... JSON-encoded here
    result = "relay"               # JSON path into the reply ("" = all of it)

    [mdns.pollers.shelly]          # overrides for the built-in Shelly Gen2 poller (path and fields fixed)
    interval = "5s"
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.adapters.mdns.actions import METHODS, HttpAction
from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = ["MatcherSettings", "MdnsSettings", "PollerSettings", "parse_mdns"]

_KNOWN: Final = frozenset({
    "enabled", "interfaces", "advertise", "instance_name", "browse", "default_matchers", "types", "max_devices",
    "resolve_timeout", "matchers", "pollers", "hub_service",
})
_MATCHER_KEYS: Final = frozenset({"type", "name", "properties", "kind", "poller"})
_POLLER_KEYS: Final = frozenset({
    "kind", "path", "fields", "interval", "timeout", "max_backoff", "offline_after", "max_bytes", "actions",
})
_ACTION_KEYS: Final = frozenset({"method", "path", "body", "result"})


@dataclass(frozen=True, slots=True)
class MatcherSettings:
    type: str
    name: str | None = None
    properties: tuple[tuple[str, str], ...] = ()
    kind: str = ""
    poller: str | None = None


@dataclass(frozen=True, slots=True)
class PollerSettings:
    name: str
    kind: str = "generic"
    path: str = "/"
    fields: tuple[tuple[str, str, str | None], ...] = ()  # (channel, json path, unit)
    interval: float = 10.0
    timeout: float = 3.0
    max_backoff: float = 300.0
    offline_after: int = 3
    max_bytes: int = 256 * 1024
    actions: tuple[HttpAction, ...] = ()  # generic pollers: the device's command table


@dataclass(frozen=True, slots=True)
class MdnsSettings:
    enabled: bool = True
    interfaces: tuple[str, ...] = ()
    advertise: bool = True
    instance_name: str = ""
    browse: bool = True
    default_matchers: bool = True
    types: tuple[str, ...] = ()
    max_devices: int = 256
    resolve_timeout: float = 3.0
    matchers: tuple[MatcherSettings, ...] = ()
    pollers: dict[str, PollerSettings] = field(default_factory=dict)
    # A service type whose first resolved instance becomes the leaf remote when [leafnodes] has none
    # ("" = off); the hub advertises it on its leafnode port.
    hub_service: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _read_type(value: Any) -> str:
    text = v.read_str(value).strip().lower().rstrip(".")
    if text.endswith(".local"):
        text = text[: -len(".local")]
    parts = text.split(".")
    if len(parts) != 2 or not parts[0].startswith("_") or parts[1] not in ("_tcp", "_udp") or len(parts[0]) < 2:
        raise ValueError(f"expected a service type such as \"_http._tcp\", got {value!r}")
    return text


def _read_types(value: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_read_type(t) for t in v.read_str_list(value)))


def _read_properties(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and k and isinstance(x, str)
                                              for k, x in value.items()):
        raise ValueError(f"expected a table of TXT key = glob strings, got {value!r}")
    return tuple(value.items())


def _read_fields(value: Any) -> tuple[tuple[str, str, str | None], ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected a table of channel = \"json.path\" or {{ path, unit }}, got {value!r}")
    out: list[tuple[str, str, str | None]] = []
    for channel, spec in value.items():
        if not channel or any(c in channel for c in ". *>\t"):
            raise ValueError(f"channel {channel!r} is not a valid subject token")
        if isinstance(spec, str) and spec:
            out.append((channel, spec, None))
        elif isinstance(spec, dict) and isinstance(spec.get("path"), str) and spec["path"] and set(spec) <= {
            "path", "unit"
        } and isinstance(spec.get("unit", ""), str):
            out.append((channel, spec["path"], spec.get("unit") or None))
        else:
            raise ValueError(f"field {channel!r}: expected \"json.path\" or {{ path = .., unit = .. }}, got {spec!r}")
    return tuple(out)


def _parse_poller(name: str, table: Any, rep: KeyReporter) -> PollerSettings:
    t = rep.require_table(table, name)
    prep = rep.child(name)
    prep.reject_unknown(t, _POLLER_KEYS)
    kw: dict[str, Any] = {"name": name, "kind": "shelly" if name == "shelly" else "generic"}
    if "kind" in t:
        kw["kind"] = prep.read(t, "kind", _read_choice, choices=("generic", "shelly"))
    readers: dict[str, tuple[Any, dict[str, Any]]] = {
        "path": (v.read_str, {}),
        "fields": (_read_fields, {}),
        "interval": (v.read_duration, {"minimum": 0.05}),
        "timeout": (v.read_duration, {"minimum": 0.01, "maximum": 300.0}),
        "max_backoff": (v.read_duration, {"minimum": 0.05}),
        "offline_after": (v.read_int, {"minimum": 1}),
        "max_bytes": (v.read_size, {"minimum": 256, "maximum": 16 * 1024 * 1024}),
    }
    for key, (reader, kwargs) in readers.items():
        if key in t:
            kw[key] = prep.read(t, key, reader, **kwargs)
    if "path" in kw and not kw["path"].startswith("/"):
        raise prep.error("path", f"must start with '/', got {kw['path']!r}")
    if kw["kind"] == "generic" and not kw.get("fields"):
        raise prep.error("fields", "a generic poller needs at least one field")
    if kw["kind"] == "shelly" and ("path" in kw or "fields" in kw or "actions" in t):
        key = "path" if "path" in kw else "fields" if "fields" in kw else "actions"
        raise prep.error(key, "the shelly poller's path, fields and actions are built in")
    if "actions" in t:
        arep = prep.child("actions")
        actions = prep.require_table(t["actions"], "actions")
        kw["actions"] = tuple(_parse_action(a, at, arep) for a, at in actions.items())
    return PollerSettings(**kw)


def _parse_action(name: str, table: Any, rep: KeyReporter) -> HttpAction:
    t = rep.require_table(table, name)
    arep = rep.child(name)
    arep.reject_unknown(t, _ACTION_KEYS)
    if not name or any(c in name for c in ". *>\t"):
        raise rep.error(name, "an action name must be a valid subject token")
    if "path" not in t:
        raise arep.error("path", "required: the HTTP path, e.g. \"/api/relay\"")
    kw: dict[str, Any] = {"name": name, "path": arep.read(t, "path", v.read_str)}
    if not kw["path"].startswith("/"):
        raise arep.error("path", f"must start with '/', got {kw['path']!r}")
    if "method" in t:
        kw["method"] = arep.read(t, "method", _read_choice, choices=METHODS)
    if "body" in t:
        kw["body"] = arep.read(t, "body", v.read_str)
    if "result" in t:
        kw["result"] = arep.read(t, "result", v.read_str, allow_empty=True)
    return HttpAction(**kw)


def _read_choice(value: Any, *, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def parse_mdns(raw: Any, rep: KeyReporter) -> MdnsSettings:
    """Parse and validate the table; errors name the file and the key."""
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _KNOWN)
    kw: dict[str, Any] = {}
    for key, reader, kwargs in (
        ("enabled", v.read_bool, {}),
        ("advertise", v.read_bool, {}),
        ("browse", v.read_bool, {}),
        ("default_matchers", v.read_bool, {}),
        ("instance_name", v.read_str, {"allow_empty": True}),
        ("max_devices", v.read_int, {"minimum": 1, "maximum": 65536}),
        ("resolve_timeout", v.read_duration, {"minimum": 0.1, "maximum": 60.0}),
    ):
        if key in table:
            kw[key] = rep.read(table, key, reader, **kwargs)
    if "interfaces" in table:
        kw["interfaces"] = tuple(rep.read(table, "interfaces", v.read_str_list))
    if "types" in table:
        kw["types"] = rep.read(table, "types", _read_types)
    if "hub_service" in table:
        kw["hub_service"] = rep.read(table, "hub_service", _read_type)
    if len(kw.get("instance_name", "")) > 63:
        raise rep.error("instance_name", "at most 63 characters (a DNS label)")
    pollers: dict[str, PollerSettings] = {}
    if "pollers" in table:
        prep = rep.child("pollers")
        for name, ptable in rep.require_table(table["pollers"], "pollers").items():
            pollers[name] = _parse_poller(name, ptable, prep)
    kw["pollers"] = pollers
    matchers: list[MatcherSettings] = []
    if "matchers" in table:
        items = table["matchers"]
        if not isinstance(items, list):
            raise rep.error("matchers", "expected an array of tables ([[mdns.matchers]])")
        for i, item in enumerate(items):
            mrep = rep.child(f"matchers[{i}]")
            if not isinstance(item, dict):
                raise rep.error(f"matchers[{i}]", f"expected a table, got {item!r}")
            mrep.reject_unknown(item, _MATCHER_KEYS)
            if "type" not in item:
                raise mrep.error("type", "required")
            m: dict[str, Any] = {"type": mrep.read(item, "type", _read_type)}
            if "name" in item:
                m["name"] = mrep.read(item, "name", v.read_str)
            if "properties" in item:
                m["properties"] = mrep.read(item, "properties", _read_properties)
            if "kind" in item:
                m["kind"] = mrep.read(item, "kind", v.read_str)
            if "poller" in item:
                m["poller"] = mrep.read(item, "poller", v.read_str)
                if m["poller"] != "shelly" and m["poller"] not in pollers:
                    raise mrep.error("poller", f"no poller {m['poller']!r} in [mdns.pollers]")
            matchers.append(MatcherSettings(**m))
    kw["matchers"] = tuple(matchers)
    return MdnsSettings(**kw, raw=table)


register_section("mdns", parse_mdns)
