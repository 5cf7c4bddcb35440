"""What other parts of the broker hand to the monitoring endpoint: small snapshot interfaces.

The monitoring code never reaches into the leaf uplink, the outbox or the adapters; each exposes a
``snapshot()`` that returns plain data, called on the event loop (so it must be cheap and must not
block). Until a part exists its list is empty and the endpoints render ``[]``/zeros.

Leaf link snapshot (``LeafLinkProvider.snapshot()``), one per configured remote; keys beyond these are
ignored, missing ones default to zero/empty::

    {"name": "hub1",              # the hub's server_name once connected, else ""
     "url": "nats-leaf://hub:7422",  # the remote URL currently used (credentials removed)
     "connected": True,
     "account": "$G",
     "ip": "10.0.0.5", "port": 7422,
     "rtt": 0.0123,               # seconds
     "in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0,
     "subscriptions": 0,           # interest sent to the hub (LS+)
     "subscriptions_list": [],     # subjects, only rendered with ?subs=1
     "compression": "off",
     "reconnects": 0}

Device snapshot (``DeviceProvider.snapshot()`` returns a list, one provider per adapter)::

    {"adapter": "ble", "id": "A4:C1:38:00:11:22", "name": "Kitchen", "online": True,
     "first_seen": 1764150000.0,   # UNIX seconds or None (never seen)
     "last_seen": 1764158400.0,    # UNIX seconds or None
     "subject": "dev.gw1.ble.kitchen", "readings": 42, "errors": 0,
     "rssi": -71}                  # any further JSON-serialisable keys are passed through to /devicez
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["DeviceProvider", "LeafLinkProvider", "OutboxProvider"]


@runtime_checkable
class LeafLinkProvider(Protocol):
    def snapshot(self) -> dict[str, Any]:
        """One leaf remote's state, in the shape documented in this module."""
        ...


@runtime_checkable
class DeviceProvider(Protocol):
    def snapshot(self) -> list[dict[str, Any]]:
        """The adapter's devices, in the shape documented in this module."""
        ...


@runtime_checkable
class OutboxProvider(Protocol):
    def stats(self) -> Any:
        """An object with int/float attributes (edge.store.log.OutboxStats); numbers become metrics."""
        ...
