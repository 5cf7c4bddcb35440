"""The mDNS adapter: advertise the broker, browse for devices, publish lifecycle events, poll JSON APIs.

Theory of operation. :class:`MdnsService` owns one ``AsyncZeroconf`` on the broker's loop (bound to the
configured interfaces). When advertising it registers ``<instance>._nats._tcp.local.`` on the client
port (TXT ``version``, ``gateway``, ``server_id``, ``tls``, ``auth``) and, when monitoring is on,
``<instance>._http._tcp.local.``, allowing zeroconf to rename on a collision (``<instance>-2``).
When browsing, an ``AsyncServiceBrowser`` reports Added/Updated/Removed; each Added/Updated is resolved
in an owned task (at most ``MAX_PENDING_RESOLVES`` at once, overflow counted), decoded
(:func:`~.matchers.parse_txt`), matched (:func:`~.matchers.match_service`) and folded into the
:class:`~.devices.DeviceTable`, whose changes become ``evt.<gw>.mdns.<device>.discovered|updated|lost``.
Devices whose matcher names a poller get one owned polling task: readings go to
``dev.<gw>.mdns.<device>.<channel>``; after ``offline_after`` consecutive failures the device is
``offline`` (event), the next success makes it ``online`` again; failures back off exponentially up to
``max_backoff``. Counters are answered on ``edge.<gw>.mdns.stats``.

Commands (:meth:`MdnsService.command`, served by the runtime through the contract of
:mod:`edge.adapters.commands` on ``cmd.<gw>.mdns.<device>.<action>``): Shelly Gen2 RPC for devices with
the ``shelly`` poller, the configured action table for generic ones (:mod:`.actions`). Each is one
bounded HTTP request of its own (the poller's ``timeout``), so a device that hangs delays only its own
commands; an unknown device is ``unknown_device``, a polled device that is offline ``offline`` at once.

zeroconf is imported in this module only; the broker imports it only when ``[mdns]`` is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edge.adapters.devices import iso_ts
from edge.adapters.mdns.config import MdnsSettings, PollerSettings
from edge.protocol.subjects import gateway_token, sanitize_token

from .actions import SHELLY_ACTIONS, generic_request, generic_result, shelly_request, shelly_result
from .devices import DeviceTable, MdnsDevice, ServiceRecord
from .http import PollError, get_json, request_json
from .matchers import (
    DEFAULT_MATCHERS,
    ServiceMatcher,
    device_id_for,
    instance_of,
    match_service,
    normalize_type,
    parse_txt,
    types_of,
)
from .readings import FieldSpec, PollerSpec, extract

if TYPE_CHECKING:
    from edge.adapters.commands import Command
    from edge.adapters.devices import DeviceRegistry

__all__ = ["AdvertiseInfo", "MdnsService", "build_matchers", "build_pollers"]

log = logging.getLogger(__name__)

ADAPTER: Final = "mdns"
NATS_TYPE: Final = "_nats._tcp.local."
HTTP_TYPE: Final = "_http._tcp.local."
MAX_PENDING_RESOLVES: Final = 64
MAX_CONCURRENT_POLLS: Final = 16
MAX_ADDRESSES: Final = 8
STOP_TIMEOUT: Final = 3.0

Publish = Callable[[bytes, bytes], object]


@dataclass(frozen=True, slots=True)
class AdvertiseInfo:
    """What the broker tells the service about itself."""

    gateway: str
    server_id: str
    version: str
    host: str
    port: int
    http_port: int = 0
    tls: bool = False
    auth: bool = False


def build_matchers(settings: MdnsSettings) -> tuple[ServiceMatcher, ...]:
    """Configured matchers first, then one catch-all per extra type, then (optionally) the defaults."""
    out = [ServiceMatcher(m.type, kind=m.kind or m.type.split(".")[0].lstrip("_"), name=m.name,
                          properties=m.properties, poller=m.poller) for m in settings.matchers]
    out += [ServiceMatcher(t, kind=t.split(".")[0].lstrip("_")) for t in settings.types]
    if settings.hub_service:
        out.append(ServiceMatcher(settings.hub_service, kind="hub"))
    if settings.default_matchers:
        out += DEFAULT_MATCHERS
    return tuple(out)


def build_pollers(settings: MdnsSettings) -> dict[str, PollerSpec]:
    pollers: dict[str, PollerSpec] = {"shelly": PollerSpec("shelly", kind="shelly", path="/rpc/Shelly.GetStatus")}
    for name, p in settings.pollers.items():
        pollers[name] = _poller_spec(p)
    return pollers


def _poller_spec(p: PollerSettings) -> PollerSpec:
    path = "/rpc/Shelly.GetStatus" if p.kind == "shelly" else p.path
    return PollerSpec(
        p.name, kind=p.kind, path=path, fields=tuple(FieldSpec(c, jp, u) for c, jp, u in p.fields),
        interval=p.interval, timeout=p.timeout, max_backoff=p.max_backoff, offline_after=p.offline_after,
        max_bytes=p.max_bytes, actions=p.actions,
    )


def _hostname(gateway: str, server_id: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", gateway.lower()).strip("-")[:40] or "nats-edge"
    return f"{label}-{server_id[-6:].lower()}.local."


def _advertised_addresses(host: str, interfaces: tuple[str, ...]) -> list[str]:
    if host not in ("", "0.0.0.0", "::"):
        return [host]
    if interfaces:
        return list(interfaces)
    import ifaddr  # zeroconf's own dependency

    out = [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips
           if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
    return out or ["127.0.0.1"]


@dataclass(slots=True)
class _PollState:
    online: bool | None = None  # None = never polled successfully nor failed enough
    failures: int = 0


class MdnsService:
    """Advertiser + browser + pollers; ``await start()`` then ``await stop()``. Runs on one loop."""

    def __init__(
        self,
        settings: MdnsSettings,
        me: AdvertiseInfo,
        publish: Publish,
        registry: DeviceRegistry | None = None,
        on_hub: Callable[[str, tuple[str, ...], int], None] | None = None,
        history: Any = None,
    ) -> None:
        """``on_hub(instance, addresses, port)`` is called for each resolved ``hub_service`` instance.
        ``history`` (edge.monitoring.statuspage.StatusHistory, when the monitoring port runs) gets each
        polled reading, as adapters' readings, and forgets a device once it is lost."""
        self.settings = settings
        self.on_hub = on_hub
        self.history = history
        self._hub_type = normalize_type(settings.hub_service) if settings.hub_service else ""
        self.me = me
        self._publish = publish
        self.registry = registry
        self.gw = gateway_token(me.gateway)
        self.matchers = build_matchers(settings)
        self.pollers = build_pollers(settings)
        self.table = DeviceTable(settings.max_devices)
        self.stats: Counter[str] = Counter()
        self.own_names: set[str] = set()
        self._azc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._resolving: set[str] = set()
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._poll_state: dict[str, _PollState] = {}
        self._poll_gate = asyncio.Semaphore(MAX_CONCURRENT_POLLS)
        self._infos: list[AsyncServiceInfo] = []
        self._closing = False
        self._rpc_ids = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open zeroconf, start browsing now and advertising in the background (probing takes ~1 s)."""
        ifaces: Any = list(self.settings.interfaces) or None
        kw: dict[str, Any] = {"ip_version": IPVersion.V4Only} if ifaces and all("." in i for i in ifaces) else {}
        self._azc = AsyncZeroconf(interfaces=ifaces, **kw) if ifaces else AsyncZeroconf(**kw)
        if self.settings.browse:
            types = list(types_of(self.matchers))
            if types:
                self._browser = AsyncServiceBrowser(self._azc.zeroconf, types, handlers=[self._on_state_change])
        if self.settings.advertise:
            self._spawn(self._advertise(), "advertise")

    async def stop(self) -> None:
        """Cancel pollers and resolves, say goodbye, close zeroconf; bounded by STOP_TIMEOUT."""
        self._closing = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.gather(*tasks, return_exceptions=True)
                if self._browser is not None:
                    await self._browser.async_cancel()
                if self._azc is not None:
                    await self._azc.async_unregister_all_services()
        except TimeoutError:
            log.warning("mdns: stop did not finish within %.0fs", STOP_TIMEOUT)
        finally:
            if self._azc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._azc.async_close(), STOP_TIMEOUT)
                self._azc = None

    def stats_snapshot(self) -> dict[str, Any]:
        return {
            "gateway": self.me.gateway,
            "devices": len(self.table),
            "devices_refused": self.table.refused,
            "advertised": sorted(self.own_names),
            "counters": dict(sorted(self.stats.items())),
        }

    # -- tasks -------------------------------------------------------------------------------------

    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"mdns-{what}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("mdns: task %s failed", task.get_name(), exc_info=task.exception())

    # -- advertising -------------------------------------------------------------------------------

    async def _advertise(self) -> None:
        assert self._azc is not None
        me = self.me
        instance = (self.settings.instance_name or me.gateway)[:63]
        addresses = [socket.inet_pton(socket.AF_INET6 if ":" in a else socket.AF_INET, a)
                     for a in _advertised_addresses(me.host, self.settings.interfaces)]
        server = _hostname(me.gateway, me.server_id)
        props = {"version": me.version, "gateway": me.gateway, "server_id": me.server_id,
                 "tls": "true" if me.tls else "false", "auth": "true" if me.auth else "false"}
        specs = [(NATS_TYPE, me.port)]
        if me.http_port > 0:
            specs.append((HTTP_TYPE, me.http_port))
        for type_, port in specs:
            info = AsyncServiceInfo(type_, f"{instance}.{type_}", port=port, addresses=addresses,
                                    properties=props, server=server)
            try:
                await (await self._azc.async_register_service(info, allow_name_change=True))
            except Exception as exc:  # a bad name or a closed socket must not take the broker down
                self.stats["advertise_failed"] += 1
                log.error("mdns: could not advertise %s: %s", info.name, exc)
                continue
            self._infos.append(info)
            self.own_names.add(info.name.lower())
            log.info("mdns: advertising %s on port %d", info.name, port)

    # -- browsing ----------------------------------------------------------------------------------

    def _on_state_change(self, zeroconf: Any, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if self._closing:
            return
        self.stats[f"browse_{state_change.name.lower()}"] += 1
        if state_change is ServiceStateChange.Removed:
            self._removed(name)
            return
        key = name.lower()
        if key in self.own_names or key in self._resolving:
            return
        if len(self._resolving) >= MAX_PENDING_RESOLVES:
            self.stats["resolve_overflow"] += 1
            return
        self._resolving.add(key)
        self._spawn(self._resolve(service_type, name), "resolve")

    async def _resolve(self, service_type: str, name: str) -> None:
        try:
            assert self._azc is not None
            info = AsyncServiceInfo(service_type, name)
            ok = await info.async_request(self._azc.zeroconf, int(self.settings.resolve_timeout * 1000))
            if not ok:
                self.stats["resolve_failed"] += 1
                return
            self._resolved(service_type, name, info)
        finally:
            self._resolving.discard(name.lower())

    def _resolved(self, service_type: str, name: str, info: AsyncServiceInfo) -> None:
        if name.lower() in self.own_names:
            return
        try:
            props = info.properties
        except Exception:  # zeroconf could not decode the TXT record at all
            props = None
            self.stats["txt_malformed"] += 1
        txt = parse_txt(props)
        if txt.malformed:
            self.stats["txt_malformed"] += txt.malformed
        if txt.dropped:
            self.stats["txt_dropped"] += txt.dropped
        if txt.txt.get("server_id") == self.me.server_id:
            return  # our own advertisement, seen before its final name was known
        stype = normalize_type(service_type)
        instance = instance_of(name, stype)
        matcher = match_service(self.matchers, stype, instance, txt.txt)
        if matcher is None:
            self.stats["unmatched"] += 1
            return
        if not info.port:
            self.stats["resolve_failed"] += 1
            return
        addresses = tuple(sorted(info.parsed_addresses(), key=lambda a: (":" in a, a))[:MAX_ADDRESSES])
        rec = ServiceRecord(name, stype, instance, (info.server or "").rstrip("."), addresses, int(info.port),
                            tuple(sorted(txt.txt.items())))
        dev_id = device_id_for(instance)
        change, dev = self.table.upsert(dev_id, matcher.kind, matcher.poller, rec, time.time())
        if dev is None:
            log.debug("mdns: device table full, ignoring %s", name)
            return
        self.stats["resolved"] += 1
        if change is not None:
            self._event(dev, change)
        self._ensure_poller(dev)
        self._report(dev)
        if stype == self._hub_type and self.on_hub is not None:
            self.on_hub(instance, addresses, rec.port)

    def _removed(self, name: str) -> None:
        change, dev = self.table.remove(name)
        if dev is None or change is None:
            return
        if change == "lost":
            task = self._pollers.pop(dev.device, None)
            if task is not None:
                task.cancel()
            state = self._poll_state.pop(dev.device, None)
            if state is not None and state.online:
                self._lifecycle(dev.device, "offline", {"reason": "lost"})
            self._event(dev, "lost")
            if self.registry is not None:
                self.registry.remove(ADAPTER, dev.device)
            if self.history is not None:
                self.history.forget(ADAPTER, dev.device)
        else:
            self._event(dev, change)
            self._report(dev)

    # -- publishing --------------------------------------------------------------------------------

    def _event(self, dev: MdnsDevice, change: str) -> None:
        body = dev.as_json()
        body["ts"] = iso_ts(time.time())
        self._lifecycle(dev.device, change, body)

    def _lifecycle(self, device: str, event: str, body: dict[str, Any]) -> None:
        body.setdefault("device", device)
        body.setdefault("ts", iso_ts(time.time()))
        self.stats[f"evt_{event}"] += 1
        self._publish(f"evt.{self.gw}.{ADAPTER}.{device}.{event}".encode(), json.dumps(body).encode())

    def _report(self, dev: MdnsDevice) -> None:
        if self.registry is None:
            return
        if dev.poller is None:
            state = "online"
        else:
            ps = self._poll_state.get(dev.device)
            state = "discovered" if ps is None or ps.online is None else ("online" if ps.online else "offline")
        self.registry.report(ADAPTER, dev.device, state, {**dev.as_json(), "actions": self.actions_of(dev)})

    # -- commands ----------------------------------------------------------------------------------

    def actions_of(self, dev: MdnsDevice) -> list[str]:
        """The command actions of a device: Shelly's built-in ones, a generic poller's table, or none."""
        spec = self.pollers.get(dev.poller) if dev.poller else None
        if spec is None:
            return []
        if spec.kind == "shelly":
            return list(SHELLY_ACTIONS)
        return [a.name for a in spec.actions]

    async def command(self, cmd: Command) -> Any:
        """The command handler (see the module docstring); raises CommandError."""
        from edge.adapters.commands import CommandError

        dev = self.table.devices.get(cmd.device)
        if dev is None:
            raise CommandError("unknown_device", f"no mDNS device {cmd.device!r} is known")
        spec = self.pollers.get(dev.poller) if dev.poller else None
        if spec is None or not self.actions_of(dev):
            raise CommandError("unsupported", f"device {cmd.device} ({dev.kind}) takes no commands")
        state = self._poll_state.get(dev.device)
        if state is not None and state.online is False:
            raise CommandError("offline", f"device {cmd.device} is offline (no answer to its polls)")
        svc = dev.primary()
        host = next((a for a in svc.addresses if ":" not in a), svc.addresses[0] if svc.addresses else "")
        if not host:
            raise CommandError("offline", f"device {cmd.device} has no address")
        action = None
        body: bytes | None
        if spec.kind == "shelly":
            self._rpc_ids += 1
            method, path, body = "POST", "/rpc", shelly_request(cmd.action, cmd.args, self._rpc_ids)
        else:
            action = next((a for a in spec.actions if a.name == cmd.action), None)
            if action is None:
                known = ", ".join(a.name for a in spec.actions)
                raise CommandError("unsupported", f"unknown action {cmd.action!r}; actions: {known}")
            method, path, body = generic_request(action, cmd.args)
        self.stats["commands_sent"] += 1
        try:
            status, doc = await request_json(host, svc.port, path, method=method, body=body, timeout=spec.timeout,
                                             max_bytes=spec.max_bytes)
        except PollError as exc:
            self.stats[f"command_{exc.reason}"] += 1
            if exc.reason == "timeout":
                raise CommandError("timeout", f"no answer from {cmd.device} within {spec.timeout:g}s") from None
            if exc.reason == "unreachable":
                raise CommandError("offline", f"device {cmd.device} is unreachable: {exc}") from None
            raise CommandError("failed", f"bad answer from {cmd.device}: {exc}") from None
        if action is None:
            return shelly_result(status, doc)
        return generic_result(action, status, doc)

    # -- polling -----------------------------------------------------------------------------------

    def _ensure_poller(self, dev: MdnsDevice) -> None:
        if dev.poller is None or dev.device in self._pollers or self._closing:
            return
        spec = self.pollers.get(dev.poller)
        if spec is None:
            self.stats["poller_unknown"] += 1
            return
        self._poll_state[dev.device] = _PollState()
        self._pollers[dev.device] = self._spawn(self._poll_loop(dev.device, spec), f"poll-{dev.device}")

    async def _poll_loop(self, device: str, spec: PollerSpec) -> None:
        state = self._poll_state[device]
        try:
            while True:
                dev = self.table.devices.get(device)
                if dev is None:
                    return
                svc = dev.primary()
                host = next((a for a in svc.addresses if ":" not in a), svc.addresses[0] if svc.addresses else "")
                ok = False
                if not host:
                    self.stats["poll_no_address"] += 1
                else:
                    ok = await self._poll_once(dev, host, svc.port, spec)
                if ok:
                    state.failures = 0
                    if state.online is not True:
                        state.online = True
                        self._lifecycle(device, "online", {})
                        self._report(dev)
                    delay = spec.interval
                else:
                    state.failures += 1
                    if state.failures >= spec.offline_after and state.online is not False:
                        state.online = False
                        self._lifecycle(device, "offline", {"reason": "no answer", "failures": state.failures})
                        self._report(dev)
                    delay = min(spec.interval * (2 ** min(state.failures, 16)), max(spec.max_backoff, spec.interval))
                await asyncio.sleep(delay)
        finally:
            if self._pollers.get(device) is asyncio.current_task():
                del self._pollers[device]

    async def _poll_once(self, dev: MdnsDevice, host: str, port: int, spec: PollerSpec) -> bool:
        self.stats["polls"] += 1
        try:
            async with self._poll_gate:
                doc = await get_json(host, port, spec.path, timeout=spec.timeout, max_bytes=spec.max_bytes)
        except PollError as exc:
            self.stats[f"poll_{exc.reason}"] += 1
            log.debug("mdns: poll %s %s:%d%s failed: %s", dev.device, host, port, spec.path, exc)
            return False
        readings = extract(spec, doc)
        if not readings:
            self.stats["poll_no_readings"] += 1
            return False
        now = time.time()
        ts = iso_ts(now)
        for channel, value, unit in readings:
            body: dict[str, Any] = {"value": value, "ts": ts}
            if unit is not None:
                body["unit"] = unit
            token = sanitize_token(channel)
            self._publish(f"dev.{self.gw}.{ADAPTER}.{dev.device}.{token}".encode(),
                          json.dumps(body, ensure_ascii=False).encode())
            if self.history is not None:
                self.history.record(ADAPTER, dev.device, token, value, unit, now)
        self.stats["readings"] += len(readings)
        self.stats["poll_ok"] += 1
        if self.registry is not None:
            rec = self.registry.get(ADAPTER, dev.device)
            if rec is not None:
                rec.last_seen = time.time()
        return True
