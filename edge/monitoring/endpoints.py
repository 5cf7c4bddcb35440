"""The monitoring endpoints' data, in nats-server's JSON shapes (server/monitor.go, v2.15).

Pure functions of a :class:`MonitoredBroker` and the query string; no sockets. Times are RFC 3339 UTC
strings, durations Go ``time.Duration`` strings ("1m2s", "1.5ms") and ``ping_interval``/``write_deadline``
nanoseconds, as nats-server renders them, so prometheus-nats-exporter, NATS surveyor and ``nats server``
checks parse them. Bad query values raise :class:`QueryError` (-> HTTP 400), as monitor.go does for an
unknown ``sort``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from edge import NATS_SERVER_VERSION, __version__, build_kind
from edge.config.settings import Settings
from edge.core.server import ClosedConnection
from edge.errors import EdgeError
from edge.monitoring.providers import DeviceProvider, LeafLinkProvider
from edge.protocol.gofmt import go_duration

__all__ = [
    "DEFAULT_LIMIT",
    "MonitoredBroker",
    "QueryError",
    "connz",
    "devicez",
    "healthz",
    "leafz",
    "rfc3339",
    "routez",
    "subsz",
    "varz",
]

# monitor.go DefaultConnListSize / DefaultSubListSize.
DEFAULT_LIMIT: Final = 1024
# A bound on what one request may ask for, so /connz?limit=10000000 cannot build a huge response.
MAX_LIMIT: Final = 100_000

_CONNZ_SORTS: Final[dict[str, Callable[[Any, float], Any]]] = {
    # monitor.go SortOpt values; "cid" is the default, "start" sorts like cid.
    "cid": lambda c, now: c.cid,
    "start": lambda c, now: c.start,
    "subs": lambda c, now: -len(c.subs),
    "pending": lambda c, now: -c.pending_bytes,
    "msgs_to": lambda c, now: -c.out_msgs,
    "msgs_from": lambda c, now: -c.in_msgs,
    "bytes_to": lambda c, now: -c.out_bytes,
    "bytes_from": lambda c, now: -c.in_bytes,
    "last": lambda c, now: -_last_activity(c, now),
    "idle": lambda c, now: _last_activity(c, now),
    "uptime": lambda c, now: c.start,
    "rtt": lambda c, now: -c.rtt,
}


class QueryError(EdgeError, ValueError):
    """A query parameter has a value the endpoint does not accept (rendered as HTTP 400)."""


class MonitoredBroker(Protocol):
    """What the endpoints read; edge.runtime.broker.Broker provides it."""

    settings: Settings
    server: Any  # edge.core.server.Server
    leaf_links: list[LeafLinkProvider]
    device_providers: list[DeviceProvider]
    outbox: Any  # OutboxProvider | None
    config_load_time: float
    lame_duck: bool
    mqtt: Any  # edge.mqtt.listener.MQTTListener | None


# -- formatting -----------------------------------------------------------------------------------


def rfc3339(ts: float) -> str:
    """UNIX seconds as nats-server prints times: ``2026-11-26T17:03:07.761977Z`` (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uptime(seconds: float) -> str:
    """monitor.go myUptime: "1d2h3m4s" style with whole seconds."""
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours}h{minutes}m{s}s"
    if hours:
        return f"{hours}h{minutes}m{s}s"
    if minutes:
        return f"{minutes}m{s}s"
    return f"{s}s"


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _secs(seconds: float) -> float | int:
    # nats-server renders auth_timeout/tls_timeout as float64 seconds; whole numbers print as ints.
    return int(seconds) if float(seconds).is_integer() else seconds


# -- query parsing ---------------------------------------------------------------------------------


def _int_param(query: Mapping[str, str], name: str, default: int, maximum: int | None = None) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"invalid value for {name}: {raw!r}") from None
    if value < 0:
        raise QueryError(f"invalid value for {name}: {raw!r}")
    return min(value, maximum) if maximum is not None else value


def _subs_param(query: Mapping[str, str]) -> str:
    raw = query.get("subs", "").lower()
    if raw in ("", "0", "false"):
        return ""
    if raw in ("1", "true"):
        return "list"
    if raw == "detail":
        return "detail"
    raise QueryError(f"invalid value for subs: {raw!r}")


# -- endpoints ------------------------------------------------------------------------------------


def varz(b: MonitoredBroker, http_req_stats: Mapping[str, int], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    s, srv = b.settings, b.server
    r = srv.router
    links = [link.snapshot() for link in b.leaf_links]
    leaf: dict[str, Any] = {}
    if links:
        leaf = {"remotes": [{"local_account": ln.get("account", "$G"), "urls": [ln.get("url", "")]} for ln in links]}
    return {
        "server_id": srv.server_id,
        "server_name": srv.server_name,
        "version": NATS_SERVER_VERSION,
        "edge_version": __version__,
        "edge_build": build_kind(),  # "compiled" (Cython) or "pure" (edge.build_kind)
        "proto": 1,
        "go": f"python{platform.python_version()}",
        "host": s.host,
        "port": srv.port,
        "max_connections": s.max_connections,
        "ping_interval": _ns(s.ping_interval),
        "ping_max": s.ping_max,
        "http_host": s.http_host,
        "http_port": getattr(getattr(b, "monitor", None), "port", 0) or s.http_port,
        "http_base_path": "",
        "https_port": 0,
        "auth_timeout": _secs(s.authorization.timeout),
        "max_control_line": s.max_control_line,
        "max_payload": s.max_payload,
        "max_pending": s.max_pending,
        "max_subscriptions": s.max_subscriptions,
        "cluster": {},
        "gateway": {},
        "leaf": leaf,
        "mqtt": b.mqtt.varz() if getattr(b, "mqtt", None) is not None else {},  # edge.mqtt.listener
        "websocket": {},
        "jetstream": {},
        "tls_timeout": 2,
        "write_deadline": _ns(s.write_deadline),
        "lame_duck_duration": _ns(s.lame_duck_duration),
        "lame_duck_grace_period": _ns(s.lame_duck_grace_period),
        "start": rfc3339(srv.start_time),
        "now": rfc3339(now),
        "uptime": _uptime(now - srv.start_time),
        "mem": _rss_bytes(),
        "cores": os.cpu_count() or 1,
        "cpu": _cpu_percent(now - srv.start_time),
        "connections": srv.connection_count,  # MQTT clients too, as nats-server counts them
        "total_connections": srv.total_connections,
        "routes": 0,
        "remotes": 0,
        "leafnodes": sum(1 for ln in links if ln.get("connected")),
        "in_msgs": r.in_msgs,
        "in_bytes": r.in_bytes,
        "out_msgs": r.out_msgs,
        "out_bytes": r.out_bytes,
        "slow_consumers": srv.slow_consumers,
        "stale_connections": srv.stale_connections,
        "subscriptions": len(srv.sublist),
        "http_req_stats": dict(http_req_stats),
        "config_load_time": rfc3339(b.config_load_time),
        "system_account": "",
        "slow_consumer_stats": {"clients": srv.slow_consumers, "routes": 0, "gateways": 0, "leafs": 0},
        "stale_connection_stats": {"clients": srv.stale_connections, "routes": 0, "gateways": 0, "leafs": 0},
        **_outbox_varz(b),
    }


def _outbox_varz(b: MonitoredBroker) -> dict[str, Any]:
    """``{"outbox": {...every stats field...}}`` when store-and-forward is on (our addition; nats-server has
    no outbox), e.g. ``"disk_full": true, "disk_error": "ENOSPC: No space left on device"``; else ``{}``."""
    if b.outbox is None:
        return {}
    st = b.outbox.stats()
    fields = dataclasses.asdict(st) if dataclasses.is_dataclass(st) and not isinstance(st, type) else dict(vars(st))
    return {"outbox": fields}


def _last_activity(conn: Any, now: float) -> float:
    """Wall-clock time of the connection's last inbound data (ClientConnection keeps loop time)."""
    last_in = getattr(conn, "_last_in", 0.0)
    if not last_in:
        return float(conn.start)
    return now - max(0.0, conn.loop.time() - last_in)


def _sub_detail(sub: Any, cid: int) -> dict[str, Any]:
    d: dict[str, Any] = {"subject": sub.subject.decode(errors="replace")}
    if sub.queue:
        d["qgroup"] = sub.queue.decode(errors="replace")
    d["sid"] = sub.sid.decode(errors="replace")
    d["msgs"] = sub.delivered
    if sub.max_msgs:
        d["max"] = sub.max_msgs
    d["cid"] = cid
    return d


def _entry(c: Any, now: float, last: float, stop: float | None) -> dict[str, Any]:
    """The fields open and closed connections share (monitor.go ConnInfo); ``stop`` for closed ones."""
    entry: dict[str, Any] = {
        "cid": c.cid,
        "kind": "Client",
        "type": "mqtt" if getattr(c, "mqtt_client", None) else "nats",
        "ip": c.host,
        "port": c.port,
        "start": rfc3339(c.start),
        "last_activity": rfc3339(last),
    }
    if stop is not None:
        entry["stop"] = rfc3339(stop)
        entry["reason"] = c.reason
    entry.update({
        "rtt": go_duration(c.rtt),
        "uptime": _uptime((now if stop is None else stop) - c.start),
        "idle": _uptime(now - last),
        "pending_bytes": c.pending_bytes,
        "in_msgs": c.in_msgs,
        "out_msgs": c.out_msgs,
        "in_bytes": c.in_bytes,
        "out_bytes": c.out_bytes,
        "subscriptions": len(c.subs),
    })
    entry.update({k: v for k, v in (("name", c.name), ("lang", c.lang), ("version", c.version)) if v})
    if getattr(c, "mqtt_client", None):
        entry["mqtt_client"] = c.mqtt_client
    if getattr(c, "user", None):
        entry["authorized_user"] = c.user
        entry["account"] = "$G"
    return entry


def _open_entry(c: Any, now: float, subs: str | None) -> dict[str, Any]:
    entry = _entry(c, now, _last_activity(c, now), None)
    if subs == "list" and c.subs:
        entry["subscriptions_list"] = [s.subject.decode(errors="replace") for s in c.subs.values()]
    elif subs == "detail" and c.subs:
        entry["subscriptions_list_detail"] = [_sub_detail(s, c.cid) for s in c.subs.values()]
    return entry


def _closed_entry(c: ClosedConnection, now: float, subs: str | None) -> dict[str, Any]:
    entry = _entry(c, now, c.stop, c.stop)
    if subs and c.subs:  # only the subjects are kept after the close
        entry["subscriptions_list"] = list(c.subs)
    return entry


def connz(b: MonitoredBroker, query: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    srv = b.server
    sort = query.get("sort", "cid") or "cid"
    if sort not in _CONNZ_SORTS and sort not in ("stop", "reason"):
        raise QueryError(f"invalid sorting option: {sort!r}")
    state = query.get("state", "open") or "open"
    if state not in ("open", "closed", "any", "all"):
        raise QueryError(f"invalid connection state: {state!r}")
    offset = _int_param(query, "offset", 0)
    limit = _int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    subs = _subs_param(query)
    cid_filter = _int_param(query, "cid", 0)
    conns: list[Any] = [] if state == "closed" else list(srv.clients.values())
    if state != "closed" and getattr(b, "mqtt", None) is not None:  # MQTT clients, as nats-server lists them
        conns += b.mqtt.connections
    if state != "open":
        conns += reversed(srv.closed_clients)  # most recent first, as nats-server lists them
    if cid_filter:
        conns = [c for c in conns if c.cid == cid_filter]
    if sort in _CONNZ_SORTS:
        key = _CONNZ_SORTS[sort]
        conns.sort(key=lambda c: key(c, now))
    elif sort == "stop":  # nats-server: most recently closed first; open connections last
        conns.sort(key=lambda c: -getattr(c, "stop", 0.0))
    else:  # "reason"
        conns.sort(key=lambda c: getattr(c, "reason", ""))
    total = len(conns)
    out = [_closed_entry(c, now, subs) if isinstance(c, ClosedConnection) else _open_entry(c, now, subs)
           for c in conns[offset : offset + limit]]
    return {
        "server_id": srv.server_id,
        "now": rfc3339(now),
        "num_connections": len(out),
        "total": total,
        "offset": offset,
        "limit": limit,
        "connections": out,
    }


def subsz(b: MonitoredBroker, query: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    srv = b.server
    sl = srv.sublist
    offset = _int_param(query, "offset", 0)
    limit = _int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    subs = _subs_param(query)
    test = query.get("test", "")
    # Fan-out statistics over the match cache, as monitor.go/sublist.go Stats() compute them.
    cache = getattr(sl, "_cache", {})
    fanouts = [len(m.plain) + len(m.queues) for m in cache.values()]
    matches, hits = srv.router.match_stats()
    result: dict[str, Any] = {
        "server_id": srv.server_id,
        "now": rfc3339(now),
        "num_subscriptions": len(sl),
        "num_cache": len(cache),
        "num_inserts": sl.inserts,
        "num_removes": sl.removes,
        "num_matches": matches,
        "cache_hit_rate": (hits / matches) if matches else 0.0,
        "max_fanout": max(fanouts, default=0),
        "avg_fanout": (sum(fanouts) / len(fanouts)) if fanouts else 0.0,
    }
    if subs or test:
        all_subs = sl.all()
        if test:
            from edge.protocol.subjects import is_valid_literal_subject

            if not is_valid_literal_subject(test.encode()):
                raise QueryError(f"invalid test subject: {test!r}")
            m = sl.match(test.encode())
            matched = {id(s) for s in m.plain}
            for group in m.queues:
                matched.update(id(s) for s in group.members)
            all_subs = [s for s in all_subs if id(s) in matched]
        all_subs.sort(key=lambda s: (s.subject, s.sid))
        result["total"] = len(all_subs)
        result["offset"] = offset
        result["limit"] = limit
        detail = []
        for s in all_subs[offset : offset + limit]:
            d = _sub_detail(s, getattr(s.conn, "cid", 0))
            detail.append({"account": "$G", "account_tag": "$G", **d})
        result["subscriptions_list"] = detail
    else:
        result.update(total=0, offset=offset, limit=limit)
    return result


def leafz(b: MonitoredBroker, query: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    subs = _subs_param(query)
    leafs = []
    for link in b.leaf_links:
        ln = link.snapshot()
        if not ln.get("connected"):
            continue  # nats-server lists only established leaf connections
        entry: dict[str, Any] = {
            "name": ln.get("name", ""),
            "is_spoke": True,  # we always solicit: on our side the link is a spoke (CAP)
            "account": ln.get("account", "$G"),
            "ip": ln.get("ip", ""),
            "port": ln.get("port", 0),
            "rtt": go_duration(float(ln.get("rtt", 0.0))),
            "in_msgs": ln.get("in_msgs", 0),
            "out_msgs": ln.get("out_msgs", 0),
            "in_bytes": ln.get("in_bytes", 0),
            "out_bytes": ln.get("out_bytes", 0),
            "subscriptions": ln.get("subscriptions", 0),
            "compression": ln.get("compression", "off"),
        }
        if subs:
            entry["subscriptions_list"] = list(ln.get("subscriptions_list", []))
        leafs.append(entry)
    return {"server_id": b.server.server_id, "now": rfc3339(now), "leafnodes": len(leafs), "leafs": leafs}


def routez(b: MonitoredBroker, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    srv = b.server
    return {"server_id": srv.server_id, "server_name": srv.server_name, "now": rfc3339(now), "num_routes": 0,
            "routes": []}


def healthz(b: MonitoredBroker) -> tuple[int, dict[str, Any]]:
    """200 ``{"status":"ok"}`` while accepting clients; 503 with an error otherwise (lame duck, stopping, an
    outbox that cannot write)."""
    if b.lame_duck:
        return 503, {"status": "unavailable", "error": "server is in lame duck mode"}
    if not b.server.accepting:
        return 503, {"status": "unavailable", "error": "server is not accepting client connections"}
    # The outbox cannot store (full disk, I/O error): store-and-forward publishes are being refused, so
    # the gateway is not doing its job; 503 "unavailable" like nats-server when its JetStream store fails.
    st = b.outbox.stats() if b.outbox is not None else None
    if getattr(st, "disk_full", False):
        why = getattr(st, "disk_error", "") or "disk error"
        return 503, {"status": "unavailable", "error": f"outbox cannot write ({why}): store-and-forward "
                                                       "messages are rejected"}
    return 200, {"status": "ok"}


def devicez(b: MonitoredBroker, query: Mapping[str, str], now: float | None = None) -> dict[str, Any]:
    """Adapter devices (our own endpoint; nats-server has none). ``?adapter=ble`` filters."""
    now = time.time() if now is None else now
    adapter = query.get("adapter", "")
    devices: list[dict[str, Any]] = []
    for provider in b.device_providers:
        for d in provider.snapshot():
            if adapter and d.get("adapter") != adapter:
                continue
            entry = dict(d)
            for key in ("first_seen", "last_seen"):
                seen = entry.get(key)
                if isinstance(seen, (int, float)):
                    entry[key] = rfc3339(float(seen))
            devices.append(entry)
    offset = _int_param(query, "offset", 0)
    limit = _int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
    return {
        "server_id": b.server.server_id,
        "now": rfc3339(now),
        "num_devices": len(devices[offset : offset + limit]),
        "total": len(devices),
        "offset": offset,
        "limit": limit,
        "devices": devices[offset : offset + limit],
    }


# -- process statistics ------------------------------------------------------------------------------


def _rss_bytes() -> int:
    """Resident set size from /proc/self/statm (Linux); 0 elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            fields = fh.read(256).split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def _cpu_percent(elapsed: float) -> float:
    """Average CPU use since start, in percent of one core (nats-server reports pse's percentage)."""
    if elapsed <= 0:
        return 0.0
    t = os.times()
    return round(100.0 * (t.user + t.system) / elapsed, 2)
