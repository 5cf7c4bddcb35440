"""``[[adapters.ble]]`` config parsing (errors name file and key) and lazy bleak import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.adapters.ble.adapter import BleAdapter, BleConfig, _address_of
from edge.adapters.registry import resolve
from edge.config import load_settings
from edge.errors import ConfigError

GOOD = """
[[adapters.ble]]
mode = "passive"
adapter = "hci1"
allow = ["a4:c1:38:00:00:01", "C0:FF:EE:00:00:01"]
deny = "11:22:33:44:55:66"
min_interval = "5s"
device_timeout = "2m"
discovery = true
max_connections = 5
[[adapters.ble.devices]]
address = "54:48:e6:8f:80:a5"
name = "greenhouse"
key = "231d39c1d7cc1ab1aee224cd096db932"
timeout = "10m"
min_interval = "30s"
[[adapters.ble.devices]]
address = "C0:FF:EE:00:00:01"
characteristics = [
  { uuid = "2A6E" },
  { uuid = "2a19", mode = "poll", interval = "5m" },
  { uuid = "12345678-1234-5678-1234-56789abcdef0", mode = "both", layout = { format = "<hH", fields = [
      { channel = "t", factor = 0.01, unit = "°C", decimals = 2 }, { channel = "co2", unit = "ppm" } ] } },
]
"""


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return load_settings(p)


def test_registered_and_parsed(tmp_path: Path) -> None:
    assert resolve("ble") is BleAdapter
    cfg: BleConfig = _load(tmp_path, GOOD).sections["adapters"].instances[0].options
    assert (cfg.mode, cfg.adapter, cfg.min_interval, cfg.device_timeout, cfg.discovery) == (
        "passive", "hci1", 5.0, 120.0, True)
    assert cfg.allow == {"A4:C1:38:00:00:01", "C0:FF:EE:00:00:01"} and cfg.deny == {"11:22:33:44:55:66"}
    green, ess = cfg.devices
    assert green.address == "54:48:E6:8F:80:A5" and green.key is not None and len(green.key) == 16
    assert (green.timeout, green.min_interval, green.characteristics) == (600.0, 30.0, ())
    assert ess.name == "c0ffee000001"  # default: the address as one token
    (g,) = cfg.gatt_devices
    assert g.id == "c0ffee000001" and [c.mode for c in g.characteristics] == ["notify", "poll", "both"]
    assert g.characteristics[1].poll_interval == 300.0
    layout = g.characteristics[2].layout
    assert layout is not None and [f.channel for f in layout.fields] == ["t", "co2"]
    sc = cfg.scanner_config()
    assert sc.mode == "passive" and sc.adapter == "hci1" and len(sc.devices) == 2
    assert sc.devices[0].key == green.key and sc.devices[0].device_id == "greenhouse"


def test_defaults(tmp_path: Path) -> None:
    cfg: BleConfig = _load(tmp_path, "[[adapters.ble]]\n").sections["adapters"].instances[0].options
    assert (cfg.adapter, cfg.mode, cfg.devices, cfg.max_connections, cfg.discovery) == ("hci0", "active", (), 3, False)


DEV = '[[adapters.ble]]\n[[adapters.ble.devices]]\naddress = "C0:FF:EE:00:00:01"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[adapters.ble]]\nmode = "sniff"\n', "adapters.ble[0].mode"),
        ('[[adapters.ble]]\nadapter = "/dev/hci0"\n', "adapters.ble[0].adapter"),
        ('[[adapters.ble]]\nallow = ["C0:FF:EE"]\n', "adapters.ble[0].allow"),
        ('[[adapters.ble]]\ndeny = [1]\n', "adapters.ble[0].deny"),
        ('[[adapters.ble]]\ndevice_timeout = "soon"\n', "adapters.ble[0].device_timeout"),
        ('[[adapters.ble]]\nmax_connections = 0\n', "adapters.ble[0].max_connections"),
        ('[[adapters.ble]]\nbackoff_min = "10s"\nbackoff_max = "1s"\n', "adapters.ble[0].backoff_min"),
        ('[[adapters.ble]]\nscan = true\n', "adapters.ble[0].scan"),
        ('[[adapters.ble]]\ndevices = { address = "x" }\n', "adapters.ble[0].devices"),
        ('[[adapters.ble]]\n[[adapters.ble.devices]]\nname = "x"\n', "adapters.ble[0].devices[0].address"),
        (DEV + 'name = "a.b"\n', "adapters.ble[0].devices[0].name"),
        (DEV + 'key = "00112233"\n', "adapters.ble[0].devices[0].key"),
        (DEV + 'key = "zz1d39c1d7cc1ab1aee224cd096db932"\n', "adapters.ble[0].devices[0].key"),
        (DEV + 'timeout = -1\n', "adapters.ble[0].devices[0].timeout"),
        (DEV + "colour = 1\n", "adapters.ble[0].devices[0].colour"),
        (DEV + '[[adapters.ble.devices]]\naddress = "c0:ff:ee:00:00:01"\n', "adapters.ble[0].devices[1].address"),
        (DEV + 'name = "n"\n[[adapters.ble.devices]]\naddress = "C0:FF:EE:00:00:02"\nname = "n"\n',
         "adapters.ble[0].devices[1].name"),
        (DEV + "characteristics = []\n", "adapters.ble[0].devices[0].characteristics"),
        (DEV + 'characteristics = [{ uuid = "2a6" }]\n', "adapters.ble[0].devices[0].characteristics[0].uuid"),
        (DEV + 'characteristics = [{ uuid = "2a6e", mode = "push" }]\n',
         "adapters.ble[0].devices[0].characteristics[0].mode"),
        (DEV + 'characteristics = [{ uuid = "2a6e", interval = "0s" }]\n',
         "adapters.ble[0].devices[0].characteristics[0].interval"),
        (DEV + 'characteristics = [{ uuid = "2a6e" }, { uuid = "00002a6e-0000-1000-8000-00805f9b34fb" }]\n',
         "adapters.ble[0].devices[0].characteristics[1].uuid"),
        (DEV + 'characteristics = [{ uuid = "ffe1" }]\n', "adapters.ble[0].devices[0].characteristics[0].layout"),
        (DEV + 'characteristics = [{ uuid = "ffe1", layout = { format = "<q!", fields = [{ channel = "a" }] } }]\n',
         "adapters.ble[0].devices[0].characteristics[0].layout.format"),
        (DEV + 'characteristics = [{ uuid = "ffe1", layout = { format = "<hh", fields = [{ channel = "a" }] } }]\n',
         "adapters.ble[0].devices[0].characteristics[0].layout.fields"),
        (DEV + 'characteristics = [{ uuid = "ffe1", layout = { format = "<h", fields = [{ unit = "a" }] } }]\n',
         "adapters.ble[0].devices[0].characteristics[0].layout.fields[0].channel"),
        (DEV + 'characteristics = [{ uuid = "ffe1", layout = { format = "<h", fields = [{ channel = "a", '
         'factor = "x" }] } }]\n', "adapters.ble[0].devices[0].characteristics[0].layout.fields[0].factor"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert f"{tmp_path / 'edge.toml'}: {key}:" in str(err.value)


def test_address_of_default_ids() -> None:
    assert _address_of("a4c138000001") == "A4:C1:38:00:00:01"
    assert _address_of("greenhouse") is None and _address_of("A4C138000001") is None


def test_bleak_is_imported_only_by_a_running_ble_adapter(tmp_path: Path) -> None:
    """A broker without BLE never imports bleak; parsing a BLE config (check-config) does not either."""
    (tmp_path / "plain.toml").write_text('port = -1\n[[adapters.demo]]\ninterval = "10ms"\n')
    (tmp_path / "ble.toml").write_text(GOOD)
    code = (
        "import asyncio, sys\n"
        "from edge.config import load_settings\n"
        "from edge.runtime.broker import Broker\n"
        "from tests.support.waiting import async_wait_for\n"
        f"load_settings({str(tmp_path / 'ble.toml')!r})\n"
        "assert 'bleak' not in sys.modules, 'config parse imported bleak'\n"
        "async def main():\n"
        f"    b = Broker(load_settings({str(tmp_path / 'plain.toml')!r}))\n"
        "    await b.start()\n"
        "    try:\n"
        "        await async_wait_for(lambda: b.adapters.snapshot() and b.adapters.snapshot()[0]['readings'], 5,\n"
        "                             'the demo adapter to publish')\n"
        "    finally:\n"
        "        await b.stop(1.0)\n"
        "    assert 'bleak' not in sys.modules, 'broker imported bleak'\n"
        "asyncio.run(main())\n"
        "print('ok')\n"
    )
    root = Path(__file__).resolve().parents[2]  # the repository: ``tests`` imports from there
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr
