"""Wiring of the mDNS adapter into a running broker (called by edge.runtime.broker when ``[mdns]`` is on).

Publishes through an internal client named ``mdns``, reports devices to the broker's device registry
(:class:`edge.adapters.devices.DeviceRegistry`), answers counters on ``edge.<gateway>.mdns.stats``,
serves commands on ``cmd.<gateway>.mdns.<device>.<action>`` (:mod:`edge.adapters.commands`) and offers a
monitoring device provider (``snapshot()``).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from edge import __version__
from edge.adapters.base import DEFAULT_COMMAND, DEFAULT_EVENT
from edge.adapters.commands import CommandService
from edge.protocol.subjects import gateway_token

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge.adapters.devices import DeviceRegistry
    from edge.adapters.mdns.config import MdnsSettings
    from edge.core.internal import InternalClient, Message
    from edge.core.server import Server

    from .service import MdnsService

__all__ = ["MdnsRuntime"]

log = logging.getLogger(__name__)


class MdnsRuntime:
    """Owns the MdnsService and its internal client for one broker.

    ``server`` is started (its port is advertised); ``on_hub`` is called with a hub that ``hub_service``
    discovers (the runtime joins it as a leaf remote).
    """

    def __init__(self, server: Server, registry: DeviceRegistry, settings: MdnsSettings, http_port: int = 0,
                 on_hub: Callable[..., Any] | None = None, history: Any = None) -> None:
        self.server = server
        self.history = history  # edge.monitoring.statuspage.StatusHistory when the monitoring port runs
        self.registry = registry
        self.on_hub = on_hub
        self.settings = settings
        self.http_port = http_port
        self.service: MdnsService | None = None
        self.commands: CommandService | None = None
        self._client: InternalClient | None = None

    async def start(self) -> None:
        from .service import AdvertiseInfo, MdnsService  # imports zeroconf

        server = self.server
        registry = self.registry
        self._client = client = server.internal_client("mdns")
        me = AdvertiseInfo(
            gateway=server.server_name,
            server_id=server.server_id,
            version=__version__,
            host=server.settings.host,
            port=server.port,
            http_port=self.http_port,
            tls=server.tls is not None,
            auth=server.auth_required,
        )
        on_hub = self.on_hub if self.settings.hub_service else None
        self.service = MdnsService(self.settings, me, lambda s, p: client.publish(s, p), registry, on_hub,
                                   self.history)
        gw = gateway_token(server.server_name)
        client.subscribe(f"edge.{gw}.mdns.stats".encode(), self._on_stats)
        self.commands = CommandService(lambda: client, gw, "mdns", self.service.command,
                                       command_template=DEFAULT_COMMAND, event_template=DEFAULT_EVENT, log=log)
        self.commands.serve("*")
        try:
            await self.service.start()
        except OSError as exc:  # no multicast on this host: the broker runs on without mDNS
            log.error("mdns: cannot start (%s); discovery and advertising are off", exc)
            await self.service.stop()
            self.service = None

    async def stop(self) -> None:
        if self.commands is not None:
            self.commands.close()
        if self.service is not None:
            await self.service.stop()
        if self._client is not None:
            self._client.close()

    def _on_stats(self, msg: Message) -> None:
        if msg.reply and self._client is not None and self.service is not None:
            self._client.publish(msg.reply, json.dumps(self.service.stats_snapshot()).encode())

    def snapshot(self) -> list[dict[str, Any]]:
        """Monitoring device provider (edge.monitoring.providers.DeviceProvider)."""
        svc = self.service
        if svc is None:
            return []
        gw = svc.gw
        out: list[dict[str, Any]] = []
        for dev in svc.table.devices.values():
            ps = svc._poll_state.get(dev.device)
            online = True if dev.poller is None else bool(ps and ps.online)
            p = dev.primary()
            out.append({"adapter": "mdns", "id": dev.device, "name": p.instance, "online": online,
                        "first_seen": dev.first_seen, "last_seen": dev.last_seen,
                        "subject": f"dev.{gw}.mdns.{dev.device}", "kind": dev.kind,
                        "addresses": list(p.addresses), "port": p.port, "actions": svc.actions_of(dev)})
        return out
