"""nats-edge: a NATS-protocol broker for IoT gateways.

The import package is deliberately light: importing ``edge`` pulls in nothing but the version, so
that ``nats-edge check-config`` and the adapters' lazy imports stay cheap on a 512 MB board.
"""

from __future__ import annotations

__all__ = ["NATS_SERVER_VERSION", "__version__"]

__version__ = "0.1.0"

# The nats-server version whose client and leafnode protocol we speak, reported as INFO/varz
# `version` (and leaf CONNECT `version`) because clients and hubs gate features on it (nats.py's
# connected_server_version, a hub's leafnodes min_version). 2.10.0: headers, no_responders and the
# leafnode protocol (LS+/LS-/LMSG, leaf CONNECT fields) as captured from nats-server 2.10+.
# Our own release is reported separately as `edge_version`.
NATS_SERVER_VERSION = "2.10.0"
