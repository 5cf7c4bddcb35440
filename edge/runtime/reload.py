"""Process lifecycle under systemd: sd_notify, SIGHUP reload, SIGUSR2 lame duck, a test-only loop blocker.

:class:`Lifecycle` is created by ``edge.runtime.main`` once the broker exists. It owns the sd_notify
:class:`~edge.runtime.sdnotify.Heartbeat`, the signal handlers and the tasks they start.

SIGHUP reload, like nats-server's ``Reload()`` (server/reload.go): the whole configuration is read
again (profile, file, the original command-line flags on top) in a worker thread; if it does not
validate, the error (naming file and key) is logged and the running configuration stays in force.
Otherwise what can change at run time is applied to the live server without dropping connections:
limits (max_payload, max_pending, max_connections, max_subscriptions, ping/write deadlines),
authorization, log level; adapters (reconciled per instance) and leaf remotes (replaced) through
``Broker.reload_sections``. Listen addresses, TLS, mDNS and the outbox cannot change (nats-server
refuses listen changes too): a changed value is reported and ignored until a restart.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from edge.config.settings import Settings
from edge.errors import ConfigError
from edge.runtime.broker import build_authenticator
from edge.runtime.sdnotify import Heartbeat, Notifier

if TYPE_CHECKING:
    from edge.runtime.broker import Broker

log = logging.getLogger("edge.runtime")

# Settings that need a restart: nats-server's reload also rejects listen-address changes.
_NOT_RELOADABLE: Final = ("host", "port", "http_host", "http_port", "ports_file_dir", "state_dir", "log_file")

ReloadFn = Callable[[], Settings]


def apply_settings(broker: Broker, new: Settings) -> list[str]:
    """Apply reloadable settings to the running broker; returns the names of ignored (restart-only) keys.

    The objects that own the state apply it: the server its limits and its connections' (see
    :meth:`edge.core.server.Server.apply_settings`), the authenticator the new users.
    """
    server = broker.server
    old = broker.settings
    ignored = [name for name in _NOT_RELOADABLE if getattr(old, name) != getattr(new, name)]
    for name in ignored:
        setattr(new, name, getattr(old, name))
    broker.settings = new
    if server is None:
        return ignored
    if new.authorization != old.authorization or new.sections.get("auth_backoff") != old.sections.get("auth_backoff"):
        closed, removed = server.reload_authorization(new, build_authenticator(new))
        if broker.mqtt is not None:  # MQTT clients are rechecked the same way
            mqtt_closed, mqtt_removed = broker.mqtt.reload_authorization()
            closed, removed = closed + mqtt_closed, removed + mqtt_removed
        if closed or removed:
            log.info("Authorization reloaded: %d client(s) closed, %d subscription(s) removed", closed, removed)
    server.apply_settings(new)
    logging.getLogger("edge").setLevel(logging.DEBUG if (new.debug or new.trace) else logging.INFO)
    return ignored


class Lifecycle:
    """Signals and sd_notify for one broker run. Create after ``Broker.start()``; ``close()`` at the end."""

    def __init__(self, broker: Broker, stop: asyncio.Event, reload_fn: ReloadFn | None) -> None:
        self.broker = broker
        self.stop_event = stop
        self.reload_fn = reload_fn
        self.loop = asyncio.get_running_loop()
        self.notifier = Notifier()
        self.heartbeat = Heartbeat(self.notifier, self.loop, self.status_text)
        self.tasks: set[asyncio.Task[None]] = set()
        self.reloads = 0
        self.reload_failures = 0
        self._reloading = False
        self._last_status = (time.monotonic(), 0, 0)

    # -- signals ---------------------------------------------------------------------------------

    def install_signals(self) -> None:
        self.loop.add_signal_handler(signal.SIGHUP, self._spawn, self.reload, "reload")
        self.loop.add_signal_handler(signal.SIGUSR2, self._spawn, self.lame_duck, "lame duck")

    def remove_signals(self) -> None:
        for sig in (signal.SIGHUP, signal.SIGUSR2):
            self.loop.remove_signal_handler(sig)

    def _spawn(self, fn: Callable[[], object], what: str) -> None:
        task: asyncio.Task[None] = self.loop.create_task(fn(), name=what)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    # -- sd_notify -------------------------------------------------------------------------------

    def ready(self) -> None:
        """READY=1 (listeners bound, store recovered: Broker.start() has returned) and start pings."""
        self.notifier.ready(self.status_text())
        self.heartbeat.start()

    def stopping(self) -> None:
        self.notifier.stopping()
        self.heartbeat.stop()

    def close(self) -> None:
        self.heartbeat.stop()
        for task in list(self.tasks):
            task.cancel()
        self.notifier.close()

    def status_text(self) -> str:
        """``STATUS=`` text: clients, message rates since the last status, uplink state, outbox depth."""
        server = self.broker.server
        if server is None:
            return "starting"
        now = time.monotonic()
        last_t, last_in, last_out = self._last_status
        r = server.router
        dt = max(now - last_t, 1e-3)
        rate_in, rate_out = (r.in_msgs - last_in) / dt, (r.out_msgs - last_out) / dt
        self._last_status = (now, r.in_msgs, r.out_msgs)
        parts = [f"{len(server.clients)} clients", f"in {rate_in:.0f} msg/s", f"out {rate_out:.0f} msg/s"]
        links = [link.snapshot() for link in self.broker.leaf_links]
        if links:
            up = sum(1 for ln in links if ln.get("connected"))
            parts.append(f"uplink {up}/{len(links)} up")
        else:
            parts.append("no uplink")
        if self.broker.outbox is not None:
            parts.append(f"outbox {getattr(self.broker.outbox.stats(), 'depth_msgs', 0)} msgs")
        if self.broker.lame_duck:
            parts.append("lame duck")
        return ", ".join(parts)

    # -- reload ----------------------------------------------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: RELOADING=1, re-read and apply the configuration, then READY=1 (also on failure)."""
        if self._reloading:
            log.warning("Reload already in progress, ignoring SIGHUP")
            return
        self._reloading = True
        self.notifier.reloading()
        try:
            log.info("Reloading server configuration")
            if self.reload_fn is None:
                log.error("Reload not possible: the broker was not started from a configuration")
                return
            try:
                # The whole re-read runs in a worker thread, not just its file reads (which is all that
                # aiofiles would move off the loop): the profile lookup stats files and a newly configured
                # adapter kind imports its module, and each of those can stall on a slow SD card too.
                new = await asyncio.to_thread(self.reload_fn)
            except ConfigError as exc:
                self.reload_failures += 1
                log.error("Failed to reload server configuration: %s (keeping the running configuration)", exc)
                return
            old = self.broker.settings
            ignored = apply_settings(self.broker, new)
            ignored += await self.broker.reload_sections(old, new)
            for name in ignored:
                log.warning("Reload: %s cannot change at run time (restart to apply), keeping the old value", name)
            self.reloads += 1
            self.broker.config_load_time = time.time()
            log.info("Reloaded server configuration")
        finally:
            self._reloading = False
            self.notifier.ready(self.status_text())

    # -- lame duck -------------------------------------------------------------------------------

    async def lame_duck(self) -> None:
        """SIGUSR2: stop accepting, tell clients (INFO ldm), close them paced, then stop the process."""
        from edge.runtime.lameduck import run_lame_duck

        if self.broker.lame_duck:
            return
        await run_lame_duck(self.broker, self.notifier)
        self.stop_event.set()
