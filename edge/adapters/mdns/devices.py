"""Pure bookkeeping of discovered mDNS devices: which services each device has, and what changed.

A device (one id, see :func:`~.matchers.device_id_for`) may be announced under several service types.
:meth:`DeviceTable.upsert` returns ``"discovered"`` for a new device, ``"updated"`` when its addresses,
port or TXT changed, or None; :meth:`DeviceTable.remove` returns ``"lost"`` when the last service of a
device went away. The table is bounded: a new device beyond ``max_devices`` is refused (counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["DeviceTable", "MdnsDevice", "ServiceRecord"]

Change = Literal["discovered", "updated", "lost"]


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One resolved service instance."""

    name: str  # full service name
    type: str
    instance: str
    host: str  # the SRV target
    addresses: tuple[str, ...]
    port: int
    txt: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class MdnsDevice:
    device: str
    kind: str
    poller: str | None
    services: dict[str, ServiceRecord] = field(default_factory=dict)  # full name -> record
    first_seen: float = 0.0
    last_seen: float = 0.0
    last: ServiceRecord | None = None  # the most recent record, kept for the "lost" event

    def primary(self) -> ServiceRecord:
        """The service used for addresses and polling: the first one announced that is still there."""
        for rec in self.services.values():
            return rec
        assert self.last is not None
        return self.last

    def as_json(self) -> dict[str, Any]:
        svc = self.primary()
        return {
            "device": self.device,
            "kind": self.kind,
            "name": svc.instance,
            "type": svc.type,
            "host": svc.host,
            "addresses": list(svc.addresses),
            "port": svc.port,
            "txt": dict(svc.txt),
            "services": sorted(self.services),
        }


class DeviceTable:
    """Discovered devices by id; bounded; no I/O."""

    def __init__(self, max_devices: int) -> None:
        self.max_devices = max_devices
        self.devices: dict[str, MdnsDevice] = {}
        self._by_service: dict[str, str] = {}  # full service name -> device id
        self.refused = 0

    def __len__(self) -> int:
        return len(self.devices)

    def device_of(self, service_name: str) -> MdnsDevice | None:
        dev_id = self._by_service.get(service_name.lower())
        return self.devices.get(dev_id) if dev_id else None

    def upsert(
        self, device_id: str, kind: str, poller: str | None, rec: ServiceRecord, now: float
    ) -> tuple[Change | None, MdnsDevice | None]:
        """Add or refresh a service; returns the change (or None) and the device (None when refused)."""
        key = rec.name.lower()
        dev = self.devices.get(device_id)
        if dev is None:
            if len(self.devices) >= self.max_devices:
                self.refused += 1
                return None, None
            dev = MdnsDevice(device_id, kind, poller, {key: rec}, now, now, rec)
            self.devices[device_id] = dev
            self._by_service[key] = device_id
            return "discovered", dev
        dev.last_seen = now
        old = dev.services.get(key)
        dev.services[key] = rec
        dev.last = rec
        self._by_service[key] = device_id
        if dev.poller is None and poller is not None:
            dev.kind, dev.poller = kind, poller
        if old is None or (old.addresses, old.port, old.txt, old.host) != (rec.addresses, rec.port, rec.txt, rec.host):
            return "updated", dev
        return None, dev

    def remove(self, service_name: str) -> tuple[Change | None, MdnsDevice | None]:
        key = service_name.lower()
        dev_id = self._by_service.pop(key, None)
        if dev_id is None:
            return None, None
        dev = self.devices[dev_id]
        dev.services.pop(key, None)
        if dev.services:
            return "updated", dev
        del self.devices[dev_id]
        return "lost", dev
