"""Registers the feature sections of the config file with the loader.

Each feature (leaf uplink, store-and-forward, adapters, monitoring, ...) keeps its schema in its own
module under ``edge/config/`` and registers it here, so the loader itself stays feature-agnostic.
"""

from __future__ import annotations

import edge.config.adapters
import edge.config.leafnodes
import edge.config.mdns
import edge.config.security
import edge.config.store_forward  # noqa: F401
