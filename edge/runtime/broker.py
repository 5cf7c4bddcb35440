"""The broker process's parts, composed: the core server and (as they are enabled) the monitoring
endpoint, the leaf uplink, the outbox and the adapters. Start order is the dependency order; stop is
the reverse, each step bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from edge.config.settings import Settings
from edge.core.server import Server
from edge.errors import ConfigError

log = logging.getLogger("edge.runtime")


class Broker:
    """Owns the server and the optional parts; ``start()`` then ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.ports_file: str | None = None
        # Monitoring providers (edge.monitoring.providers): the leaf uplink appends one object per
        # remote, each adapter one device provider; the outbox sets ``outbox`` (has ``stats()``).
        self.leaf_links: list[Any] = []
        self.leaf: Any = None  # edge.leaf.uplink.LeafManager when [leafnodes] has remotes
        self.device_providers: list[Any] = []
        self.outbox: Any = None
        self.monitor: Any = None  # edge.monitoring.http.MonitoringServer when -m/http_port is set
        self.registry: Any = None  # edge.runtime.registry.DeviceRegistry, made by ensure_registry() on first use
        self.mdns: Any = None  # edge.adapters.mdns.runtime.MdnsRuntime when [mdns] is enabled
        self.adapters: Any = None  # edge.adapters.manager.AdapterManager when [adapters] has instances
        self.config_load_time = time.time()
        self.lame_duck = False
        self._hub_task: asyncio.Task[None] | None = None  # joining a hub found by mDNS

    async def start(self) -> None:
        self.server = Server(self.settings, asyncio.get_running_loop())
        leaf_settings = self.settings.sections.get("leafnodes")
        sf_settings = self.settings.sections.get("store_forward")
        forwarder = None
        if leaf_settings is not None and leaf_settings.enabled:
            from edge.leaf.uplink import LeafManager

            self.leaf = LeafManager(self.server, leaf_settings)
        if sf_settings is not None and sf_settings.enabled:
            # The outbox opens (and recovers) before the client port listens.
            from edge.store.forwarder import Forwarder, resolve_directory

            uplink = self.leaf.uplinks[0] if self.leaf is not None and self.leaf.uplinks else None
            forwarder = Forwarder(self.server, sf_settings, resolve_directory(sf_settings, self.settings.state_dir),
                                  uplink)
            await forwarder.open()
            self.outbox = forwarder
        # Listen only now: a covered publish from the first client is already caught by the outbox.
        await self.server.start()
        http_port = 0
        if self.settings.http_port:
            from edge.monitoring.http import MonitoringServer

            self.monitor = MonitoringServer(self, asyncio.get_running_loop())
            http_port = await self.monitor.start(self.settings.http_host, self.settings.http_port)
        if self.settings.ports_file_dir:
            self.ports_file = self.server.write_ports_file(self.settings.ports_file_dir, http_port)
        if self.leaf is not None:
            self.leaf.start()
            self.leaf_links.extend(self.leaf.uplinks)
        if forwarder is not None:
            forwarder.start()
        mdns_settings = self.settings.sections.get("mdns")
        if mdns_settings is not None and mdns_settings.enabled:
            from edge.adapters.mdns.runtime import MdnsRuntime

            self.mdns = MdnsRuntime(self, mdns_settings, http_port)
            await self.mdns.start()
            self.device_providers.append(self.mdns)
        await self._apply_adapters(self.settings.sections.get("adapters"))

    async def reload_sections(self, old: Settings, new: Settings) -> list[str]:
        """Apply the feature sections a SIGHUP changed: adapters are reconciled instance by instance,
        the leaf remotes are replaced (their links reconnect; local clients are untouched). Returns the
        changed sections that only a restart applies."""
        sections = ("store_forward", "mdns", "tls")
        restart = [name for name in sections if old.sections.get(name) != new.sections.get(name)]
        adapters = new.sections.get("adapters")
        if old.sections.get("adapters") != adapters:
            await self._apply_adapters(adapters)
        leaf = new.sections.get("leafnodes")
        if old.sections.get("leafnodes") != leaf:
            if self.outbox is not None:
                restart.append("leafnodes")  # the outbox forwards through the running uplink
            else:
                await self._reload_leaf(leaf)
        for name in restart:  # the running value stays in force (and in the settings) until a restart
            if name in old.sections:
                new.sections[name] = old.sections[name]
            else:
                new.sections.pop(name, None)
        return restart

    async def _apply_adapters(self, settings: Any) -> None:
        """Start the adapters (at start, or when a reload adds the first), or reconcile running ones."""
        if self.adapters is None:
            if settings is None or not settings.enabled:
                return
            from edge.adapters.manager import AdapterManager  # edge.adapters.base: the adapter contract
            from edge.runtime.registry import ensure_registry

            assert self.server is not None
            self.adapters = AdapterManager(self.server, settings)
            self.adapters.start()
            self.device_providers.append(self.adapters)
            ensure_registry(self)  # every adapter's devices on edge.<gateway>.devices, mDNS or not
            return
        started, stopped = await self.adapters.reconfigure(settings)
        log.info("Reloaded adapters: %d started, %d stopped", len(started), len(stopped))

    def discovered_hub(self, instance: str, addresses: tuple[str, ...], port: int) -> None:
        """mDNS found a hub (``[mdns] hub_service``): join it as the leaf remote, unless remotes are
        configured or one was discovered already. Its URLs get the ``[leafnodes]`` section's timers."""
        if self.leaf is not None or not addresses or self._hub_task is not None:
            return
        from edge.config.leafnodes import parse_leafnodes
        from edge.config.loader import KeyReporter

        current = self.settings.sections.get("leafnodes")
        raw = dict(getattr(current, "raw", None) or {})
        raw["remotes"] = [{"urls": [f"nats-leaf://{a}:{port}" for a in addresses if ":" not in a]
                           + [f"nats-leaf://[{a}]:{port}" for a in addresses if ":" in a]}]
        try:
            settings = parse_leafnodes(raw, KeyReporter(f"mdns hub {instance!r}"))
        except ConfigError as exc:
            log.error("mdns: cannot use the discovered hub: %s", exc)
            return
        log.info("Leafnode hub %r discovered by mDNS at %s", instance, ", ".join(raw["remotes"][0]["urls"]))
        if self.outbox is not None:
            log.warning("mdns: the discovered hub carries live traffic only; the outbox forwards through a "
                        "configured [leafnodes] remote")
        self._hub_task = asyncio.get_running_loop().create_task(self._reload_leaf(settings), name="mdns-hub")

    async def _reload_leaf(self, settings: Any) -> None:
        if self.leaf is not None:
            await self.leaf.stop()
            for link in self.leaf.uplinks:
                if link in self.leaf_links:
                    self.leaf_links.remove(link)
            self.leaf = None
        if settings is not None and settings.enabled:
            from edge.leaf.uplink import LeafManager

            assert self.server is not None
            self.leaf = LeafManager(self.server, settings)
            self.leaf.start()
            self.leaf_links.extend(self.leaf.uplinks)
        log.info("Reloaded leaf remotes: %d configured", len(self.leaf.uplinks) if self.leaf else 0)

    async def stop(self, timeout: float) -> None:
        if self._hub_task is not None and not self._hub_task.done():
            self._hub_task.cancel()
        if self.adapters is not None:
            await self.adapters.stop(timeout=2.0)
        if self.mdns is not None:
            await self.mdns.stop()
        if self.outbox is not None:
            await self.outbox.stop()  # stop forwarding, write out what was appended, close the store
        if self.leaf is not None:
            await self.leaf.stop()
        if self.monitor is not None:
            await self.monitor.stop(timeout=1.0)
        if self.server is not None:
            await self.server.shutdown(timeout)
        if self.ports_file:
            import os

            try:
                os.unlink(self.ports_file)
            except OSError:
                pass
