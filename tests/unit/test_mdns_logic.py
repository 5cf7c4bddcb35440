"""Pure mDNS pieces: TXT decoding, matchers, device table, readings, HTTP parsing, registry, config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.adapters.devices import DeviceRegistry, iso_ts
from edge.adapters.mdns.devices import DeviceTable, ServiceRecord
from edge.adapters.mdns.http import PollError, parse_response
from edge.adapters.mdns.matchers import (
    DEFAULT_MATCHERS,
    MAX_TXT_KEYS,
    ServiceMatcher,
    device_id_for,
    instance_of,
    match_service,
    normalize_type,
    parse_txt,
    types_of,
)
from edge.adapters.mdns.readings import FieldSpec, extract_fields, extract_shelly, lookup
from edge.config.loader import load_settings
from edge.errors import ConfigError
from edge.protocol.subjects import gateway_token, sanitize_token


def test_sanitize_and_ids() -> None:
    assert sanitize_token("Kitchen Light.1 *>") == "Kitchen_Light_1_"
    assert sanitize_token("...") == "_"
    assert sanitize_token("", "unknown") == "unknown"
    assert len(sanitize_token("x" * 500)) == 64
    assert gateway_token("gw:lab") == "gw:lab" and gateway_token("my gw.1") == "my_gw_1"
    assert device_id_for("") == "unknown"
    assert device_id_for("ShellyPlus1PM-A8032AB1") == "shellyplus1pm-a8032ab1"
    assert normalize_type("_HTTP._tcp") == "_http._tcp.local."
    assert instance_of("My Dev._http._tcp.local.", "_http._tcp.local.") == "My Dev"


def test_parse_txt_skips_and_counts_bad_entries() -> None:
    r = parse_txt({b"Gen": b"2", b"\xff": b"x", b"ok": b"\xc3\x28", b"": b"v", b"flag": None, b"ctl": b"a\x01"})
    assert r.txt == {"gen": "2", "flag": ""}
    assert r.malformed == 4
    many = {f"k{i}".encode(): b"v" for i in range(MAX_TXT_KEYS + 5)}
    r = parse_txt(many)
    assert len(r.txt) == MAX_TXT_KEYS and r.dropped == 5
    assert parse_txt(None).txt == {}
    assert parse_txt({b"long": b"x" * 300}).malformed == 1


def test_matchers_ha_style() -> None:
    shelly_gen2 = match_service(DEFAULT_MATCHERS, "_http._tcp.local.", "ShellyPlus1PM-abc", {"gen": "2"})
    assert shelly_gen2 is not None and shelly_gen2.kind == "shelly" and shelly_gen2.poller == "shelly"
    gen1 = match_service(DEFAULT_MATCHERS, "_http._tcp.local.", "shelly1-abc", {})
    assert gen1 is not None and gen1.kind == "shelly" and gen1.poller is None
    assert match_service(DEFAULT_MATCHERS, "_http._tcp.local.", "printer", {}) is None
    esp = match_service(DEFAULT_MATCHERS, "_esphomelib._tcp.local.", "anything", {})
    assert esp is not None and esp.kind == "esphome"
    m = ServiceMatcher("_http._tcp", kind="th", name="th*", properties=(("Model", "TH*"),))
    assert m.matches("_http._tcp.local.", "th-1", {"model": "th2"})
    assert not m.matches("_http._tcp.local.", "th-1", {})
    assert not m.matches("_http._tcp.local.", "xx-1", {"model": "th2"})
    assert "_coap._udp.local." in types_of(DEFAULT_MATCHERS)


def _rec(name: str, port: int = 80, txt: tuple[tuple[str, str], ...] = ()) -> ServiceRecord:
    return ServiceRecord(name, "_http._tcp.local.", name.split(".")[0], "h.local", ("10.0.0.2",), port, txt)


def test_device_table_changes_and_bound() -> None:
    t = DeviceTable(max_devices=2)
    assert t.upsert("a", "shelly", "shelly", _rec("a._http._tcp.local."), 1.0)[0] == "discovered"
    assert t.upsert("a", "shelly", "shelly", _rec("a._http._tcp.local."), 2.0)[0] is None
    assert t.upsert("a", "shelly", "shelly", _rec("a._http._tcp.local.", 81), 3.0)[0] == "updated"
    assert t.upsert("a", "shelly", None, _rec("a._shelly._tcp.local."), 3.0)[0] == "updated"  # second type
    assert t.upsert("b", "x", None, _rec("b._http._tcp.local."), 1.0)[0] == "discovered"
    change, dev = t.upsert("c", "x", None, _rec("c._http._tcp.local."), 1.0)
    assert change is None and dev is None and t.refused == 1
    assert t.remove("a._http._tcp.local.")[0] == "updated"
    change, dev = t.remove("A._SHELLY._tcp.local.")
    assert change == "lost" and dev is not None and dev.as_json()["port"] == 80
    assert t.remove("zzz._http._tcp.local.") == (None, None)


SHELLY = {
    "sys": {"uptime": 5},
    "wifi": {"rssi": -70},
    "switch:0": {"output": False, "apower": 0, "aenergy": {"total": 1.5}, "temperature": {"tC": 40.0}},
    "temperature:100": {"tC": 20.1},
    "humidity:0": {"rh": 55.5},
    "unknown:0": {"x": 1},
    "cover:0": "not a dict",
}


def test_shelly_extraction() -> None:
    got = {c: (v, u) for c, v, u in extract_shelly(SHELLY)}
    assert got["switch0_output"] == (False, None)
    assert got["switch0_power"] == (0, "W")
    assert got["switch0_energy"] == (1.5, "Wh")
    assert got["switch0_temperature"] == (40.0, "°C")
    assert got["temperature100"] == (20.1, "°C")
    assert got["humidity0"] == (55.5, "%")
    assert got["wifi_rssi"] == (-70, "dBm") and got["uptime"] == (5, "s")
    assert extract_shelly([1, 2]) == [] and extract_shelly("x") == []


def test_generic_extraction() -> None:
    doc = {"a": {"b": [{"c": 1.5}, {"c": "x" * 1000}]}, "n": None}
    assert lookup(doc, "a.b.0.c") == 1.5 and lookup(doc, "a.b.5.c") is None and lookup(doc, "a.z") is None
    fields = (FieldSpec("t", "a.b.0.c", "°C"), FieldSpec("s", "a.b.1.c"), FieldSpec("o", "a"), FieldSpec("n", "n"))
    assert extract_fields(doc, fields) == [("t", 1.5, "°C")]  # long string, object, null skipped


def test_parse_response() -> None:
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx") == b"{}"
    assert parse_response(b"HTTP/1.0 200 OK\r\n\r\n[1]") == b"[1]"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n"
    assert json.loads(parse_response(chunked)) == {"a": 1}
    for bad, reason in (
        (b"\x00\xffgarbage", "bad_http"),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "http_status"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "bad_http"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n{}", "bad_http"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad_http"),
        (b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n", "bad_http"),
        (b"SSH-2.0 200\r\n\r\n", "bad_http"),
    ):
        with pytest.raises(PollError) as info:
            parse_response(bad)
        assert info.value.reason == reason


class _Provider:
    def snapshot(self) -> list[dict[str, object]]:
        return [{"adapter": "ble", "id": "AA:BB", "online": True, "last_seen": 0.0, "rssi": -60},
                {"adapter": "mdns", "id": "dup", "online": False, "last_seen": None}]


def test_registry_bounded_filtered_and_merged() -> None:
    reg = DeviceRegistry("gw", max_devices=2, providers=lambda: [_Provider()])
    reg.report("mdns", "dup", "online", {"kind": "x"}, now=10.0)
    reg.report("mdns", "b", "discovered", now=11.0)
    reg.report("mdns", "dup", "online", now=12.0)  # refresh: now b is the oldest
    reg.report("serial", "c", "online", now=13.0)
    assert reg.evicted == 1 and reg.get("mdns", "b") is None
    snap = reg.snapshot()
    assert [(d["adapter"], d["device"], d["state"]) for d in snap["devices"]] == [
        ("ble", "AA:BB", "online"), ("mdns", "dup", "online"), ("serial", "c", "online")]
    assert snap["devices"][0]["info"] == {"rssi": -60}
    assert snap["devices"][1]["info"] == {"kind": "x"} and snap["devices"][1]["last_seen"] == iso_ts(12.0)
    assert [d["device"] for d in reg.snapshot(b'{"adapter": "serial"}')["devices"]] == ["c"]
    assert reg.snapshot(b'{"state": "offline"}')["devices"] == []
    assert reg.snapshot(b"not json")["count"] == 3
    assert iso_ts(1764158400.5) == "2025-11-26T12:00:00.500Z"


def test_registry_reply_is_cut_to_max_payload() -> None:
    reg = DeviceRegistry("gw")
    for i in range(400):
        reg.report("mdns", f"dev{i:03d}", "online", {"txt": "x" * 100}, now=1.0)
    full = reg.reply_body(b"", 1 << 20)
    assert "truncated" not in json.loads(full) and len(json.loads(full)["devices"]) == 400
    cut = reg.reply_body(b"", 8192)
    doc = json.loads(cut)
    assert len(cut) <= 8192 and doc["count"] == 400
    assert doc["truncated"] == 400 - len(doc["devices"]) > 0
    assert [d["device"] for d in doc["devices"]] == [f"dev{i:03d}" for i in range(len(doc["devices"]))]
    assert json.loads(reg.reply_body(b"", 10))["devices"] == []  # nothing fits: an empty, counted list


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    conf = tmp_path / "edge.toml"
    conf.write_text(text)
    return load_settings(conf)


def test_config_parses_and_names_keys(tmp_path: Path) -> None:
    s = _load(tmp_path, """
[mdns]
interfaces = ["127.0.0.1"]
types = ["_ipp._tcp.local."]
[[mdns.matchers]]
type = "_http._tcp"
name = "th*"
poller = "th"
[mdns.pollers.th]
path = "/s"
fields = { t = "a.b", h = { path = "c", unit = "%" } }
interval = "500ms"
[mdns.pollers.shelly]
interval = "5s"
""").sections["mdns"]
    assert s.enabled and s.interfaces == ("127.0.0.1",) and s.types == ("_ipp._tcp",)
    assert s.pollers["th"].fields == (("t", "a.b", None), ("h", "c", "%")) and s.pollers["th"].interval == 0.5
    assert s.pollers["shelly"].kind == "shelly" and s.matchers[0].poller == "th"
    for text, key in (
        ('[mdns]\ntypes = ["http"]', "mdns.types"),
        ('[mdns]\nbogus = 1', "mdns.bogus"),
        ('[mdns]\nhub_service = "nats-leaf"', "mdns.hub_service"),
        ('[[mdns.matchers]]\ntype = "_http._tcp"\npoller = "nope"', "mdns.matchers[0].poller"),
        ('[mdns.pollers.x]\npath = "/a"', "mdns.pollers.x.fields"),
        ('[mdns.pollers.x]\npath = "a"\nfields = {t = "a"}', "mdns.pollers.x.path"),
        ('[mdns.pollers.shelly]\npath = "/a"', "mdns.pollers.shelly.path"),
        ('[mdns.pollers.x]\nfields = {"a.b" = "a"}', "mdns.pollers.x.fields"),
    ):
        with pytest.raises(ConfigError) as info:
            _load(tmp_path, text)
        assert key in str(info.value) and "edge.toml" in str(info.value)


def test_plain_broker_does_not_import_zeroconf() -> None:
    code = ("import sys, edge.runtime.broker, edge.config.loader as l; l.load_settings(None); "
            "import edge.adapters.mdns.runtime; print('zeroconf' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
