"""``/metrics``: Prometheus text exposition format 0.0.4, written by hand (no client library needed).

Covers the broker (connections, messages, bytes, subscriptions, slow/stale), the leaf uplink (one
series per remote, labelled ``remote``), the outbox (every numeric field of ``OutboxStats``) and the
adapters (devices known/online, readings and errors per adapter). Names follow the Prometheus naming
guide: a ``nats_edge_`` prefix, base units, ``_total`` for counters.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any, Final

from edge.monitoring.endpoints import MonitoredBroker, _rss_bytes

__all__ = ["CONTENT_TYPE", "render_metrics"]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    # Exposition format: label values escape backslash, double quote and line feed.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str] | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(
        self, name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str] | None, float | int]]
    ) -> None:
        # Text format 0.0.4: a counter's samples and metadata carry the _total suffix (parsers strip it).
        sample_name = f"{name}_total" if kind == "counter" else name
        self.lines.append(f"# HELP {sample_name} {help_text}")
        self.lines.append(f"# TYPE {sample_name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{sample_name}{_labels(labels)} {_num(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float | int) -> None:
        self.family(name, kind, help_text, [(None, value)])


def render_metrics(b: MonitoredBroker, now: float | None = None) -> str:
    now = time.time() if now is None else now
    srv = b.server
    r = srv.router
    w = _Writer()
    w.one("nats_edge_info", "gauge", "Build information (always 1).", 1)
    w.lines[-1] = w.lines[-1].replace("nats_edge_info 1", f'nats_edge_info{_labels(_info_labels(b))} 1')
    w.one("nats_edge_start_time_seconds", "gauge", "UNIX time the broker started.", srv.start_time)
    w.one("nats_edge_uptime_seconds", "gauge", "Seconds since the broker started.", max(0.0, now - srv.start_time))
    w.one("nats_edge_resident_memory_bytes", "gauge", "Resident set size of the broker process.", _rss_bytes())
    w.one("nats_edge_connections", "gauge", "Open client connections (NATS and MQTT).", srv.connection_count)
    w.one("nats_edge_connections_accepted", "counter", "Client connections accepted since start.",
          srv.total_connections)
    w.one("nats_edge_subscriptions", "gauge", "Subscriptions in the subscription index.", len(srv.sublist))
    w.one("nats_edge_in_messages", "counter", "Messages received from clients, adapters and the uplink.", r.in_msgs)
    w.one("nats_edge_in_bytes", "counter", "Payload bytes received.", r.in_bytes)
    w.one("nats_edge_out_messages", "counter", "Messages delivered to subscribers.", r.out_msgs)
    w.one("nats_edge_out_bytes", "counter", "Payload bytes delivered.", r.out_bytes)
    w.one("nats_edge_slow_consumers", "counter", "Clients closed as slow consumers.", srv.slow_consumers)
    w.one("nats_edge_stale_connections", "counter", "Clients closed as stale (missed PINGs).", srv.stale_connections)
    w.one("nats_edge_auth_failures", "counter", "Failed client authentications.", getattr(srv, "auth_failures", 0))
    w.one("nats_edge_lame_duck", "gauge", "1 while in lame duck mode.", int(bool(b.lame_duck)))
    w.one("nats_edge_config_load_time_seconds", "gauge", "UNIX time the configuration was (re)loaded.",
          b.config_load_time)

    links = [link.snapshot() for link in b.leaf_links]
    per = [({"remote": str(ln.get("url", ""))}, ln) for ln in links]
    w.family("nats_edge_uplink_connected", "gauge", "1 when the leaf link to the hub is up.",
             [(lab, int(bool(ln.get("connected")))) for lab, ln in per])
    w.family("nats_edge_uplink_rtt_seconds", "gauge", "Round-trip time to the hub.",
             [(lab, float(ln.get("rtt", 0.0))) for lab, ln in per])
    for key, help_text in (
        ("in_msgs", "Messages received from the hub."),
        ("out_msgs", "Messages sent to the hub."),
        ("in_bytes", "Bytes received from the hub."),
        ("out_bytes", "Bytes sent to the hub."),
        ("reconnects", "Reconnections of the leaf link."),
    ):
        name = "nats_edge_uplink_" + key.replace("msgs", "messages")
        w.family(name, "counter", help_text, [(lab, int(ln.get(key, 0))) for lab, ln in per])

    outbox = b.outbox
    if outbox is not None:
        stats = outbox.stats()
        if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
            fields = dataclasses.asdict(stats)
        else:
            fields = dict(vars(stats))
        for key, value in sorted(fields.items()):
            if isinstance(value, bool):  # disk_full, forwarding: 0/1 gauges
                value = int(value)
            if not isinstance(value, (int, float)):
                continue
            w.one(f"nats_edge_outbox_{key}", "gauge", f"Outbox statistic {key} (edge.store OutboxStats).", value)

    mqtt = getattr(b, "mqtt", None)  # edge.mqtt.listener.MQTTListener when [mqtt] is on
    if mqtt is not None:
        for key, value in sorted(mqtt.varz().items()):
            if isinstance(value, int) and not isinstance(value, bool) and key not in ("port", "ack_wait"):
                w.one(f"nats_edge_mqtt_{key}", "gauge", f"MQTT listener statistic {key} (edge.mqtt).", value)

    devices: list[dict[str, Any]] = []
    for provider in b.device_providers:
        devices.extend(provider.snapshot())
    adapters: dict[str, dict[str, int]] = {}
    for d in devices:
        a = adapters.setdefault(str(d.get("adapter", "")), {"known": 0, "online": 0, "readings": 0, "errors": 0})
        a["known"] += 1
        a["online"] += int(bool(d.get("online")))
        a["readings"] += int(d.get("readings", 0) or 0)
        a["errors"] += int(d.get("errors", 0) or 0)
    items = sorted(adapters.items())
    w.family("nats_edge_adapter_devices", "gauge", "Devices known to an adapter.",
             [({"adapter": k}, a["known"]) for k, a in items])
    w.family("nats_edge_adapter_devices_online", "gauge", "Devices currently online.",
             [({"adapter": k}, a["online"]) for k, a in items])
    w.family("nats_edge_adapter_readings", "counter", "Readings published by an adapter.",
             [({"adapter": k}, a["readings"]) for k, a in items])
    w.family("nats_edge_adapter_errors", "counter", "Errors reported by an adapter's devices.",
             [({"adapter": k}, a["errors"]) for k, a in items])
    return "\n".join(w.lines) + "\n"


def _info_labels(b: MonitoredBroker) -> dict[str, str]:
    from edge import __version__

    return {"version": __version__, "server_id": b.server.server_id, "server_name": b.server.server_name}
