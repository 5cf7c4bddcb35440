"""Adapter kinds: built-ins by name, third-party kinds through the ``nats_edge.adapters`` entry point group.

A kind resolves to an :class:`edge.adapters.base.Adapter` subclass. Built-ins are ``"module:Class"``
strings, imported only when a config enables them (so a plain broker never imports pyserial, bleak or
zeroconf: those are imported inside the adapters' ``run()``). A third-party package declares::

    [project.entry-points."nats_edge.adapters"]
    mykind = "mypkg.adapter:MyAdapter"

and ``[[adapters.mykind]]`` in the config enables it. A built-in name cannot be overridden.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from edge.errors import EdgeError

if TYPE_CHECKING:
    from edge.adapters.base import Adapter

__all__ = ["ENTRY_POINT_GROUP", "AdapterLoadError", "available_kinds", "resolve"]

ENTRY_POINT_GROUP: Final = "nats_edge.adapters"


# Built-in kinds -> ``module:Class``. The mDNS adapter is wired by the runtime, not by kind.
_BUILTIN: Final = {
    "serial": "edge.adapters.serial.adapter:SerialAdapter",
    "demo": "edge.adapters.demo:DemoAdapter",
    "ble": "edge.adapters.ble.adapter:BleAdapter",
}


class AdapterLoadError(EdgeError, ValueError):
    """Unknown kind, or its module/class could not be loaded (message says which and why)."""


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in _BUILTIN}


def available_kinds() -> list[str]:
    return sorted(set(_BUILTIN) | set(_entry_points()))


def resolve(kind: str) -> type[Adapter]:
    """Import and return the adapter class for ``kind``; raises :class:`AdapterLoadError`."""
    from edge.adapters.base import Adapter

    target = _BUILTIN.get(kind)
    source = "built-in"
    if target is None:
        target = _entry_points().get(kind)
        source = f"entry point {ENTRY_POINT_GROUP}:{kind}"
    if target is None:
        raise AdapterLoadError(f"unknown adapter kind {kind!r} (available: {', '.join(available_kinds())})")
    module_name, _, attr = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise AdapterLoadError(f"adapter kind {kind!r} ({source} {target}) cannot be loaded: {exc}") from None
    if not (isinstance(obj, type) and issubclass(obj, Adapter)):
        raise AdapterLoadError(f"adapter kind {kind!r} ({source} {target}) is not an edge.adapters.base.Adapter")
    return obj
