"""Registers the feature sections of the config file with the loader.

Each feature (leaf uplink, store-and-forward, adapters, monitoring, ...) keeps its schema in its own
module under ``edge/config/`` and registers it here, so the loader itself stays feature-agnostic.
"""

from __future__ import annotations

import edge.config.adapters  # noqa: F401
import edge.config.leafnodes  # noqa: F401
import edge.config.mdns  # noqa: F401
import edge.config.security  # noqa: F401
import edge.config.store_forward  # noqa: F401
