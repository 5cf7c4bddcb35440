"""BLE adapter: advertisement decoders (pure), a bleak-based scanner and a GATT client layer.

Importing this package imports nothing from bleak; ``scanner`` and ``gatt`` import bleak lazily when
they start.
"""

from __future__ import annotations
