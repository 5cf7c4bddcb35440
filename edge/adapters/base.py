"""The adapter framework: how device-facing code (serial, BLE, mDNS, third-party kinds) plugs into the broker.

The adapter contract
====================

An adapter *kind* is a class derived from :class:`Adapter`::

    class MyAdapter(Adapter):
        kind = "mykind"                      # the [[adapters.mykind]] table name and the subject token

        @classmethod
        def parse_config(cls, table: dict[str, Any], rep: KeyReporter) -> Any:
            # Validate the instance's own keys (the framework has already removed the common keys
            # name, enabled, subjects). Raise rep.error(key, problem) so errors name file and key.
            # Runs at config load: must not import optional hardware libraries or do I/O.
            rep.reject_unknown(table, {"interval"})
            return MyConfig(...)

        async def run(self) -> None:
            # Runs until cancelled. Import bleak/zeroconf/serial *here* (or in modules imported
            # from here), never at module level. Returning or raising counts as a failure: the
            # supervisor logs it, publishes nothing on your behalf, and calls run() again on a
            # *new instance* after a backoff (0.5 s doubling to 30 s; reset after 60 s of running).
            # CancelledError must be re-raised after cleanup.
            while True:
                self.ctx.reading("dev1", "temperature", 21.5, "°C")
                await asyncio.sleep(1)

``self.config`` is what ``parse_config`` returned and ``self.ctx`` an :class:`AdapterContext`, which is
the adapter's only door into the broker (all synchronous, call on the event loop thread):

- ``ctx.reading(device, channel, value, unit=None, ts=None, **extra)`` publishes
  ``{"value":..,"unit":..,"ts":"2026-11-26T12:00:00.000Z", **extra}`` on the reading subject
  (default ``dev.<gateway>.<kind>.<device>.<channel>``), marks the device online (publishing
  ``evt.<gateway>.<kind>.<device>.online`` on the transition) and counts the reading.
- ``ctx.set_online(device, online)`` / ``ctx.event(device, name, **extra)`` publish lifecycle events
  (``online``, ``offline``, ``discovered``, ``lost``) on ``evt.<gateway>.<kind>.<device>.<name>``.
  Their meaning is the same for every kind: ``online``/``offline`` bracket reachability (``offline``
  carries ``reason``); ``discovered``/``lost`` bracket an *unconfigured* device's place in the
  gateway's device table (first heard / forgotten; configured devices are never discovered or lost).
  ``set_online`` publishes only on a transition; ``ctx.device(device)`` returns the :class:`DeviceState`
  (free-form ``extra`` dict, e.g. ``rssi``, shown in /devicez).
- ``ctx.serve_commands(handler, devices)`` is the command contract (:mod:`edge.adapters.commands`): a
  request on ``cmd.<gateway>.<kind>.<device>.<action>`` (JSON object of arguments) runs
  ``await handler(Command)``; its return value is answered ``{"ok": true, "result": ...}``, a raised
  ``CommandError(code, message)`` ``{"ok": false, "error": ..., "code": ...}`` (codes
  ``unknown_device offline unsupported bad_arguments timeout busy failed``); each command is also
  published on ``evt.<gateway>.<kind>.<device>.command`` with its outcome. A device that is offline
  must raise ``offline`` at once. ``Adapter.actions(device)`` names the actions in the device list.
  (``ctx.on_command(device, callback)`` is the raw subscription underneath, for adapters that answer
  in a format of their own; ``ctx.respond(msg, payload)`` answers it.)
- ``ctx.publish(subject, payload)`` / ``ctx.subscribe(subject, callback)`` for anything else; they go
  through the broker's router, so local subscribers, store-and-forward and the leaf uplink apply.
- ``ctx.server`` is the core :class:`~edge.core.server.Server` for adapters that bridge a whole client
  connection (the serial ``nats``/``frames`` codecs); ``ctx.log`` a logger named ``edge.adapters.<name>``.
- Every token put into a subject is sanitised (:func:`sanitize_token`: dots, spaces, wildcards become
  ``_``; the gateway token is :func:`~edge.protocol.subjects.gateway_token` of the server name).
  Templates (``subjects = { reading = "...", event = "...", command = "..." }`` on the instance)
  may use ``{gateway} {adapter} {device} {channel} {event} {action}``.

Buffers an adapter keeps (ingest queues, device maps) must be bounded with a counted overflow; the
counters go into ``DeviceState.extra`` or ``Adapter.counters()``.

Registering a kind: built-ins are listed in :mod:`edge.adapters.registry` as ``"module:Class"`` strings
(imported only when configured); third-party packages declare an entry point in the group
``nats_edge.adapters`` (``mykind = "mypkg.adapter:MyAdapter"``) and need no change here. Parts that are
configured elsewhere (e.g. the ``[mdns]`` section) can still run under the supervisor with
``broker.adapters.add(name, factory)`` where ``factory()`` returns an object with ``async run()``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

# Re-exported: the token rules are the protocol layer's; adapters get them with the rest of their API.
from edge.protocol.subjects import gateway_token, sanitize_token

if TYPE_CHECKING:
    from edge.adapters.commands import CommandService, Handler
    from edge.config.sections import KeyReporter
    from edge.core.internal import InternalClient, Message
    from edge.core.server import Server

__all__ = [
    "Adapter",
    "AdapterContext",
    "DeviceState",
    "Runnable",
    "SubjectTemplates",
    "Supervisor",
    "format_ts",
    "sanitize_token",
]

DEFAULT_READING: Final = "dev.{gateway}.{adapter}.{device}.{channel}"
DEFAULT_EVENT: Final = "evt.{gateway}.{adapter}.{device}.{event}"
DEFAULT_COMMAND: Final = "cmd.{gateway}.{adapter}.{device}.{action}"
LIFECYCLE_EVENTS: Final = ("online", "offline", "discovered", "lost")
MAX_DEVICES: Final = 1024  # per adapter instance; more are counted in devices_dropped and not tracked
BACKOFF_MIN: Final = 0.5
BACKOFF_MAX: Final = 30.0
STABLE_AFTER: Final = 60.0  # seconds of running after which the backoff starts again from the minimum


def format_ts(ts: float) -> str:
    """UNIX seconds -> ``2026-11-26T12:00:00.000Z`` (UTC, milliseconds)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class SubjectTemplates:
    """Per-instance subject templates; placeholders are filled with sanitised tokens."""

    reading: str = DEFAULT_READING
    event: str = DEFAULT_EVENT
    command: str = DEFAULT_COMMAND

    PLACEHOLDERS: ClassVar[dict[str, frozenset[str]]] = {
        "reading": frozenset({"gateway", "adapter", "device", "channel"}),
        "event": frozenset({"gateway", "adapter", "device", "event"}),
        "command": frozenset({"gateway", "adapter", "device", "action"}),
    }


@dataclass(slots=True)
class DeviceState:
    """What the framework knows about one device (rendered by /devicez via :meth:`Adapter.snapshot`)."""

    id: str
    name: str = ""
    online: bool = False
    first_seen: float | None = None  # UNIX seconds it first came online
    last_seen: float | None = None
    readings: int = 0
    errors: int = 0
    discovered: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class AdapterContext:
    """An adapter instance's door into the broker; see the module docstring. Loop-thread only."""

    def __init__(
        self,
        server: Server,
        kind: str,
        name: str,
        templates: SubjectTemplates | None = None,
        gateway: str | None = None,
    ) -> None:
        self.server = server
        self.kind = kind
        self.name = name
        self.templates = templates or SubjectTemplates()
        self.gateway = gateway_token(gateway if gateway is not None else server.server_name)
        self.adapter_token = sanitize_token(kind)
        self.log = logging.getLogger(f"edge.adapters.{name}")
        self.devices: dict[str, DeviceState] = {}
        self.devices_dropped = 0
        self.published = 0
        # edge.monitoring.statuspage.StatusHistory while the monitoring port runs: each reading is recorded
        # there (O(1)) for the status page's last values and sparklines.
        self.history: Any = None
        self._client: InternalClient | None = None
        self.commands: CommandService | None = None

    # -- plumbing -------------------------------------------------------------------------------

    @property
    def client(self) -> InternalClient:
        if self._client is None or self._client.closed:
            self._client = self.server.internal_client(f"adapter:{self.name}")
        return self._client

    def close(self) -> None:
        """Drop the internal client (its subscriptions go with it). Called by the supervisor."""
        if self.commands is not None:
            self.commands.close()
            self.commands = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def subject(self, which: str, device: str, **tokens: str) -> str:
        template = getattr(self.templates, which)
        values = {k: sanitize_token(v) for k, v in tokens.items()}
        dev = sanitize_token(device)
        return template.format(gateway=self.gateway, adapter=self.adapter_token, device=dev, **values)

    def publish(self, subject: str | bytes, payload: bytes, *, reply: str | bytes | None = None) -> int:
        """Publish through the router; returns the number of local receivers."""
        subj = subject.encode() if isinstance(subject, str) else subject
        rep = reply.encode() if isinstance(reply, str) else reply
        self.published += 1
        return self.client.publish(subj, payload, reply=rep)

    def subscribe(self, subject: str, callback: Callable[[Message], None]) -> Any:
        return self.client.subscribe(subject.encode(), callback)

    # -- devices --------------------------------------------------------------------------------

    def device(self, device: str) -> DeviceState | None:
        """The state of ``device``, created on first use; None when MAX_DEVICES are tracked (counted)."""
        state = self.devices.get(device)
        if state is None:
            if len(self.devices) >= MAX_DEVICES:
                self.devices_dropped += 1
                return None
            state = self.devices[device] = DeviceState(id=device, name=device)
        return state

    def event(self, device: str, name: str, **extra: Any) -> None:
        body = {"ts": format_ts(time.time()), **extra}
        self.publish(self.subject("event", device, event=name), json.dumps(body, separators=(",", ":")).encode())

    def set_online(self, device: str, online: bool, **extra: Any) -> None:
        """Record the device's state; publish ``online``/``offline`` on a transition only."""
        state = self.device(device)
        if state is None or state.online == online:
            return
        if online and not state.discovered:
            state.discovered = True
        state.online = online
        if online:
            state.last_seen = time.time()
            if state.first_seen is None:
                state.first_seen = state.last_seen
        self.event(device, "online" if online else "offline", **extra)

    def reading(
        self, device: str, channel: str, value: Any, unit: str | None = None, ts: float | None = None, **extra: Any
    ) -> None:
        """Publish one reading (JSON body as in DESIGN.md) and mark the device online."""
        now = time.time()
        self.set_online(device, True)
        state = self.devices.get(device)
        if state is not None:
            state.readings += 1
            state.last_seen = now
        if self.history is not None:
            self.history.record(self.name, device, channel, value, unit, now)
        body: dict[str, Any] = {"value": value, "unit": unit, "ts": format_ts(ts if ts is not None else now)}
        body.update(extra)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        self.publish(self.subject("reading", device, channel=channel), payload)

    def on_command(self, device: str, callback: Callable[[str, Message], None]) -> Any:
        """Subscribe to the device's command subject (action = ``*``); callback(action, msg)."""
        subject = self.templates.command.format(
            gateway=self.gateway, adapter=self.adapter_token, device=sanitize_token(device), action="*"
        )
        tokens = subject.split(".")
        idx = tokens.index("*") if "*" in tokens else -1

        def deliver(msg: Message) -> None:
            tokens = msg.subject.decode(errors="replace").split(".")
            action = tokens[idx] if 0 <= idx < len(tokens) else tokens[-1]
            callback(action, msg)

        return self.subscribe(subject, deliver)

    def serve_commands(
        self, handler: Handler, devices: Iterable[str], *, timeout: float | None = None, max_in_flight: int = 64
    ) -> CommandService:
        """Serve the command contract for ``devices`` (``"*"`` = every device of this instance; only for a
        kind with one instance); call again to add devices. See :mod:`edge.adapters.commands`."""
        from edge.adapters.commands import DEFAULT_TIMEOUT, CommandService

        if self.commands is None:
            self.commands = CommandService(
                lambda: self.client, self.gateway, self.adapter_token, handler,
                command_template=self.templates.command, event_template=self.templates.event,
                timeout=DEFAULT_TIMEOUT if timeout is None else timeout, max_in_flight=max_in_flight, log=self.log,
            )
        for device in devices:
            self.commands.serve(device)
        return self.commands

    def respond(self, msg: Message, payload: bytes) -> bool:
        if not msg.reply:
            return False
        self.client.publish(msg.reply, payload)
        return True


class Adapter:
    """Base class of every adapter kind; see the module docstring for the contract."""

    kind: ClassVar[str] = ""

    def __init__(self, config: Any, ctx: AdapterContext) -> None:
        self.config = config
        self.ctx = ctx

    @classmethod
    def parse_config(cls, table: dict[str, Any], rep: KeyReporter) -> Any:
        """Validate the instance table (common keys removed); default: accept no keys."""
        rep.reject_unknown(table, frozenset())
        return table

    async def run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def counters(self) -> dict[str, int]:
        """Adapter-wide counters (drops, errors); rendered into each device's snapshot entry."""
        return {}

    def actions(self, device: str) -> list[str]:
        """The command actions ``device`` accepts (listed in /devicez and the device list); default none."""
        return []

    def snapshot(self) -> list[dict[str, Any]]:
        """Device list for /devicez (edge.monitoring.providers.DeviceProvider)."""
        out = []
        for d in self.ctx.devices.values():
            subject = self.ctx.subject("reading", d.id, channel="x").rsplit(".", 1)[0]
            out.append({
                "adapter": self.ctx.kind, "instance": self.ctx.name, "id": d.id, "name": d.name,
                "online": d.online, "first_seen": d.first_seen, "last_seen": d.last_seen, "subject": subject,
                "readings": d.readings, "errors": d.errors, "actions": self.actions(d.id), **d.extra,
            })
        return out


class Runnable(Protocol):
    async def run(self) -> None: ...


@dataclass(slots=True)
class _Slot:
    name: str
    factory: Callable[[], Runnable]
    task: asyncio.Task[None] | None = None
    current: Runnable | None = None
    failures: int = 0
    restarts: int = 0
    last_error: str = ""
    on_stop: Callable[[], None] | None = None


class Supervisor:
    """Runs adapters as owned tasks; a failed adapter is restarted with backoff, never the broker.

    ``add(name, factory, on_stop=None)``: ``factory()`` builds a fresh adapter (anything with
    ``async run()``) for each attempt; ``on_stop`` runs after every attempt (e.g. closes the
    adapter's internal client). ``stop(timeout)`` cancels all and waits, bounded.
    """

    def __init__(
        self, *, backoff_min: float = BACKOFF_MIN, backoff_max: float = BACKOFF_MAX, stable_after: float = STABLE_AFTER
    ) -> None:
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.slots: dict[str, _Slot] = {}
        self._log = logging.getLogger("edge.adapters")
        self._stopping = False

    def add(self, name: str, factory: Callable[[], Runnable], on_stop: Callable[[], None] | None = None) -> None:
        if name in self.slots:
            raise ValueError(f"adapter {name!r} is already supervised")
        slot = _Slot(name, factory, on_stop=on_stop)
        self.slots[name] = slot
        slot.task = asyncio.get_running_loop().create_task(self._supervise(slot), name=f"adapter:{name}")
        slot.task.add_done_callback(self._task_done)

    def current(self, name: str) -> Runnable | None:
        slot = self.slots.get(name)
        return slot.current if slot else None

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # a bug in the supervisor loop itself
            self._log.error("adapter supervisor task %s died", task.get_name(), exc_info=task.exception())

    async def _supervise(self, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        delay = self.backoff_min
        while True:
            started = loop.time()
            try:
                slot.current = slot.factory()
                await slot.current.run()
                slot.last_error = "run() returned"
                self._log.warning("adapter %s stopped by itself; restarting", slot.name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                slot.last_error = f"{type(exc).__name__}: {exc}"
                self._log.error("adapter %s failed: %s", slot.name, slot.last_error, exc_info=exc)
            finally:
                if slot.on_stop is not None:
                    try:
                        slot.on_stop()
                    except Exception:
                        self._log.exception("adapter %s: cleanup failed", slot.name)
            slot.failures += 1
            if loop.time() - started >= self.stable_after:
                delay = self.backoff_min
            self._log.info("adapter %s: restarting in %.1fs", slot.name, delay)
            await asyncio.sleep(delay)
            slot.restarts += 1
            delay = min(self.backoff_max, delay * 2)

    async def remove(self, name: str, timeout: float = 2.0) -> None:
        """Stop supervising ``name``: cancel its task and wait for it (bounded)."""
        slot = self.slots.pop(name, None)
        if slot is not None and slot.task is not None and not slot.task.done():
            slot.task.cancel()
            await asyncio.wait([slot.task], timeout=timeout)

    async def stop(self, timeout: float = 2.0) -> None:
        tasks = [s.task for s in self.slots.values() if s.task is not None and not s.task.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def stats(self) -> dict[str, dict[str, Any]]:
        slots = self.slots.items()
        return {n: {"failures": s.failures, "restarts": s.restarts, "last_error": s.last_error} for n, s in slots}
