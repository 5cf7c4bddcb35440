"""A fake ``org.bluez`` for driving bleak's real BlueZ backend on a private dbus-daemon.

Modelled on /work/shared/docs/ble-testing.md (the numbered pitfalls cited below are from that page).
Runs in its own process: ``python tests/integration/fake_bluez.py --address unix:path=…``; it prints
``READY`` once it owns ``org.bluez``. Tests steer it through a control interface on the same bus
(``org.natsedge.FakeBluezControl1.Call(method, json_args) -> json``), see ``FakeBluezClient`` in
``ble_fixtures.py``.

What it models (a reading of bluetoothd):
- adapter ``/org/bluez/hci0`` (Adapter1 + AdvertisementMonitorManager1) that can be removed/re-added; without
  the monitor manager (``set_monitor_manager``) it is bluetoothd without ``--experimental`` (pitfall 24);
- one discovery session per D-Bus sender (pitfall 17), sessions dropped when the sender leaves;
- devices exported only once heard while scanning; StartDiscovery re-hears known devices after its reply
  (pitfalls 15, 16); adverts injected while nobody scans are stored, not emitted;
- passive scanning: RegisterMonitor watches the caller's InterfacesAdded at the monitor path before
  replying, reads ``Patterns``, calls Activate/DeviceFound and delivers only matching adverts (21–23);
- GATT: Connect → Connected, reply, export services/characteristics, ServicesResolved (14); Read stores
  into Value (18); Write checks flags and records the write type; notifications via Value changes;
- "deaf" mode: BlueZ silently stops delivering adverts until the next StartDiscovery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dbus_fast import BusType, DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBytes, DBusDict, DBusObjectPath, DBusStr
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_method, dbus_property

BLUEZ = "org.bluez"
ADAPTER_PATH = "/org/bluez/hci0"
CONTROL_PATH = "/org/natsedge/fake"
CONTROL_IFACE = "org.natsedge.FakeBluezControl1"
SIG_BASE = "-0000-1000-8000-00805f9b34fb"
MONITOR_IFACE = "org.bluez.AdvertisementMonitor1"

SERVICES_RESOLVE_DELAY = 0.01  # s: ServicesResolved comes after the GATT objects (pitfall 14)
HEAR_DELAY = 0.02  # s: adverts after the StartDiscovery reply (pitfall 15)


def full_uuid(u: str) -> str:
    """``"2a6e"`` → full lowercase 128-bit UUID (BlueZ always uses the full form, pitfall 12)."""
    u = u.lower()
    return f"0000{u}{SIG_BASE}" if len(u) == 4 else u


def _ro(name: str, sig: str) -> Any:
    def getter(self: Bag) -> Any:
        return self.v[name]

    getter.__name__ = name  # REQUIRED: dbus-fast looks the getter up by __name__ (pitfall 4)
    getter.__annotations__ = {"return": sig}
    return dbus_property(PropertyAccess.READ, name=name)(getter)


class Bag(ServiceInterface):
    """An interface whose read-only properties come from ``SPEC`` (name → D-Bus signature).

    D-Bus methods carry ``dbus_fast.annotations`` types and no ``-> None``: under PEP 563 dbus-fast would read
    ``"None"`` as a signature.
    """

    IFACE: ClassVar[str] = ""
    SPEC: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        for n, s in cls.SPEC.items():
            setattr(cls, n, _ro(n, s))

    def __init__(self, fake: FakeBluez, **values: Any) -> None:
        super().__init__(self.IFACE)
        self.fake = fake
        self.v: dict[str, Any] = dict(values)

    def set(self, **changes: Any) -> None:
        """Update properties and emit PropertiesChanged."""
        self.v.update(changes)
        self.emit_properties_changed(changes)


class Adapter(Bag):
    IFACE = "org.bluez.Adapter1"
    SPEC: ClassVar = {
        "Address": "s", "AddressType": "s", "Name": "s", "Alias": "s", "Powered": "b",
        "Discovering": "b", "Discoverable": "b", "Pairable": "b", "Roles": "as", "UUIDs": "as",
    }

    @dbus_method()
    def SetDiscoveryFilter(self, properties: DBusDict):
        self.fake.log("SetDiscoveryFilter", {k: v.value for k, v in properties.items()})

    @dbus_method()
    def StartDiscovery(self):
        self.fake.start_discovery(self.fake.sender)

    @dbus_method()
    def StopDiscovery(self):
        self.fake.stop_discovery(self.fake.sender)

    @dbus_method()
    def RemoveDevice(self, device: DBusObjectPath):
        self.fake.log("RemoveDevice", device)
        self.fake.remove_device_path(device)


class MonitorManager(Bag):
    IFACE = "org.bluez.AdvertisementMonitorManager1"
    SPEC: ClassVar = {"SupportedMonitorTypes": "as", "SupportedFeatures": "as"}

    @dbus_method()
    async def RegisterMonitor(self, application: DBusObjectPath):
        sender = self.fake.sender  # read before any await (pitfall 9)
        await self.fake.register_monitor(sender, application)

    @dbus_method()
    def UnregisterMonitor(self, application: DBusObjectPath):
        self.fake.unregister_monitor(self.fake.sender, application)


class Device(Bag):
    IFACE = "org.bluez.Device1"
    SPEC: ClassVar = {
        "Address": "s", "AddressType": "s", "Name": "s", "Alias": "s", "Adapter": "o", "Paired": "b",
        "Bonded": "b", "Trusted": "b", "Blocked": "b", "LegacyPairing": "b", "Connected": "b",
        "ServicesResolved": "b", "UUIDs": "as", "RSSI": "n", "TxPower": "n",
        "ManufacturerData": "a{qv}", "ServiceData": DBusDict,
    }

    @dbus_method()
    async def Connect(self):
        addr = self.v["Address"]
        self.fake.log("Connect", addr)
        spec = self.fake.devices[addr]
        if spec.fail_connects > 0:
            spec.fail_connects -= 1
            raise DBusError("org.bluez.Error.Failed", "le-connection-abort-by-remote")
        if not self.v["Connected"]:
            await asyncio.sleep(0.005)
            self.set(Connected=True)  # the reply goes out after this
            self.fake.spawn(self.fake.resolve_services(addr))

    @dbus_method()
    async def Disconnect(self):
        self.fake.log("Disconnect", self.v["Address"])
        self.fake.disconnect(self.v["Address"])

    @dbus_method()
    def Pair(self):
        raise DBusError("org.bluez.Error.NotSupported", "pairing is not modelled")


class GattService(Bag):
    IFACE = "org.bluez.GattService1"
    SPEC: ClassVar = {"UUID": "s", "Primary": "b", "Device": "o"}


class GattCharacteristic(Bag):
    IFACE = "org.bluez.GattCharacteristic1"
    SPEC: ClassVar = {"UUID": "s", "Service": "o", "Flags": "as", "Value": "ay", "Notifying": "b"}

    def __init__(self, fake: FakeBluez, address: str, **values: Any) -> None:
        super().__init__(fake, **values)
        self.address = address

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        self.fake.log("ReadValue", [self.address, self.v["UUID"]])
        if "read" not in self.v["Flags"]:
            raise DBusError("org.bluez.Error.NotPermitted", "Read not permitted")
        value = self.fake.devices[self.address].values[self.v["UUID"]]
        self.set(Value=value)  # bluetoothd stores read results into Value (pitfall 18)
        return value

    @dbus_method()
    def WriteValue(self, value: DBusBytes, options: DBusDict):
        kind = options["type"].value if "type" in options else "request"
        allowed = {"request": "write", "command": "write-without-response"}.get(kind, "write")
        if allowed not in self.v["Flags"]:
            raise DBusError("org.bluez.Error.NotPermitted", "Write not permitted")
        self.fake.devices[self.address].writes.append(
            {"uuid": self.v["UUID"], "value": bytes(value).hex(), "type": kind}
        )
        self.fake.log("WriteValue", [self.address, self.v["UUID"], bytes(value).hex(), kind])

    @dbus_method()
    def StartNotify(self):
        if not {"notify", "indicate"} & set(self.v["Flags"]):
            raise DBusError("org.bluez.Error.NotSupported", "Operation is not supported")
        self.fake.log("StartNotify", [self.address, self.v["UUID"]])
        self.set(Notifying=True)

    @dbus_method()
    def StopNotify(self):
        self.fake.log("StopNotify", [self.address, self.v["UUID"]])
        self.set(Notifying=False)


@dataclass
class DeviceSpec:
    """A peripheral the fake knows about, exported on the bus once it has been heard."""

    address: str
    name: str
    rssi: int = -60
    tx_power: int = 4
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    gatt: list[dict[str, Any]] = field(default_factory=list)  # [{"uuid", "chars": [{"uuid","flags","value"}]}]
    values: dict[str, bytes] = field(default_factory=dict)  # char uuid → current value
    writes: list[dict[str, str]] = field(default_factory=list)
    fail_connects: int = 0
    obj: Device | None = None
    chars: dict[str, GattCharacteristic] = field(default_factory=dict)
    gatt_paths: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{ADAPTER_PATH}/dev_{self.address.replace(':', '_')}"

    def ad_structures(self) -> list[tuple[int, bytes]]:
        """The AD structures this advert would carry (for monitor pattern matching, pitfall 23)."""
        ads: list[tuple[int, bytes]] = [(0x01, b"\x06")]
        if self.name:
            ads.append((0x09, self.name.encode()))
        for cid, data in self.manufacturer_data.items():
            ads.append((0xFF, cid.to_bytes(2, "little") + data))
        for uuid, data in self.service_data.items():
            if uuid.endswith(SIG_BASE) and uuid.startswith("0000"):
                ads.append((0x16, int(uuid[4:8], 16).to_bytes(2, "little") + data))
            else:
                ads.append((0x21, bytes.fromhex(uuid.replace("-", ""))[::-1] + data))
        return ads


@dataclass
class Monitor:
    sender: str
    path: str
    patterns: list[tuple[int, int, bytes]] = field(default_factory=list)
    active: bool = False
    found: set[str] = field(default_factory=set)

    def matches(self, dev: DeviceSpec) -> bool:
        for start, ad_type, content in self.patterns:
            for t, data in dev.ad_structures():
                if t == ad_type and data[start : start + len(content)] == content:
                    return True
        return False


class Control(ServiceInterface):
    """The test's control channel: ``Call(method, json_args) -> json_result``."""

    def __init__(self, fake: FakeBluez) -> None:
        super().__init__(CONTROL_IFACE)
        self.fake = fake

    @dbus_method()
    def Call(self, method: DBusStr, args: DBusStr) -> DBusStr:
        fn = getattr(self.fake, f"ctl_{method}", None)
        if fn is None:
            raise DBusError("org.natsedge.Error.UnknownMethod", method)
        return json.dumps(fn(**json.loads(args)))


class FakeBluez:
    """The fake bluetoothd state machine; the ``ctl_*`` methods are the control API."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.sender = ""
        self.calls: list[list[Any]] = []
        self.devices: dict[str, DeviceSpec] = {}
        self.sessions: set[str] = set()
        self.monitors: dict[tuple[str, str], Monitor] = {}
        self.adapter_present = False
        self.monitor_manager = True  # False: bluetoothd without --experimental (BlueZ < 5.56 or the default)
        self.deaf = False
        self.adapter: Adapter | None = None
        self.monitor_mgr: MonitorManager | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        bus.add_message_handler(self._spy)

    # --- plumbing
    def _spy(self, msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_CALL:
            self.sender = msg.sender or ""  # bluetoothd keys sessions and monitors by sender (pitfall 9)
        elif msg.message_type == MessageType.SIGNAL:
            if msg.member == "NameOwnerChanged" and msg.body and msg.body[2] == "":
                self._sender_gone(msg.body[0])
            elif msg.member == "InterfacesAdded":
                self._maybe_monitor(msg)
        return None

    def spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    def log(self, name: str, arg: Any = None) -> None:
        if len(self.calls) < 10_000:  # bounded call log
            self.calls.append([name, arg])

    async def add_match(self, rule: str) -> None:
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule],
        ))
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body

    async def call_monitor(self, mon: Monitor, member: str, sig: str = "", body: list[Any] | None = None) -> None:
        reply = await self.bus.call(Message(
            destination=mon.sender, path=mon.path, interface=MONITOR_IFACE, member=member,
            signature=sig, body=body or [],
        ))
        self.log(f"Monitor.{member}", reply.message_type.name)

    # --- adapter
    def export_adapter(self) -> None:
        self.adapter = Adapter(
            self, Address="00:1A:7D:DA:71:13", AddressType="public", Name="fake-hci0", Alias="fake-hci0",
            Powered=True, Discovering=False, Discoverable=False, Pairable=False,
            Roles=["central", "peripheral"], UUIDs=[],
        )
        self.bus.export(ADAPTER_PATH, self.adapter)
        self.adapter_present = True
        if self.monitor_manager:
            self._export_monitor_manager()

    def _export_monitor_manager(self) -> None:
        self.monitor_mgr = MonitorManager(self, SupportedMonitorTypes=["or_patterns"], SupportedFeatures=[])
        self.bus.export(ADAPTER_PATH, self.monitor_mgr)

    def _update_discovering(self) -> None:
        if self.adapter is not None and self.adapter_present:
            on = bool(self.sessions)
            if self.adapter.v["Discovering"] != on:
                self.adapter.set(Discovering=on)

    def start_discovery(self, sender: str) -> None:
        self.log("StartDiscovery", sender)
        if sender in self.sessions:  # bluetoothd: one session per sender (pitfall 17)
            raise DBusError("org.bluez.Error.InProgress", "Operation already in progress")
        self.sessions.add(sender)
        self.deaf = False
        self._update_discovering()
        # Adverts must come after the reply (pitfall 15); known devices are heard again (pitfall 16).
        asyncio.get_running_loop().call_later(HEAR_DELAY, self.hear_all)

    def stop_discovery(self, sender: str) -> None:
        self.log("StopDiscovery", sender)
        if sender not in self.sessions:
            raise DBusError("org.bluez.Error.Failed", "No discovery started")
        self.sessions.discard(sender)
        self._update_discovering()

    async def register_monitor(self, sender: str, path: str) -> None:
        self.log("RegisterMonitor", path)
        key = (sender, path)
        if key in self.monitors:
            raise DBusError("org.bluez.Error.AlreadyExists", "Already Exists")
        self.monitors[key] = Monitor(sender, path)
        # Watch the caller's InterfacesAdded at that path BEFORE replying (pitfall 22).
        await self.add_match(
            f"type='signal',sender='{sender}',interface='org.freedesktop.DBus.ObjectManager',"
            f"member='InterfacesAdded',path_namespace='{path}'"
        )

    def unregister_monitor(self, sender: str, path: str) -> None:
        self.log("UnregisterMonitor", path)
        if self.monitors.pop((sender, path), None) is None:
            raise DBusError("org.bluez.Error.DoesNotExist", "Does Not Exist")

    def _maybe_monitor(self, msg: Message) -> None:
        obj_path, ifaces = msg.body
        mon = self.monitors.get((msg.sender or "", obj_path))
        if mon is None or MONITOR_IFACE not in ifaces or mon.active:
            return
        props = ifaces[MONITOR_IFACE]
        if props.get("Type") is None or props["Type"].value != "or_patterns":
            return
        mon.patterns = [(int(s), int(t), bytes(c)) for s, t, c in props["Patterns"].value]
        mon.active = True
        self.log("MonitorActivated", {"path": obj_path, "patterns": [[s, t, c.hex()] for s, t, c in mon.patterns]})
        self.spawn(self._activate(mon))

    async def _activate(self, mon: Monitor) -> None:
        await self.call_monitor(mon, "Activate")
        self.hear_all()

    def _sender_gone(self, name: str) -> None:
        self.sessions.discard(name)
        for key in [k for k in self.monitors if k[0] == name]:
            del self.monitors[key]
        self._update_discovering()

    # --- advertising
    def listening_for(self, dev: DeviceSpec) -> list[Monitor]:
        """Who receives this advert: [] if nobody; monitors that match (for passive)."""
        return [m for m in self.monitors.values() if m.active and m.matches(dev)]

    def hear(self, dev: DeviceSpec) -> bool:
        """Deliver one advert from ``dev`` if anyone listens. Returns True if delivered."""
        if not self.adapter_present or self.deaf:
            return False
        monitors = self.listening_for(dev)
        if not self.sessions and not monitors:
            return False
        props = self._device_props(dev)
        if dev.obj is None:
            dev.obj = Device(self, **props)
            self.bus.export(dev.path, dev.obj)  # InterfacesAdded counts as an advert for bleak
        else:
            # Like bluetoothd: RSSI on every advert, data only where it differs from what was emitted.
            changes = {"RSSI": props["RSSI"]}
            for k in ("ManufacturerData", "ServiceData"):
                old = {key: v.value for key, v in dev.obj.v[k].items()}
                if old != {key: v.value for key, v in props[k].items()}:
                    changes[k] = props[k]
            dev.obj.set(**changes)
        for mon in monitors:
            if dev.address not in mon.found:
                mon.found.add(dev.address)
                self.spawn(self.call_monitor(mon, "DeviceFound", "o", [dev.path]))
        self.log("Advert", dev.address)
        return True

    def hear_all(self) -> None:
        for dev in list(self.devices.values()):
            self.hear(dev)

    @staticmethod
    def _device_props(dev: DeviceSpec) -> dict[str, Any]:
        return {
            "Address": dev.address, "AddressType": "public", "Name": dev.name, "Alias": dev.name or dev.address,
            "Adapter": ADAPTER_PATH, "Paired": False, "Bonded": False, "Trusted": False, "Blocked": False,
            "LegacyPairing": False, "Connected": dev.obj.v["Connected"] if dev.obj else False,
            "ServicesResolved": dev.obj.v["ServicesResolved"] if dev.obj else False,
            "UUIDs": sorted({s["uuid"] for s in dev.gatt} | set(dev.service_data)),
            "RSSI": dev.rssi, "TxPower": dev.tx_power,
            "ManufacturerData": {k: Variant("ay", v) for k, v in dev.manufacturer_data.items()},
            "ServiceData": {k: Variant("ay", v) for k, v in dev.service_data.items()},
        }

    def remove_device_path(self, path: str) -> None:
        for dev in self.devices.values():
            if dev.path == path and dev.obj is not None:
                self._unexport_gatt(dev)
                self.bus.unexport(dev.path)
                dev.obj = None

    # --- GATT
    async def resolve_services(self, address: str) -> None:
        dev = self.devices[address]
        for si, svc in enumerate(dev.gatt):
            s_handle = 0x000A + si * 0x10
            s_path = f"{dev.path}/service{s_handle:04x}"  # exactly 4 hex digits (pitfall 13)
            self.bus.export(s_path, GattService(self, UUID=full_uuid(svc["uuid"]), Primary=True, Device=dev.path))
            dev.gatt_paths.append(s_path)
            for ci, ch in enumerate(svc["chars"]):
                c_path = f"{s_path}/char{s_handle + 1 + ci * 2:04x}"
                uuid = full_uuid(ch["uuid"])
                obj = GattCharacteristic(
                    self, address, UUID=uuid, Service=s_path, Flags=list(ch["flags"]),
                    Value=b"", Notifying=False,
                )
                self.bus.export(c_path, obj)
                dev.chars[uuid] = obj
                dev.gatt_paths.append(c_path)
        await asyncio.sleep(SERVICES_RESOLVE_DELAY)
        if dev.obj is not None and dev.obj.v["Connected"]:
            dev.obj.set(ServicesResolved=True)

    def _unexport_gatt(self, dev: DeviceSpec) -> None:
        for p in reversed(dev.gatt_paths):
            self.bus.unexport(p)
        dev.gatt_paths.clear()
        dev.chars.clear()

    def disconnect(self, address: str) -> None:
        dev = self.devices[address]
        if dev.obj is None or not dev.obj.v["Connected"]:
            return
        # Order on disconnect: ServicesResolved=False, remove objects, Connected=False (pitfall 14).
        dev.obj.set(ServicesResolved=False)
        self._unexport_gatt(dev)
        dev.obj.set(Connected=False)

    # --- control API (JSON in, JSON out)
    def ctl_add_device(
        self, address: str, name: str = "", rssi: int = -60, manufacturer_data: dict[str, str] | None = None,
        service_data: dict[str, str] | None = None, gatt: list[dict[str, Any]] | None = None,
        fail_connects: int = 0,
    ) -> bool:
        address = address.upper()
        dev = DeviceSpec(
            address, name, rssi,
            manufacturer_data={int(k): bytes.fromhex(v) for k, v in (manufacturer_data or {}).items()},
            service_data={full_uuid(k): bytes.fromhex(v) for k, v in (service_data or {}).items()},
            gatt=gatt or [], fail_connects=fail_connects,
        )
        for svc in dev.gatt:
            for ch in svc["chars"]:
                dev.values[full_uuid(ch["uuid"])] = bytes.fromhex(ch.get("value", ""))
        self.devices[address] = dev
        return self.hear(dev)

    def ctl_advertise(
        self, address: str, manufacturer_data: dict[str, str] | None = None,
        service_data: dict[str, str] | None = None, rssi: int | None = None,
    ) -> bool:
        dev = self.devices[address.upper()]
        if manufacturer_data is not None:
            dev.manufacturer_data = {int(k): bytes.fromhex(v) for k, v in manufacturer_data.items()}
        if service_data is not None:
            dev.service_data = {full_uuid(k): bytes.fromhex(v) for k, v in service_data.items()}
        if rssi is not None:
            dev.rssi = rssi
        return self.hear(dev)

    def ctl_notify(self, address: str, uuid: str, value: str) -> bool:
        dev = self.devices[address.upper()]
        uuid = full_uuid(uuid)
        dev.values[uuid] = bytes.fromhex(value)
        ch = dev.chars.get(uuid)
        if ch is None or not ch.v["Notifying"]:
            return False
        ch.set(Value=bytes.fromhex(value))
        return True

    def ctl_set_value(self, address: str, uuid: str, value: str) -> None:
        self.devices[address.upper()].values[full_uuid(uuid)] = bytes.fromhex(value)

    def ctl_set_fail_connects(self, address: str, n: int) -> None:
        """Make the next ``n`` Connect calls to ``address`` fail (out of range, busy peripheral)."""
        self.devices[address.upper()].fail_connects = n

    def ctl_drop(self, address: str) -> None:
        """Link loss from the peripheral's side."""
        self.disconnect(address.upper())

    def ctl_writes(self, address: str) -> list[dict[str, str]]:
        return self.devices[address.upper()].writes

    def ctl_calls(self, name: str | None = None) -> list[list[Any]]:
        return [c for c in self.calls if name is None or c[0] == name]

    def ctl_state(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions), "monitors": len(self.monitors),
            "active_monitors": sum(m.active for m in self.monitors.values()),
            "adapter": self.adapter_present, "deaf": self.deaf,
            "connected": sorted(a for a, d in self.devices.items() if d.obj and d.obj.v["Connected"]),
            "notifying": sorted(
                f"{a}/{u}" for a, d in self.devices.items() for u, c in d.chars.items() if c.v["Notifying"]
            ),
        }

    def ctl_go_deaf(self) -> None:
        """BlueZ silently stops delivering adverts (the session stays open) until the next StartDiscovery."""
        self.deaf = True

    def ctl_remove_adapter(self) -> None:
        """hci0 disappears (USB unplug, btmgmt power cycle): devices and sessions go with it."""
        for dev in self.devices.values():
            if dev.obj is not None:
                self._unexport_gatt(dev)
                self.bus.unexport(dev.path)
                dev.obj = None
        self.sessions.clear()
        self.monitors.clear()
        self.bus.unexport(ADAPTER_PATH)
        self.adapter_present = False
        self.log("AdapterRemoved")

    def ctl_set_monitor_manager(self, present: bool) -> None:
        """Export or remove AdvertisementMonitorManager1: bluetoothd with or without ``--experimental``.

        Without it, RegisterMonitor is answered ``org.freedesktop.DBus.Error.UnknownMethod`` as by bluetoothd,
        which bleak turns into "passive scanning on Linux requires BlueZ >= 5.56 with --experimental".
        """
        if present == self.monitor_manager:
            return
        self.monitor_manager = present
        if not self.adapter_present:
            return
        if present:
            self._export_monitor_manager()
        elif self.monitor_mgr is not None:
            self.bus.unexport(ADAPTER_PATH, self.monitor_mgr)
            self.monitor_mgr = None

    def ctl_add_adapter(self) -> None:
        self.export_adapter()
        self.log("AdapterAdded")


async def serve(address: str) -> None:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    fake = FakeBluez(bus)
    fake.export_adapter()
    bus.export(CONTROL_PATH, Control(fake))
    await fake.add_match("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'")
    await bus.request_name(BLUEZ)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    for t in list(fake.tasks):
        t.cancel()
    with contextlib.suppress(Exception):
        bus.disconnect()
        await asyncio.wait_for(bus.wait_for_disconnect(), 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="D-Bus address of the private bus")
    args = p.parse_args(argv)
    asyncio.run(serve(args.address))
    return 0


if __name__ == "__main__":
    sys.exit(main())
