"""Where the feature sections of the config file are defined, and what a schema module uses.

Each feature (leaf uplink, store-and-forward, adapters, mDNS, TLS, ...) keeps its schema in its own
module, which registers its parser here (:func:`register_section`) when imported; errors name the file
and key through :class:`KeyReporter`. Schema modules import this module, never the loader. The loader
imports a module only when its section appears in a source: a broker without a leaf uplink or
adapters never loads their schemas (on a 512 MB board the idle footprint counts).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Final

from edge.errors import ConfigError

# section name -> the module whose import registers its parser (register_section)
SECTION_MODULES: Final[dict[str, str]] = {
    "adapters": "edge.adapters.section",
    "auth_backoff": "edge.config.security",
    "leafnodes": "edge.config.leafnodes",
    "mdns": "edge.adapters.mdns.config",
    "monitoring": "edge.config.monitoring",
    "mqtt": "edge.config.mqtt",
    "store_forward": "edge.config.store_forward",
    "tls": "edge.config.security",
}

# A section parser receives the raw table and a function that reports an error for a sub-key.
SectionParser = Callable[[Any, "KeyReporter"], Any]


class KeyReporter:
    """Turns ``ValueError``s from value readers into :class:`ConfigError`s naming source and key."""

    def __init__(self, source: str, prefix: str = "") -> None:
        self.source = source
        self.prefix = prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def child(self, name: str) -> KeyReporter:
        return KeyReporter(self.source, f"{self.prefix}{name}.")

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def read(self, table: dict[str, Any], name: str, reader: Callable[..., Any], **kw: Any) -> Any:
        try:
            return reader(table[name], **kw)
        except ValueError as exc:
            raise self.error(name, str(exc)) from None

    def reject_unknown(self, table: dict[str, Any], known: set[str] | frozenset[str]) -> None:
        for name in table:
            if name not in known:
                raise self.error(name, f"unknown key (known keys: {', '.join(sorted(known))})")

    def require_table(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ConfigError(self.source, self.key(name).rstrip("."), f"expected a table, got {value!r}")
        return value


# Feature sections: name -> parser. Each feature's schema module registers itself here so the
# loader needs no knowledge of leaf links, the outbox or adapters.
SECTIONS: dict[str, SectionParser] = {}


# A section's check against the whole, merged configuration (e.g. a user it names must exist):
# (the section's parsed value, the settings, a reporter for the top level).
SectionCheck = Callable[[Any, Any, "KeyReporter"], None]
SECTION_CHECKS: dict[str, SectionCheck] = {}


def register_section(name: str, parser: SectionParser, check: SectionCheck | None = None) -> None:
    """Called by a schema module when imported: ``parser`` reads the section's table, ``check`` (run
    once every source is merged) checks it against the rest of the configuration."""
    SECTIONS[name] = parser
    if check is not None:
        SECTION_CHECKS[name] = check


def section_parser(name: str) -> SectionParser | None:
    """The parser of feature section ``name``, importing its schema module on first use."""
    parser = SECTIONS.get(name)
    if parser is None and name in SECTION_MODULES:
        importlib.import_module(SECTION_MODULES[name])  # registers itself
        parser = SECTIONS.get(name)
    return parser
