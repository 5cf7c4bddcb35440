"""Connected GATT devices: connect, subscribe/poll characteristics, reconnect with backoff, write.

Theory of operation: one long-lived task per configured device. A task takes a connection slot (an
``asyncio.Semaphore`` of ``max_connections``; adapters have 3–9 slots, device-formats.md §2.4 [B8][B9]) for
as long as it is connected, subscribes to its ``notify`` characteristics, reads its ``poll`` ones every
``poll_interval`` and waits for the link to drop. Any failure releases the slot and retries after a
capped exponential backoff that resets on a successful connect. Values are decoded with
``decoders.decode_characteristic`` (SIG scalings or a declared struct layout) and reported through plain
callbacks. bleak is imported only when a connection is attempted; no broker imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from edge.errors import EdgeError

from .decoders import StructLayout, decode_characteristic, normalize_address, uuid16
from .decoders.gatt_values import FORMAT
from .scanner import OnDeviceState, OnReading, default_device_id

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTIONS: Final = 3  # ESPHome's default; CSR dongles allow 5, Broadcom 7 (§2.4 [B8][B9])
READ_ECHO_WINDOW: Final = 1.0  # s: a read also fires the notify callback (ble-testing.md pitfall 18)
MAX_HELD: Final = 16  # notifications held per characteristic while its read is in flight


class GattError(EdgeError):
    """A GATT operation failed (not connected, unknown characteristic, refused by the device)."""


def _full_uuid(u: str) -> str:
    u = u.lower()
    return uuid16(int(u, 16)) if len(u) == 4 else u


@dataclass(frozen=True, slots=True)
class CharacteristicConfig:
    """One characteristic to read. ``uuid`` may be 16-bit (``"2a6e"``) or full 128-bit."""

    uuid: str
    mode: Literal["notify", "poll", "both"] = "notify"
    poll_interval: float = 60.0
    layout: StructLayout | None = None  # raw characteristics: declared struct layout

    @property
    def full_uuid(self) -> str:
        return _full_uuid(self.uuid)


@dataclass(frozen=True, slots=True)
class GattDeviceConfig:
    address: str
    characteristics: tuple[CharacteristicConfig, ...] = ()
    device_id: str | None = None

    @property
    def id(self) -> str:
        return self.device_id or default_device_id(normalize_address(self.address))


@dataclass(slots=True)
class GattStats:
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    notifications: int = 0
    reads: int = 0
    undecodable: int = 0
    echoes_dropped: int = 0
    held_overflow: int = 0
    writes: int = 0
    callback_errors: int = 0


class _Link:
    """State of one device's connection task."""

    def __init__(self, cfg: GattDeviceConfig) -> None:
        self.cfg = cfg
        self.client: Any = None
        self.online = False
        self.lost = asyncio.Event()
        self.last_read: dict[str, tuple[bytes, float]] = {}
        self.inflight: dict[str, list[bytes]] = {}  # notifications held while a read of that uuid runs


class GattManager:
    """Keep configured GATT devices connected and report their characteristic values.

    Args:
        devices: devices to connect to.
        on_reading: ``(device_id, measurements, None, "gatt")``.
        on_device_state: ``(device_id, "online" | "offline")`` on connect / link loss.
        adapter: BlueZ adapter name.
        max_connections: connection-slot limit shared by all devices.
        backoff: (first, max) seconds between reconnect attempts.
        resolve_device: ``await resolve_device(address, timeout)`` gives the bleak ``BLEDevice`` to connect
            to (``BleScanner.connect_target``: waits until the scanner has heard the device, so a connect
            never opens a discovery session of its own next to the scanner's, which BlueZ refuses with
            InProgress, ble-testing.md pitfall 17), or None to connect by address; it raises TimeoutError
            when the device is not heard in time. Without it, every connect is by address.
    """

    def __init__(
        self,
        devices: tuple[GattDeviceConfig, ...],
        *,
        on_reading: OnReading,
        on_device_state: OnDeviceState,
        adapter: str = "hci0",
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        backoff: tuple[float, float] = (1.0, 60.0),
        connect_timeout: float = 10.0,
        resolve_device: Callable[[str, float], Awaitable[Any]] | None = None,
    ) -> None:
        self.on_reading = on_reading
        self.on_device_state = on_device_state
        self.adapter = adapter
        self.backoff = backoff
        self.connect_timeout = connect_timeout
        self.resolve_device = resolve_device
        self.stats = GattStats()
        self.slots = asyncio.Semaphore(max_connections)
        self._links: dict[str, _Link] = {}
        for d in devices:
            link = _Link(d)
            self._links[d.id] = link
            self._links.setdefault(normalize_address(d.address), link)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    @property
    def connected(self) -> list[str]:
        return sorted({link.cfg.id for link in self._links.values() if link.online})

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for link in {id(x): x for x in self._links.values()}.values():
            t = loop.create_task(self._device_loop(link), name=f"ble-gatt-{link.cfg.id}")
            self._tasks.add(t)
            t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("BLE GATT task %s died", t.get_name(), exc_info=t.exception())

    async def stop(self, timeout: float = 5.0) -> None:
        """Disconnect everything and end the tasks (bounded)."""
        self._stopping.set()
        for link in self._links.values():
            link.lost.set()
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for t in pending:
                t.cancel(msg="GattManager.stop timed out")
            if pending:
                await asyncio.wait(pending, timeout=timeout)

    def drop_links(self) -> int:
        """Treat every open link as lost (e.g. the adapter vanished: bleak does not notice a connected device's
        object going away); each device task disconnects and reconnects with backoff. Returns links dropped."""
        dropped = 0
        for link in {id(x): x for x in self._links.values()}.values():
            if link.client is not None and not link.lost.is_set():
                link.lost.set()
                dropped += 1
        return dropped

    async def __aenter__(self) -> GattManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- callbacks
    def _emit(self, link: _Link, ch: CharacteristicConfig, data: bytes) -> None:
        ms = decode_characteristic(ch.full_uuid, data, ch.layout)
        if ms is None:
            self.stats.undecodable += 1
            log.debug("BLE GATT %s %s: undecodable value %s", link.cfg.id, ch.uuid, data.hex())
            return
        if not ms:
            return  # SIG "unknown" value
        try:
            self.on_reading(link.cfg.id, ms, None, FORMAT)
        except Exception:
            self.stats.callback_errors += 1
            log.exception("BLE GATT on_reading callback failed for %s", link.cfg.id)

    def _state(self, link: _Link, online: bool) -> None:
        if link.online == online:
            return
        link.online = online
        try:
            self.on_device_state(link.cfg.id, "online" if online else "offline")
        except Exception:
            self.stats.callback_errors += 1
            log.exception("BLE GATT on_device_state callback failed for %s", link.cfg.id)

    # --- connection loop
    async def _device_loop(self, link: _Link) -> None:
        first, cap = self.backoff
        delay = first
        while not self._stopping.is_set():
            try:
                target = await self._target(link)  # before taking a slot: waiting to be heard holds none
                async with self.slots:
                    if self._stopping.is_set():
                        break
                    await self._session(link, target)
                    delay = first  # connected at least once: reset the backoff
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.connect_failures += 1
                log.info("BLE GATT %s: %s (retry in %.1fs)", link.cfg.id, exc or type(exc).__name__, delay)
            finally:
                self._state(link, False)
            if self._stopping.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, cap)

    async def _target(self, link: _Link) -> Any:
        """The ``BLEDevice`` (or address) to connect to; GattError when the scanner has not heard it in time."""
        addr = normalize_address(link.cfg.address)
        if self.resolve_device is None:
            return addr
        resolve = asyncio.ensure_future(self.resolve_device(addr, self.connect_timeout))
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:  # stop() must not wait for a device that is not around
            await asyncio.wait((resolve, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            if not resolve.done():
                resolve.cancel()
        if not resolve.done() or resolve.cancelled():
            return addr  # stopping: the caller checks _stopping before connecting
        if isinstance(resolve.exception(), TimeoutError):
            raise GattError(f"not heard by the scanner within {self.connect_timeout:g}s")
        device = resolve.result()
        return device if device is not None else addr

    async def _session(self, link: _Link, target: Any) -> None:
        from bleak import BleakClient  # lazy: only configured GATT devices pay for bleak

        link.lost.clear()
        client = BleakClient(
            target,
            disconnected_callback=lambda _c: link.lost.set(),
            timeout=self.connect_timeout,
            bluez={"adapter": self.adapter},
        )
        try:
            await client.connect()
            self.stats.connects += 1
            link.client = client
            link.last_read.clear()
            self._state(link, True)
            loop = asyncio.get_running_loop()
            for ch in link.cfg.characteristics:
                if ch.mode in ("notify", "both"):
                    await client.start_notify(ch.full_uuid, self._notify_handler(link, ch))
            polled = [ch for ch in link.cfg.characteristics if ch.mode in ("poll", "both")]
            due = dict.fromkeys((ch.full_uuid for ch in polled), loop.time())
            while not link.lost.is_set() and not self._stopping.is_set():
                now = loop.time()
                for ch in polled:
                    if due[ch.full_uuid] <= now:
                        await self._read(link, ch)
                        due[ch.full_uuid] = now + ch.poll_interval
                wait = min(due.values()) - loop.time() if due else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(link.lost.wait(), wait if wait is None else max(wait, 0))
            if link.lost.is_set() and not self._stopping.is_set():
                self.stats.disconnects += 1
                raise GattError("link lost")
        finally:
            link.client = None
            # Always: after a remote link loss bleak keeps the client's own D-Bus connection open until
            # disconnect() (ble-testing.md pitfall 19); it is a no-op when nothing is left to close.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.disconnect(), self.connect_timeout)

    async def _read(self, link: _Link, ch: CharacteristicConfig) -> None:
        """Read once; drop the echo of this read that BlueZ also sends as a notification (pitfall 18).

        The echo (a Value PropertiesChanged) may arrive before or after the read reply, on another D-Bus
        connection, so notifications during the read are held (at most MAX_HELD) and compared afterwards.
        """
        held = link.inflight[ch.full_uuid] = []
        try:
            data = bytes(await link.client.read_gatt_char(ch.full_uuid))
        finally:
            link.inflight.pop(ch.full_uuid, None)
        self.stats.reads += 1
        self._emit(link, ch, data)
        echo_seen = False
        for value in held:
            if value == data and not echo_seen:
                echo_seen = True
                self.stats.echoes_dropped += 1
                continue
            self.stats.notifications += 1
            self._emit(link, ch, value)
        if not echo_seen:
            link.last_read[ch.full_uuid] = (data, asyncio.get_running_loop().time())

    def _notify_handler(self, link: _Link, ch: CharacteristicConfig) -> Callable[[Any, bytearray], None]:
        def handler(_sender: Any, data: bytearray) -> None:
            value = bytes(data)
            held = link.inflight.get(ch.full_uuid)
            if held is not None:
                if len(held) < MAX_HELD:
                    held.append(value)
                else:
                    self.stats.held_overflow += 1
                return
            last = link.last_read.get(ch.full_uuid)
            now = asyncio.get_running_loop().time()
            if last is not None and last[0] == value and now - last[1] < READ_ECHO_WINDOW:
                self.stats.echoes_dropped += 1  # our own read, echoed through Value (pitfall 18)
                link.last_read.pop(ch.full_uuid, None)
                return
            self.stats.notifications += 1
            self._emit(link, ch, value)

        return handler

    # --- commands
    async def write(self, device: str, char_uuid: str, data: bytes, *, response: bool = True) -> None:
        """Write ``data`` to a characteristic of a connected device.

        Args:
            device: device id or address.
            char_uuid: 16-bit or 128-bit UUID.
            data: bytes to write.
            response: write request (True) or write command / without response (False).

        Raises:
            GattError: unknown or disconnected device, or the write failed (message says why).
        """
        link = self._links.get(device) or self._links.get(normalize_address(device))
        if link is None:
            raise GattError(f"unknown BLE device {device!r}")
        client = link.client
        if client is None or not link.online:
            raise GattError(f"BLE device {link.cfg.id} is not connected")
        try:
            await client.write_gatt_char(_full_uuid(char_uuid), data, response=response)
        except Exception as exc:
            raise GattError(f"write to {link.cfg.id} {char_uuid} failed: {exc}") from exc
        self.stats.writes += 1


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "CharacteristicConfig",
    "GattDeviceConfig",
    "GattError",
    "GattManager",
    "GattStats",
]
