"""The ``ble`` adapter end to end: the real broker process runs bleak's real BlueZ backend against the fake
BlueZ on a private dbus-daemon; a nats-py client subscribes to the device subjects and sends write requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from tests.integration.ble_fixtures import FakeBluezClient, dbus_daemon, fake_bluez
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.waiting import async_wait_for

__all__ = ["dbus_daemon", "fake_bluez"]  # fixtures, imported by name

pytestmark = pytest.mark.timeout(60)

GW = "gw1"
SENSOR = "A4:C1:38:00:00:01"  # plain BTHome, not configured: discovered
ENC = "54:48:E6:8F:80:A5"  # encrypted BTHome (the bthome-ble v2 vector), configured with its key
KEY = "231d39c1d7cc1ab1aee224cd096db932"


def bthome_encrypt(plain_hex: str, counter: int, *, key: str = KEY, mac: str = ENC, info: int = 0x41) -> str:
    """An encrypted BTHome v2 frame built from the spec's nonce layout (device-formats.md §2.1)."""
    ctr = counter.to_bytes(4, "little")
    nonce = bytes.fromhex(mac.replace(":", "")) + b"\xd2\xfc" + bytes((info,)) + ctr
    sealed = AESCCM(bytes.fromhex(key), tag_length=4).encrypt(nonce, bytes.fromhex(plain_hex), None)
    return (bytes((info,)) + sealed[:-4] + ctr + sealed[-4:]).hex()


ENC_FRAME = bthome_encrypt("02CA0903BF13", 0x33221100)  # temperature 25.06 °C, humidity 50.55 %
PERIPH = "C0:FF:EE:00:00:01"
CUSTOM = "12345678-1234-5678-1234-56789abcdef0"
WAIT = 10.0  # s: generous deadlines for a loaded 2-core box; conditions end the waits early

GATT_DEVICE = {
    "address": PERIPH,
    "name": "ess-node",
    "gatt": [
        {"uuid": "181a", "chars": [{"uuid": "2a6e", "flags": ["read", "notify"], "value": "6608"}]},
        {"uuid": "180f", "chars": [{"uuid": "2a19", "flags": ["read"], "value": "61"}]},
        {"uuid": "12345678-1234-5678-1234-56789abcdef1", "chars": [
            {"uuid": CUSTOM, "flags": ["read", "write", "write-without-response", "notify"], "value": "CA09E204"},
        ]},
    ],
}


def _config(extra: str = "") -> str:
    return f"""server_name = "{GW}"
[adapters]
restart_backoff_min = "0.1s"

[[adapters.ble]]
name = "radio"
discovery = true
device_timeout = "60s"
check_interval = "0.05s"
backoff_min = "0.05s"
backoff_max = "0.2s"
connect_timeout = "5s"
{extra}
[[adapters.ble.devices]]
address = "{ENC}"
name = "greenhouse"
key = "{KEY}"
timeout = "0.6s"

[[adapters.ble.devices]]
address = "{PERIPH}"
name = "ess"
characteristics = [
  {{ uuid = "2a6e", mode = "notify" }},
  {{ uuid = "{CUSTOM}", mode = "notify", layout = {{ format = "<hH", fields = [
      {{ channel = "t2", factor = 0.01, unit = "°C", decimals = 2 }}, {{ channel = "co2", unit = "ppm" }} ] }} }},
]
"""


class Inbox:
    """Every message on ``dev.<gw>.ble.>`` and ``evt.<gw>.ble.>``; ``wait`` blocks on a predicate, bounded."""

    def __init__(self) -> None:
        self.msgs: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Condition()

    async def handler(self, msg: Any) -> None:
        self.msgs.append((msg.subject, json.loads(msg.data)))
        async with self._changed:
            self._changed.notify_all()

    def on(self, subject: str) -> list[dict[str, Any]]:
        return [body for s, body in self.msgs if s == subject]

    async def wait(self, pred: Callable[[], Any], what: str, timeout: float = WAIT) -> None:
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(pred), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; got {self.msgs}") from None

    async def subject(self, subject: str, n: int = 1) -> list[dict[str, Any]]:
        await self.wait(lambda: len(self.on(subject)) >= n, f"{n} message(s) on {subject}")
        return self.on(subject)


def devicez(sp: ServerProcess) -> list[dict[str, Any]]:
    with urllib.request.urlopen(sp.url_of("monitoring") + "/devicez?adapter=ble", timeout=5) as r:
        return list(json.loads(r.read())["devices"])


async def counters(sp: ServerProcess) -> dict[str, int]:
    rows = await asyncio.to_thread(devicez, sp)
    return dict(rows[0]["counters"]) if rows else {}


async def until_counter(sp: ServerProcess, fake: FakeBluezClient, key: str, n: int) -> dict[str, int]:
    async def probe() -> dict[str, int] | None:
        c = await counters(sp)
        return c if c.get(key, 0) >= n else None

    return dict(await async_wait_for(probe, WAIT, f"counter {key} >= {n}"))


async def _start(tmp_path: Path, dbus: str, conf: str) -> ServerProcess:
    (tmp_path / "edge.toml").write_text(conf)
    return await asyncio.to_thread(
        start_nats_edge, tmp_path, "-c", str(tmp_path / "edge.toml"), "-m", "-1",
        env={"DBUS_SYSTEM_BUS_ADDRESS": dbus},
    )


@contextlib.asynccontextmanager
async def running(tmp_path: Path, dbus: str, conf: str) -> AsyncIterator[tuple[ServerProcess, Any, Inbox]]:
    """The broker on ``conf`` with a client subscribed to the BLE subjects; on exit: a clean stop, no traceback."""
    sp = await _start(tmp_path, dbus, conf)
    nc = None
    try:
        nc = await nats.connect(sp.url, connect_timeout=5, allow_reconnect=False)
        inbox = Inbox()
        await nc.subscribe(f"dev.{GW}.ble.>", cb=inbox.handler)
        await nc.subscribe(f"evt.{GW}.ble.>", cb=inbox.handler)
        await flush(nc)
        yield sp, nc, inbox
    finally:
        if nc is not None:
            await nc.close()
        code = await asyncio.to_thread(sp.stop)
        log = sp.log()
        assert code == 0, log
        assert "Traceback" not in log, log
        assert "adapter radio failed" not in log, log  # never restarted by the supervisor


@pytest.fixture
async def rig(
    tmp_path: Path, dbus_daemon: str, fake_bluez: FakeBluezClient, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[ServerProcess, Any, Inbox]]:
    async with running(tmp_path, dbus_daemon, _config(getattr(request, "param", ""))) as r:
        yield r


async def test_adverts_gatt_writes_malformed_and_offline(
    rig: tuple[ServerProcess, Any, Inbox], fake_bluez: FakeBluezClient
) -> None:
    sp, nc, inbox = rig
    fake = fake_bluez
    await fake.call("add_device", address=ENC, service_data={"fcd2": ENC_FRAME}, rssi=-67)
    await fake.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    await fake.call("add_device", **GATT_DEVICE)

    # An encrypted BTHome advert from a configured device, decoded with its key.
    (t,) = await inbox.subject(f"dev.{GW}.ble.greenhouse.temperature")
    (h,) = await inbox.subject(f"dev.{GW}.ble.greenhouse.humidity")
    assert {k: t[k] for k in ("value", "unit", "rssi")} == {"value": 25.06, "unit": "°C", "rssi": -67}
    assert {k: h[k] for k in ("value", "unit", "rssi")} == {"value": 50.55, "unit": "%", "rssi": -67}
    assert set(t) == {"value", "unit", "rssi", "ts"} and t["ts"].endswith("Z")
    await inbox.subject(f"evt.{GW}.ble.greenhouse.online")
    # An unknown advertiser: discovered (discovery = true), then its readings.
    (d,) = await inbox.subject(f"evt.{GW}.ble.a4c138000001.discovered")
    assert d["address"] == SENSOR
    (s,) = await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature")
    assert (s["value"], s["unit"], s["rssi"]) == (25.06, "°C", -60)
    assert inbox.on(f"evt.{GW}.ble.greenhouse.discovered") == []  # configured: not "discovered"

    # Malformed adverts: counted by reason and skipped; the next good one still arrives.
    bad_mic = ENC_FRAME[:-2] + "00"
    await fake.call("advertise", address=ENC, service_data={"fcd2": bad_mic})
    await fake.call("advertise", address=SENSOR, service_data={"fcd2": "4000FF02"})  # truncated
    await fake.call("advertise", address=SENSOR, service_data={"fcd2": "40FE0102"})  # unknown object id
    await fake.call("advertise", address=SENSOR, service_data={"fcd2": ""})  # empty
    await fake.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"}, rssi=-55)
    s2 = (await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature", 2))[1]
    assert (s2["value"], s2["rssi"]) == (25.0, -55)
    c = await until_counter(sp, fake, "reject_truncated", 1)
    assert c["reject_bad_mic"] >= 1 and c["reject_unknown_object_id"] >= 1, c  # radios repeat adverts
    assert c["scan_rejected"] >= 4 and c["readings"] >= 4, c
    assert len(inbox.on(f"dev.{GW}.ble.greenhouse.temperature")) == 1  # nothing from the bad MIC

    # The configured device with a 0.6 s timeout goes silent: offline.
    (off,) = await inbox.subject(f"evt.{GW}.ble.greenhouse.offline")
    assert set(off) == {"ts", "reason"} and off["reason"] == "silence"
    assert inbox.on(f"evt.{GW}.ble.a4c138000001.offline") == []  # default timeout is 60 s

    # GATT: connected (a slot, via the scanner's BLEDevice), notifications become readings.
    await inbox.subject(f"evt.{GW}.ble.ess.online")

    async def subscribed() -> bool:
        return {f"{PERIPH}/0000{'2a6e'}-0000-1000-8000-00805f9b34fb", f"{PERIPH}/{CUSTOM}"} <= set(
            (await fake.state())["notifying"]
        )

    await async_wait_for(subscribed, WAIT, "both subscriptions")
    assert await fake.call("notify", address=PERIPH, uuid="2a6e", value="C409")
    (g,) = await inbox.subject(f"dev.{GW}.ble.ess.temperature")
    assert (g["value"], g["unit"]) == (25.0, "°C") and "rssi" not in g
    assert await fake.call("notify", address=PERIPH, uuid=CUSTOM, value="6608E204")
    (t2,) = await inbox.subject(f"dev.{GW}.ble.ess.t2")
    (co2,) = await inbox.subject(f"dev.{GW}.ble.ess.co2")
    assert (t2["value"], t2["unit"], co2["value"], co2["unit"]) == (21.5, "°C", 1250, "ppm")

    # Write commands: to the fake characteristic, with and without response, hex, text or packed; errors are
    # envelopes with a code.
    async def request(body: Any, action: str = "write", device: str = "ess") -> dict[str, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        reply = await nc.request(f"cmd.{GW}.ble.{device}.{action}", data, timeout=WAIT)
        return dict(json.loads(reply.data))

    ok = {"ok": True, "result": {"written": "0102"}}
    assert await request({"uuid": CUSTOM, "data": "0102", "response": True}) == ok
    assert await request({"uuid": CUSTOM.upper(), "text": "hi", "response": False}) == {
        "ok": True, "result": {"written": "6869"}}
    assert await request({"uuid": CUSTOM, "value": 1025, "format": "<H"}) == {"ok": True, "result": {"written": "0104"}}
    assert await fake.call("writes", address=PERIPH) == [
        {"uuid": CUSTOM, "value": "0102", "type": "request"},
        {"uuid": CUSTOM, "value": "6869", "type": "command"},
        {"uuid": CUSTOM, "value": "0104", "type": "request"},
    ]
    failed = await request({"uuid": "2a19", "data": "00"})  # a read-only characteristic
    assert failed["ok"] is False and failed["code"] == "failed" and "failed" in failed["error"], failed
    for bad in (b"not json", {"uuid": "xyz", "data": "00"}, {"uuid": CUSTOM, "data": "0g"},
                {"uuid": CUSTOM, "data": "00", "response": "yes"}, ["list"],
                {"uuid": CUSTOM, "value": 70000, "format": "<H"}, {"uuid": CUSTOM, "data": "00", "text": "x"}):
        reply = await request(bad)
        assert reply["ok"] is False and reply["code"] == "bad_arguments", (bad, reply)
    assert await request({"uuid": CUSTOM, "data": "00", "text": "x"}) == {
        "ok": False, "code": "bad_arguments",
        "error": "bad write request: give the value as exactly one of 'data' (hex), 'text' or 'value' with 'format'"}
    assert await request({}, action="reboot") == {
        "ok": False, "code": "unsupported", "error": "unknown action 'reboot' (supported: write)"}
    assert len(await fake.call("writes", address=PERIPH)) == 3

    c = await counters(sp)
    assert c["writes_ok"] == 3 and c["writes_failed"] == 1, c
    assert c["commands_ok"] == 3 and c["commands_failed"] == 1 and c["commands_bad_arguments"] == 8, c
    assert c["commands_unsupported"] == 1, c
    assert c["gatt_connected"] == 1 and c["gatt_notifications"] >= 2, c
    rows = {r["id"]: r for r in await asyncio.to_thread(devicez, sp)}
    assert rows["ess"]["online"] and rows["greenhouse"]["address"] == ENC and rows["a4c138000001"]["rssi"] == -55


@pytest.mark.parametrize("rig", ['watchdog_timeout = "0.3s"'], indirect=True)
async def test_adapter_disappears_and_returns(
    rig: tuple[ServerProcess, Any, Inbox], fake_bluez: FakeBluezClient
) -> None:
    sp, nc, inbox = rig
    fake = fake_bluez
    await fake.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    await fake.call("add_device", **GATT_DEVICE)
    await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature")
    await inbox.subject(f"evt.{GW}.ble.ess.online")

    await fake.call("remove_adapter")  # hci0 unplugged: scan sessions and links go with it
    await inbox.subject(f"evt.{GW}.ble.ess.offline")
    reply = await nc.request(f"cmd.{GW}.ble.ess.write", b'{"uuid": "2a19", "data": "00"}', timeout=WAIT)
    assert json.loads(reply.data) == {"ok": False, "code": "offline", "error": "BLE device ess is not connected"}
    await until_counter(sp, fake, "scan_start_failures", 1)  # the watchdog noticed; restarts fail for now
    await fake.call("add_adapter")

    async def scanning() -> bool:
        return int((await fake.state())["sessions"]) >= 1

    await async_wait_for(scanning, WAIT, "scan restarted on the returned adapter")
    await fake.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"})
    s = await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature", 2)
    assert s[1]["value"] == 25.0
    await inbox.subject(f"evt.{GW}.ble.ess.online", 2)  # the GATT device reconnected
    c = await counters(sp)
    assert c["scan_watchdog_restarts"] >= 1 and c["gatt_connects"] >= 2, c


async def test_gatt_connect_waits_for_the_scanner_no_inprogress(
    tmp_path: Path, dbus_daemon: str, fake_bluez: FakeBluezClient
) -> None:
    """Devices already around at start: the GATT connect waits until the scan has heard its device instead of
    opening a discovery session of its own next to the scanner's (BlueZ: InProgress, pitfall 17)."""
    fake = fake_bluez
    await fake.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    await fake.call("add_device", **GATT_DEVICE)  # heard by nobody yet: stored, exported on the first scan
    async with running(tmp_path, dbus_daemon, _config()) as (sp, _nc, inbox):
        await inbox.subject(f"evt.{GW}.ble.ess.online")
        await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature")
        c = await counters(sp)
        assert c["gatt_connects"] == 1 and c["gatt_connect_failures"] == 0 and c["scan_start_failures"] == 0, c
        assert len(await fake.calls("StartDiscovery")) == 1  # the scanner's only: the connect did not scan
        assert [a for _, a in await fake.calls("Connect")] == [PERIPH]
    assert "InProgress" not in sp.log(), sp.log()


async def test_passive_without_monitor_manager_falls_back_to_active(
    tmp_path: Path, dbus_daemon: str, fake_bluez: FakeBluezClient
) -> None:
    """bluetoothd without --experimental (Raspberry Pi OS): passive mode scans actively, with one warning."""
    fake = fake_bluez
    await fake.call("set_monitor_manager", present=False)
    await fake.call("add_device", address=SENSOR, service_data={"fcd2": "40000102CA09"})
    async with running(tmp_path, dbus_daemon, _config('mode = "passive"')) as (sp, _nc, inbox):
        (s,) = await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature")
        assert (s["value"], s["unit"]) == (25.06, "°C")
        await fake.call("advertise", address=SENSOR, service_data={"fcd2": "40000202C409"})
        assert (await inbox.subject(f"dev.{GW}.ble.a4c138000001.temperature", 2))[1]["value"] == 25.0
        c = await counters(sp)
        assert c["scan_passive_fallbacks"] == 1 and c["scan_start_failures"] == 0, c
        assert await fake.calls("RegisterMonitor") == [] and len(await fake.calls("StartDiscovery")) == 1
    warnings = [line for line in sp.log().splitlines() if "passive scanning is not available" in line]
    assert len(warnings) == 1, sp.log()
    assert "[WRN]" in warnings[0] and "--experimental" in warnings[0] and "systemctl edit bluetooth" in warnings[0]


BEACON = "F0:0D:00:00:00:01"
EDDY = "F0:0D:00:00:00:02"


async def test_beacon_identities_are_published(
    rig: tuple[ServerProcess, Any, Inbox], fake_bluez: FakeBluezClient
) -> None:
    """iBeacon UUID/major/minor and Eddystone UID/URL/TLM become readings (channels in CHANNELS.md)."""
    _sp, _nc, inbox = rig
    fake = fake_bluez
    ibeacon = "0215" "E2C56DB5DFFB48D2B060D0F5A71096E0" "0001" "0102" "C5"
    await fake.call("add_device", address=BEACON, manufacturer_data={str(0x004C): ibeacon}, rssi=-70)
    await fake.call("add_device", address=EDDY, service_data={"feaa": "00EE00112233445566778899AABBCCDDEEFF0000"})
    dev = f"dev.{GW}.ble.f00d00000001"
    got = {ch: (await inbox.subject(f"{dev}.{ch}"))[0] for ch in (
        "ibeacon_uuid", "ibeacon_major", "ibeacon_minor", "measured_power")}
    assert {ch: (b["value"], b["unit"], b["rssi"]) for ch, b in got.items()} == {
        "ibeacon_uuid": ("e2c56db5-dffb-48d2-b060-d0f5a71096e0", None, -70),
        "ibeacon_major": (1, None, -70), "ibeacon_minor": (258, None, -70), "measured_power": (-59, "dBm", -70),
    }
    await inbox.subject(f"evt.{GW}.ble.f00d00000001.online")
    eddy = f"dev.{GW}.ble.f00d00000002"
    assert (await inbox.subject(f"{eddy}.eddystone_namespace"))[0]["value"] == "00112233445566778899"
    assert (await inbox.subject(f"{eddy}.eddystone_instance"))[0]["value"] == "aabbccddeeff"
    assert (await inbox.subject(f"{eddy}.tx_power"))[0]["value"] == -18
    # The same beacon's TLM and URL frames: telemetry and its URL under the same device.
    await fake.call("advertise", address=EDDY, service_data={"feaa": "20000BB8158000000064" "00002710"})
    (t,) = await inbox.subject(f"{eddy}.temperature")
    (v,) = await inbox.subject(f"{eddy}.battery_voltage")
    assert (t["value"], t["unit"], v["value"], v["unit"]) == (21.5, "°C", 3.0, "V")
    await fake.call("advertise", address=EDDY, service_data={"feaa": "10EB03" + b"goo.gl/S6zT6P".hex()})
    assert (await inbox.subject(f"{eddy}.url"))[0]["value"] == "https://goo.gl/S6zT6P"
