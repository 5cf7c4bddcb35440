"""Schema of the ``[adapters]`` table: which device adapters run, one table per instance.

Example::

    [adapters]
    restart_backoff_min = "0.5s"   # supervisor: first restart delay after a failure ...
    restart_backoff_max = "30s"    # ... doubling up to this

    [[adapters.serial]]            # one table per port (see edge.adapters.serial for the keys)
    name = "uart0"                 # optional instance name (logs, /devicez); default "<kind><n>"
    enabled = true
    port = "/dev/serial/by-id/usb-Espressif_ESP32-if00"
    device = "node7"
    codec = "jsonl"
    codec_options = { device_field = "id", units = { temperature = "°C" } }
    subjects = { reading = "sensors.{device}.{channel}" }   # optional template overrides

    [[adapters.serial]]            # a device speaking NATS itself: a client connection of the broker
    port = "/dev/ttyUSB0"
    codec = "frames"               # or "nats"
    user = "sensor"                # its permissions: a user of [authorization] (edge.adapters.serial.config)

    [[adapters.demo]]              # simulated sensors (nats-edge run --demo)

    [adapters.defaults.serial]     # defaults for every [[adapters.serial]] entry (hardware profiles set
    port = "/dev/serial0"          # the board's UART and BLE adapter here); an entry's own keys win

``[adapters.defaults.<kind>]`` tables enable nothing by themselves. A later source's ``defaults``
table replaces an earlier one's as a whole (the profile's, when the config file has its own).

Every other key of ``[adapters]`` names an adapter kind (built-in or from the ``nats_edge.adapters``
entry point group) whose value is a table or an array of tables. Each instance's own keys are checked
by the kind's ``parse_config`` at load time, so a typo fails ``check-config`` with file and key.
An instance's ``user`` (serial ``nats``/``frames`` ports) is checked against ``[authorization]`` once
every source has been read (:func:`check_adapter_users`), since that section may come later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = ["AdapterInstanceSettings", "AdaptersSettings", "check_adapter_users", "parse_adapters"]

_BACKOFF_KEYS: Final = frozenset({"restart_backoff_min", "restart_backoff_max"})
_GLOBAL_KEYS: Final = _BACKOFF_KEYS | {"defaults"}
_COMMON_KEYS: Final = frozenset({"name", "enabled", "subjects"})
_TEMPLATE_KEYS: Final = frozenset({"reading", "event", "command"})


@dataclass(frozen=True, slots=True)
class AdapterInstanceSettings:
    kind: str
    name: str
    options: Any  # what the kind's parse_config returned
    enabled: bool = True
    templates: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdaptersSettings:
    instances: tuple[AdapterInstanceSettings, ...] = ()
    restart_backoff_min: float = 0.5
    restart_backoff_max: float = 30.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return any(i.enabled for i in self.instances)


def _read_templates(value: Any, rep: KeyReporter) -> dict[str, str]:
    from edge.adapters.base import SubjectTemplates

    table = rep.require_table(value, "subjects")
    child = rep.child("subjects")
    child.reject_unknown(table, _TEMPLATE_KEYS)
    out: dict[str, str] = {}
    for key, text in table.items():
        if not isinstance(text, str) or not text:
            raise child.error(key, f"expected a subject template string, got {text!r}")
        allowed = SubjectTemplates.PLACEHOLDERS[key]
        try:
            sample = text.format(**{k: "x" for k in allowed})
        except (KeyError, IndexError, ValueError) as exc:
            names = ", ".join(sorted(allowed))
            raise child.error(key, f"bad template {text!r}: placeholders are {names} ({exc})") from None
        from edge.config.store_forward import validate_subscribe_subject

        try:
            validate_subscribe_subject(sample)
        except ValueError as exc:
            raise child.error(key, f"template {text!r} does not make a valid subject: {exc}") from None
        if "*" in sample or ">" in sample:
            raise child.error(key, f"template {text!r} must not contain wildcards")
        out[key] = text
    return out


def _read_defaults(value: Any, rep: KeyReporter) -> dict[str, dict[str, Any]]:
    """``[adapters.defaults.<kind>]``: per-kind default keys, checked for a known kind here and by the
    kind's ``parse_config`` in every instance they are merged into."""
    from edge.adapters.registry import AdapterLoadError, resolve

    table = rep.require_table(value, "defaults")
    child = rep.child("defaults")
    out: dict[str, dict[str, Any]] = {}
    for kind, keys in table.items():
        try:
            resolve(kind)
        except AdapterLoadError as exc:
            raise child.error(kind, str(exc)) from None
        own = dict(child.require_table(keys, kind))
        common = sorted(_COMMON_KEYS & own.keys())
        if common:
            raise child.child(kind).error(common[0], f"is per instance: set it in [[adapters.{kind}]]")
        out[kind] = own
    return out


def parse_adapters(raw: Any, rep: KeyReporter) -> AdaptersSettings:
    """Parse the whole section; each instance table is validated by its kind's ``parse_config``."""
    from edge.adapters.registry import AdapterLoadError, resolve

    table: dict[str, Any] = dict(raw)
    kw: dict[str, Any] = {}
    for key in _BACKOFF_KEYS & table.keys():
        kw[key] = rep.read(table, key, v.read_duration, minimum=0.01, maximum=3600.0)
    defaults = _read_defaults(table.get("defaults", {}), rep)
    instances: list[AdapterInstanceSettings] = []
    names: set[str] = set()
    for kind, value in table.items():
        if kind in _GLOBAL_KEYS:
            continue
        try:
            cls = resolve(kind)
        except AdapterLoadError as exc:
            raise rep.error(kind, str(exc)) from None
        items = [value] if isinstance(value, dict) else value
        if not isinstance(items, list):
            raise rep.error(kind, f"expected a table or an array of tables ([[adapters.{kind}]]), got {value!r}")
        for i, item in enumerate(items):
            label = f"{kind}[{i}]"
            inst = {**defaults.get(kind, {}), **rep.require_table(item, label)}
            irep = rep.child(label)
            name = irep.read(inst, "name", v.read_str) if "name" in inst else f"{kind}{i}"
            if name in names:
                raise irep.error("name", f"duplicate adapter name {name!r}")
            names.add(name)
            enabled = irep.read(inst, "enabled", v.read_bool) if "enabled" in inst else True
            templates = _read_templates(inst["subjects"], irep) if "subjects" in inst else {}
            own = {k: val for k, val in inst.items() if k not in _COMMON_KEYS}
            options = cls.parse_config(own, irep)
            instances.append(AdapterInstanceSettings(kind, name, options, enabled, templates))
    if kw.get("restart_backoff_min", 0.5) > kw.get("restart_backoff_max", 30.0):
        raise rep.error("restart_backoff_min", "must not exceed restart_backoff_max")
    return AdaptersSettings(tuple(instances), **kw, raw=table)


def check_adapter_users(adapters: AdaptersSettings, auth: Any) -> None:
    """Every instance's ``user`` must name a configured user; the error names the file and key of ``user``.

    ``auth`` is the final :class:`~edge.config.settings.AuthorizationSettings`. A user is an entry of
    ``authorization.users`` (by ``user`` name or nkey) or the single ``authorization.user``.
    """
    from edge.errors import ConfigError

    known = {u.name for u in auth.users}
    if auth.user is not None:
        known.add(auth.user)
    for inst in adapters.instances:
        user = getattr(inst.options, "user", None)
        if user is None or user in known:
            continue
        source, key = getattr(inst.options, "user_where", None) or ("settings", f"adapters.{inst.kind}.user")
        if not known:
            problem = f"{user!r} is not a configured user: there is no authorization.users (nor authorization.user)"
        else:
            problem = f"{user!r} is not in authorization.users"
        raise ConfigError(source, key, problem)


def _check(section: AdaptersSettings, settings: Any, rep: KeyReporter) -> None:
    check_adapter_users(section, settings.authorization)


register_section("adapters", parse_adapters, _check)
