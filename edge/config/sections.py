"""Where the feature sections of the config file are defined.

Each feature (leaf uplink, store-and-forward, adapters, mDNS, TLS, ...) keeps its schema in its own
module under ``edge/config/``, which registers its parser with the loader when imported. The loader
imports a module only when its section appears in a source: a broker without a leaf uplink or
adapters never loads their schemas (on a 512 MB board the idle footprint counts).
"""

from __future__ import annotations

from typing import Final

# section name -> the module whose import registers its parser (edge.config.loader.register_section)
SECTION_MODULES: Final[dict[str, str]] = {
    "adapters": "edge.config.adapters",
    "auth_backoff": "edge.config.security",
    "leafnodes": "edge.config.leafnodes",
    "mdns": "edge.config.mdns",
    "store_forward": "edge.config.store_forward",
    "tls": "edge.config.security",
}
