"""Starts the configured adapters under a :class:`~edge.adapters.base.Supervisor` and exposes their devices.

The broker calls ``AdapterManager(server, settings).start()`` after the server listens and ``stop()``
before it shuts down. ``snapshot()`` makes the manager one ``DeviceProvider`` for /devicez covering
every adapter (each restart creates a new adapter object, so providers are not registered per object).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edge.adapters.base import Adapter, AdapterContext, Runnable, SubjectTemplates, Supervisor

if TYPE_CHECKING:
    from collections.abc import Callable

    from edge.adapters.section import AdapterInstanceSettings, AdaptersSettings
    from edge.core.server import Server

__all__ = ["AdapterManager"]

log = logging.getLogger("edge.adapters")


class AdapterManager:
    def __init__(self, server: Server, settings: AdaptersSettings | None, history: Any = None) -> None:
        self.server = server
        self.settings = settings
        self.history = history  # edge.monitoring.statuspage.StatusHistory when the monitoring port runs
        self.supervisor: Supervisor | None = None

    def start(self) -> None:
        s = self.settings
        self.supervisor = Supervisor(
            backoff_min=s.restart_backoff_min if s else 0.5, backoff_max=s.restart_backoff_max if s else 30.0
        )
        if s is None:
            return
        for inst in s.instances:
            if inst.enabled:
                self._add_instance(inst)

    def _add_instance(self, inst: AdapterInstanceSettings) -> None:
        from edge.adapters.registry import resolve

        cls = resolve(inst.kind)
        ctx = AdapterContext(self.server, inst.kind, inst.name, SubjectTemplates(**inst.templates))
        ctx.history = self.history

        def factory() -> Runnable:
            return cls(inst.options, ctx)

        assert self.supervisor is not None
        self.supervisor.add(inst.name, factory, on_stop=ctx.close)
        log.info("adapter %s (%s) started", inst.name, inst.kind)

    async def reconfigure(self, settings: AdaptersSettings | None) -> tuple[list[str], list[str]]:
        """Apply a reloaded ``[adapters]`` section: instances removed or changed are stopped, new or
        changed ones started, the others keep running untouched. Returns (started, stopped) names.
        (An entry-point kind whose options do not compare equal is restarted on every reload.)"""
        def enabled(s: AdaptersSettings | None) -> dict[str, AdapterInstanceSettings]:
            return {i.name: i for i in (s.instances if s else ()) if i.enabled}

        old, new = enabled(self.settings), enabled(settings)
        stopped = [n for n, inst in old.items() if new.get(n) != inst]
        started = [n for n, inst in new.items() if old.get(n) != inst]
        assert self.supervisor is not None, "start() first"
        for name in stopped:
            await self.supervisor.remove(name)
            log.info("adapter %s stopped (configuration reload)", name)
        self.settings = settings
        if settings is not None:
            self.supervisor.backoff_min = settings.restart_backoff_min
            self.supervisor.backoff_max = settings.restart_backoff_max
        for name in started:
            self._add_instance(new[name])
        return started, stopped

    def add(self, name: str, factory: Callable[[], Runnable], on_stop: Callable[[], None] | None = None) -> None:
        """Supervise a part configured elsewhere (e.g. mDNS discovery); see Supervisor.add."""
        assert self.supervisor is not None, "start() first"
        self.supervisor.add(name, factory, on_stop)

    def adapter(self, name: str) -> Any:
        return self.supervisor.current(name) if self.supervisor else None

    def snapshot(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        if self.supervisor is None:
            return rows
        for name, slot in self.supervisor.slots.items():
            cur = slot.current
            if isinstance(cur, Adapter) or hasattr(cur, "snapshot"):
                try:
                    rows.extend(cur.snapshot())  # type: ignore[union-attr]
                except Exception:
                    log.exception("adapter %s: snapshot failed", name)
        return rows

    async def stop(self, timeout: float = 2.0) -> None:
        if self.supervisor is not None:
            await self.supervisor.stop(timeout)
