"""The device registry: every adapter reports the devices it knows; requests on a subject list them.

Adapters call :meth:`DeviceRegistry.report` (a device was seen, with its state and descriptive info)
and :meth:`DeviceRegistry.remove` (it is gone). Adapters under the framework (edge.adapters.base) need not
report: the registry also lists every monitoring device provider (``broker.device_providers``, whose
``snapshot()`` returns ``{"adapter", "id", "online", "last_seen", ...}`` dicts); a directly reported
record wins over a provider's entry for the same ``(adapter, device)``. The registry is a plain,
bounded, synchronous object with no broker imports; :meth:`DeviceRegistry.attach` makes it answer requests on
``edge.<gateway>.devices`` through an internal client.

Request: any payload; an optional JSON object filters: ``{"adapter": "mdns", "state": "online"}``.
Reply: ``{"gateway": .., "devices": [{"adapter", "device", "state", "first_seen", "last_seen", "actions",
"info"}], "count": n, "evicted": n}``; ``actions`` lists the command actions the device accepts (on
``cmd.<gateway>.<adapter>.<device>.<action>``; an adapter reports them under the ``actions`` key), with
times as ISO-8601 UTC strings; devices sorted by adapter then id. A
reply that would exceed max_payload lists the first devices that fit and says ``"truncated": n``.
When full, the least recently seen device is evicted (counted).

The attached registry also answers commands nobody owns: a request on ``cmd.<gateway>.>`` that no other
subscription matches (no adapter serves that device, no device subscribed) gets the command envelope
``{"ok": false, "code": "unknown_device", ...}`` instead of no-responders, so every command gets the
one envelope. Where anything else matches the subject (an adapter, a device, a monitor of ``cmd.>``,
a hub's interest over the leaf) the registry stays silent.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from edge.core.internal import InternalClient, Message
    from edge.core.server import Server

__all__ = ["DEFAULT_MAX_DEVICES", "DeviceRecord", "DeviceRegistry", "iso_ts", "registry_subject"]

log = logging.getLogger(__name__)

DEFAULT_MAX_DEVICES: Final = 4096
# Provider snapshot keys that become the reply's own fields; the rest go into "info".
_PROVIDER_KEYS: Final = frozenset({"adapter", "id", "online", "first_seen", "last_seen", "actions"})


def iso_ts(epoch: float) -> str:
    """``2026-11-26T12:00:00.000Z`` (the DESIGN's timestamp format). time.gmtime, not datetime: the
    registry is on every broker's start path, and datetime costs idle RSS for nothing else."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(epoch)) + f"{int(epoch * 1000) % 1000:03d}Z"


def registry_subject(gateway: str) -> bytes:
    return f"edge.{gateway}.devices".encode()


@dataclass(slots=True)
class DeviceRecord:
    adapter: str
    device: str
    state: str
    first_seen: float
    last_seen: float
    info: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "adapter": self.adapter,
            "device": self.device,
            "state": self.state,
            "first_seen": iso_ts(self.first_seen),
            "last_seen": iso_ts(self.last_seen),
            "actions": list(self.info.get("actions", ())),
            "info": {k: v for k, v in self.info.items() if k != "actions"},
        }


class DeviceRegistry:
    """Known devices from every adapter, keyed by ``(adapter, device)``; bounded (LRU by last report)."""

    def __init__(
        self, gateway: str, *, max_devices: int = DEFAULT_MAX_DEVICES,
        providers: Callable[[], Iterable[Any]] | None = None,
    ) -> None:
        self.gateway = gateway
        self.providers = providers
        self.provider_errors = 0
        self.max_devices = max_devices
        self._devices: OrderedDict[tuple[str, str], DeviceRecord] = OrderedDict()
        self.evicted = 0
        self.requests = 0
        self.unowned_commands = 0
        self._client: InternalClient | None = None
        self._cmd_sub: Any = None

    def __len__(self) -> int:
        return len(self._devices)

    def report(
        self, adapter: str, device: str, state: str, info: dict[str, Any] | None = None, *, now: float | None = None
    ) -> DeviceRecord:
        """Record that ``device`` of ``adapter`` is in ``state``; ``info`` (if given) replaces the old info."""
        ts = time.time() if now is None else now
        key = (adapter, device)
        rec = self._devices.get(key)
        if rec is None:
            rec = DeviceRecord(adapter, device, state, ts, ts, dict(info or {}))
            self._devices[key] = rec
            while len(self._devices) > self.max_devices:
                self._devices.popitem(last=False)
                self.evicted += 1
        else:
            rec.state = state
            rec.last_seen = ts
            if info is not None:
                rec.info = dict(info)
            self._devices.move_to_end(key)
        return rec

    def set_state(self, adapter: str, device: str, state: str) -> None:
        """Change a known device's state without touching last_seen (e.g. offline after silence)."""
        rec = self._devices.get((adapter, device))
        if rec is not None:
            rec.state = state

    def remove(self, adapter: str, device: str) -> bool:
        return self._devices.pop((adapter, device), None) is not None

    def get(self, adapter: str, device: str) -> DeviceRecord | None:
        return self._devices.get((adapter, device))

    def devices(self, *, adapter: str | None = None, state: str | None = None) -> list[DeviceRecord]:
        recs = [
            r for r in self._devices.values()
            if (adapter is None or r.adapter == adapter) and (state is None or r.state == state)
        ]
        recs.sort(key=lambda r: (r.adapter, r.device))
        return recs

    def snapshot(self, query: bytes = b"") -> dict[str, Any]:
        """The reply document for a request payload (see the module docstring)."""
        adapter = state = None
        if query.strip():
            try:
                q = json.loads(query)
            except (ValueError, UnicodeDecodeError):
                q = None
            if isinstance(q, dict):
                adapter = q.get("adapter") if isinstance(q.get("adapter"), str) else None
                state = q.get("state") if isinstance(q.get("state"), str) else None
        docs = [r.as_json() for r in self.devices(adapter=adapter, state=state)]
        seen = set(self._devices)  # every directly reported device, filtered in or not
        for d in self._provided():
            if (d["adapter"], d["device"]) in seen:
                continue
            if (adapter is None or d["adapter"] == adapter) and (state is None or d["state"] == state):
                docs.append(d)
        docs.sort(key=lambda d: (d["adapter"], d["device"]))
        return {"gateway": self.gateway, "devices": docs, "count": len(docs), "evicted": self.evicted}

    def _provided(self) -> list[dict[str, Any]]:
        """Devices from the monitoring providers, in the reply's shape; a failing provider is counted."""
        out: list[dict[str, Any]] = []
        for provider in list(self.providers() if self.providers is not None else ()):
            try:
                items = provider.snapshot()
                for item in items[: self.max_devices]:
                    info = {k: v for k, v in item.items() if k not in _PROVIDER_KEYS}
                    first, last = item.get("first_seen"), item.get("last_seen")
                    out.append({
                        "adapter": str(item.get("adapter", "")),
                        "device": str(item.get("id", "")),
                        "state": "online" if item.get("online") else "offline",
                        "first_seen": iso_ts(first) if isinstance(first, int | float) else None,
                        "last_seen": iso_ts(last) if isinstance(last, int | float) else None,
                        "actions": list(item.get("actions") or ()),
                        "info": info,
                    })
            except Exception:
                self.provider_errors += 1
                log.exception("device registry: a device provider failed")
        return out

    # -- broker side ----------------------------------------------------------------------------

    def attach(self, server: Server) -> None:
        """Answer requests on ``edge.<gateway>.devices``; idempotent."""
        if self._client is not None:
            return
        self._client = server.internal_client("device-registry")
        self._client.subscribe(registry_subject(self.gateway), self._on_request)
        self._cmd_sub = self._client.subscribe(f"cmd.{self.gateway}.>".encode(), self._on_unowned_command)

    def detach(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _on_unowned_command(self, msg: Message) -> None:
        client = self._client
        if not msg.reply or client is None:
            return
        m = client.server.sublist.match(msg.subject)
        if any(sub is not self._cmd_sub for sub in m.plain) or m.queues:
            return  # someone else may answer
        self.unowned_commands += 1
        tokens = msg.subject.decode(errors="replace").split(".")
        body = {"ok": False, "error": f"no adapter of gateway {self.gateway} serves {'.'.join(tokens[2:4])!r}",
                "code": "unknown_device"}  # the envelope of edge.adapters.commands
        client.publish(msg.reply, json.dumps(body, separators=(",", ":")).encode())

    def _on_request(self, msg: Message) -> None:
        self.requests += 1
        if not msg.reply or self._client is None:
            return
        self._client.publish(msg.reply, self.reply_body(msg.payload, self._client.server.settings.max_payload))

    def reply_body(self, query: bytes, limit: int) -> bytes:
        """The JSON reply, cut to ``limit`` bytes (the broker's max_payload, which clients also enforce):
        the devices that do not fit are left out and counted in ``"truncated"``, with ``count`` still
        the total, so a caller knows to narrow the query (``{"adapter": ...}``, ``{"state": ...}``)."""
        doc = self.snapshot(query)
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        devices = doc["devices"]
        keep = len(devices)
        while len(body) > limit and keep > 0:
            keep = keep * limit // len(body) if keep > 1 else 0  # proportional cut, then re-measure
            doc["devices"] = devices[:keep]
            doc["truncated"] = len(devices) - keep
            body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        return body


def ensure_registry(broker: Any) -> DeviceRegistry:
    """The broker's registry, created and attached to its server on first use (any adapter may call it).

    ``broker`` is an :class:`edge.runtime.broker.Broker` whose ``server`` is started; the registry
    answers on ``edge.<gateway>.devices`` where ``<gateway>`` is the sanitised server name.
    """
    reg: DeviceRegistry | None = getattr(broker, "registry", None)
    if reg is None:
        from edge.protocol.subjects import gateway_token

        reg = DeviceRegistry(gateway_token(broker.server.server_name), providers=lambda: broker.device_providers)
        broker.registry = reg
    reg.attach(broker.server)
    return reg
