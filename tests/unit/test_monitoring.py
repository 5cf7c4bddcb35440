"""Monitoring data without sockets: Go duration strings, /metrics text parsed by prometheus_client."""

from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge.config.settings import Settings
from edge.core.server import Server
from edge.monitoring import endpoints as ep
from edge.monitoring.metrics import render_metrics


def test_rfc3339() -> None:
    assert ep.rfc3339(0) == "1970-01-01T00:00:00.000000Z"


class _Link:
    def snapshot(self) -> dict[str, Any]:
        return {"name": "hub1", "url": 'nats-leaf://hub:7422/"q"', "connected": True, "rtt": 0.012,
                "in_msgs": 3, "out_msgs": 4, "in_bytes": 30, "out_bytes": 40, "subscriptions": 2,
                "subscriptions_list": ["a", "b"], "reconnects": 1}


class _Devices:
    def snapshot(self) -> list[dict[str, Any]]:
        return [{"adapter": "ble", "id": "A4:C1", "online": True, "readings": 5, "last_seen": 1.0, "rssi": -70},
                {"adapter": "ble", "id": "B5:D2", "online": False, "readings": 1, "errors": 2},
                {"adapter": "serial", "id": "ttyUSB0", "online": True}]


@dataclasses.dataclass
class _Stats:
    depth_msgs: int = 7
    stored_bytes: int = 1024
    oldest_age: float | None = None


class _Outbox:
    def stats(self) -> _Stats:
        return _Stats()


async def _broker() -> SimpleNamespace:
    settings = Settings()
    server = Server(settings, asyncio.get_running_loop())
    return SimpleNamespace(settings=settings, server=server, leaf_links=[_Link()], device_providers=[_Devices()],
                           outbox=_Outbox(), config_load_time=0.0, lame_duck=False, monitor=None)


async def test_metrics_parse_with_prometheus_client() -> None:
    b = await _broker()
    text = render_metrics(b)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["nats_edge_connections"].samples[0].value == 0
    assert families["nats_edge_in_messages"].type == "counter"
    up = families["nats_edge_uplink_connected"].samples[0]
    assert up.labels == {"remote": 'nats-leaf://hub:7422/"q"'} and up.value == 1
    assert families["nats_edge_uplink_out_messages"].samples[0].value == 4
    assert families["nats_edge_outbox_depth_msgs"].samples[0].value == 7
    assert "nats_edge_outbox_oldest_age" not in families  # None is not a number
    devices = {s.labels["adapter"]: s.value for s in families["nats_edge_adapter_devices"].samples}
    online = {s.labels["adapter"]: s.value for s in families["nats_edge_adapter_devices_online"].samples}
    assert devices == {"ble": 2, "serial": 1} and online == {"ble": 1, "serial": 1}


async def test_leafz_and_devicez_from_providers() -> None:
    b = await _broker()
    leafz = ep.leafz(b, {"subs": "1"})
    assert leafz["leafnodes"] == 1
    leaf = leafz["leafs"][0]
    assert leaf["is_spoke"] is True and leaf["rtt"] == "12ms" and leaf["subscriptions_list"] == ["a", "b"]
    devz = ep.devicez(b, {"adapter": "ble"})
    assert devz["total"] == 2 and devz["devices"][0]["last_seen"] == "1970-01-01T00:00:01.000000Z"


@pytest.mark.parametrize("query", [{"sort": "nope"}, {"offset": "-1"}, {"limit": "x"}, {"subs": "maybe"},
                                   {"state": "gone"}])
async def test_bad_connz_queries_raise_query_error(query: dict[str, str]) -> None:
    b = await _broker()
    with pytest.raises(ep.QueryError):
        ep.connz(b, query)


async def test_subsz_rejects_bad_test_subject() -> None:
    b = await _broker()
    with pytest.raises(ep.QueryError):
        ep.subsz(b, {"test": "foo.*"})


async def test_every_family_has_its_samples() -> None:
    b = await _broker()
    families = list(text_string_to_metric_families(render_metrics(b)))
    assert all(f.type in ("gauge", "counter") for f in families), [(f.name, f.type) for f in families]
    assert all(f.samples for f in families if f.name.startswith("nats_edge_uplink"))
