"""nats-edge: a NATS-protocol broker for IoT gateways.

The import package is deliberately light: importing ``edge`` pulls in nothing but the version, so
that ``nats-edge check-config`` and the adapters' lazy imports stay cheap on a 512 MB board.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
