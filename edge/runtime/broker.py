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
from edge.core.server import Authenticator, ListenerTLS, Server
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
        self.registry: Any = None  # edge.adapters.devices.DeviceRegistry, made by ensure_registry() at start
        self.mdns: Any = None  # edge.adapters.mdns.runtime.MdnsRuntime when [mdns] is enabled
        self.adapters: Any = None  # edge.adapters.manager.AdapterManager when [adapters] has instances
        self.mqtt: Any = None  # edge.mqtt.listener.MQTTListener when [mqtt] has a port
        self.config_load_time = time.time()
        self.lame_duck = False
        self._hub_task: asyncio.Task[None] | None = None  # joining a hub found by mDNS

    async def start(self) -> None:
        tls = self.settings.sections.get("tls")
        self.server = Server(
            self.settings,
            asyncio.get_running_loop(),
            authenticator=build_authenticator(self.settings),
            tls=None if tls is None else _client_tls(tls),
        )
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
            directory, origin = resolve_directory(sf_settings, self.settings.state_dir)
            log.info("Outbox directory %s (from %s)", directory, origin)
            forwarder = Forwarder(self.server, sf_settings, directory, uplink)
            await forwarder.open()
            self.outbox = forwarder
        # Listen only now: a covered publish from the first client is already caught by the outbox.
        await self.server.start()
        from edge.adapters.devices import ensure_registry

        # edge.<gateway>.devices always answers (an empty list without adapters), never no-responders.
        ensure_registry(self)
        mqtt_settings = self.settings.sections.get("mqtt")
        if mqtt_settings is not None and mqtt_settings.enabled:
            from edge.mqtt.listener import MQTTListener, resolve_mqtt_directory  # lazy: idle RSS

            self.mqtt = MQTTListener(self.server, mqtt_settings,
                                     resolve_mqtt_directory(mqtt_settings, self.settings.state_dir), self.outbox)
            await self.mqtt.start()
            self.device_providers.append(self.mqtt)  # MQTT clients in the device list, by client id
        http_port = 0
        if self.settings.http_port:
            from edge.monitoring.http import MonitoringServer

            self.monitor = MonitoringServer(self, asyncio.get_running_loop())
            http_port = await self.monitor.start(self.settings.http_host, self.settings.http_port)
        if self.settings.ports_file_dir:
            self.ports_file = await self.server.write_ports_file(self.settings.ports_file_dir, http_port)
        if self.leaf is not None:
            self.leaf.start()
            self.leaf_links.extend(self.leaf.uplinks)
        if forwarder is not None:
            forwarder.start()
        mdns_settings = self.settings.sections.get("mdns")
        if mdns_settings is not None and mdns_settings.enabled:
            from edge.adapters.mdns.runtime import MdnsRuntime

            self.mdns = MdnsRuntime(self.server, self.registry, mdns_settings, http_port, self.discovered_hub,
                                    getattr(self.monitor, "history", None))
            await self.mdns.start()
            self.device_providers.append(self.mdns)
        await self._apply_adapters(self.settings.sections.get("adapters"))

    async def reload_sections(self, old: Settings, new: Settings) -> list[str]:
        """Apply the feature sections a SIGHUP changed: adapters are reconciled instance by instance,
        the leaf remotes are replaced (their links reconnect; local clients are untouched). Returns the
        changed sections that only a restart applies."""
        sections = ("store_forward", "mdns", "tls", "mqtt", "monitoring")
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

            assert self.server is not None
            self.adapters = AdapterManager(self.server, settings, getattr(self.monitor, "history", None))
            self.adapters.start()
            self.device_providers.append(self.adapters)  # the registry lists every provider's devices
            return
        started, stopped = await self.adapters.reconfigure(settings)
        log.info("Reloaded adapters: %d started, %d stopped", len(started), len(stopped))

    def discovered_hub(self, instance: str, addresses: tuple[str, ...], port: int) -> None:
        """mDNS found a hub (``[mdns] hub_service``): join it as the leaf remote, unless remotes are
        configured or one was discovered already. Its URLs get the ``[leafnodes]`` section's timers."""
        if self.leaf is not None or not addresses or self._hub_task is not None:
            return
        from edge.config.leafnodes import parse_leafnodes
        from edge.config.sections import KeyReporter

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
        if self.mqtt is not None:
            await self.mqtt.stop()  # before the outbox: no covered publish arrives after it stops
        if self.outbox is not None:
            await self.outbox.stop()  # stop forwarding, write out what was appended, close the store
        if self.leaf is not None:
            await self.leaf.stop()
        if self.monitor is not None:
            await self.monitor.stop(timeout=1.0)
        if self.server is not None:
            await self.server.shutdown(timeout)
        if self.ports_file:
            import aiofiles.os

            try:
                await aiofiles.os.remove(self.ports_file)
            except OSError:
                pass


def build_authenticator(settings: Settings) -> Authenticator | None:
    """The client port's authenticator, or None without ``[authorization]`` (edge.security, with its
    bcrypt and nkeys, is imported only when authentication is configured)."""
    if not settings.authorization.required:
        return None
    from edge.security.auth import build_authenticator as build

    return build(settings)


def _client_tls(tls: Any) -> ListenerTLS:
    from edge.security.tls import client_listener_tls

    return client_listener_tls(tls)
