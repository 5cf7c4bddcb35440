"""The status page: the JSON it polls (``/statusz``), the bounded history behind its plots, its assets.

History (:class:`StatusHistory`): one :class:`Ring` per reading channel (adapter instance, device,
channel) and one for the outbox depth. A ring is ``POINTS`` float32 slots, one per ``step`` seconds
(30 s x 120 = the last hour); the slot of the current step holds the latest value seen in it, a step
without data is empty. Recording a reading (:meth:`StatusHistory.record`, called from
``AdapterContext.reading``) is O(1): two dict lookups and one slot write; only a channel's first
reading allocates (its record and ring). At most ``MAX_CHANNELS`` channels are tracked; readings of
further channels are counted in ``channels_dropped`` and not kept. Measured cost
(tests/unit/test_statuspage.py): about 0.8 KB per channel, so 500 devices x 4 channels is ~1.6 MB,
the same after one hour as after ten. The outbox depth is sampled every step by a timer and on every
request; the free disk space under the outbox every step, in a worker thread. Buckets count steps of
the monotonic clock (see StatusHistory.__init__).

Warnings and errors of the ``edge`` loggers are kept by :class:`RecentLog` (the last ``LOG_LINES``,
each cut to ``LOG_TEXT`` characters), installed while the monitoring server runs.

Why the page polls rather than using server-sent events: a poll is one short request that any proxy,
VPN or flaky mobile link carries, needs no connection held per viewer (the monitoring server allows
32 connections and closes idle ones), and recovers by itself after a gap; ``?since=<bucket>`` makes
each poll send only the history points the page does not have yet, and ``?log=<seq>`` only new log
lines. Measured with 504 demo devices (tests/integration/test_statuspage.py): the first answer is
~380 KB of JSON, a poll ~240 KB (every reading changed), ~13 KB with the gzip the server applies to
the page's paths when the browser accepts it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from array import array
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

from edge import __version__
from edge.monitoring.endpoints import MonitoredBroker, QueryError, _rss_bytes

__all__ = ["MAX_CHANNELS", "POINTS", "RecentLog", "Ring", "StatusHistory", "asset", "load_assets", "statusz"]

POINTS: Final = 120
MAX_CHANNELS: Final = 8192
LOG_LINES: Final = 100
LOG_TEXT: Final = 400
_NAN: Final = float("nan")


class Ring:
    """``POINTS`` float32 slots, slot ``b % POINTS`` holding bucket ``b``; ``bucket`` is the newest written."""

    __slots__ = ("bucket", "values")

    def __init__(self) -> None:
        self.values = array("f", [_NAN]) * POINTS
        self.bucket = -1

    def put(self, bucket: int, value: float) -> None:
        """Set bucket ``bucket`` (the latest value of a step wins); older buckets than the newest are ignored."""
        if bucket > self.bucket:
            if self.bucket >= 0:
                # Empty the slots of the steps that had no data (at most POINTS: amortised O(1) per step).
                for b in range(self.bucket + 1, min(bucket, self.bucket + POINTS + 1)):
                    self.values[b % POINTS] = _NAN
            self.bucket = bucket
        if bucket == self.bucket:
            self.values[bucket % POINTS] = value

    def since(self, first: int, last: int) -> dict[str, Any]:
        """``{"from": b, "values": [...]}``: buckets ``b..last`` where ``b >= first`` is the first with data
        (leading empty buckets are left out); None for an empty bucket after it."""
        first = max(first, last - POINTS + 1, self.bucket - POINTS + 1)
        out: list[float | None] = []
        for b in range(first, min(last, self.bucket) + 1):
            v = self.values[b % POINTS]
            if math.isnan(v):
                if out:
                    out.append(None)
                else:
                    first = b + 1
            else:
                out.append(float(f"{v:.5g}"))
        return {"from": first, "values": out}


class _Channel:
    __slots__ = ("ring", "ts", "unit", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.unit: str | None = None
        self.ts = 0.0
        self.ring: Ring | None = None  # made on the first numeric reading


class StatusHistory:
    """Last reading and an hour of history per channel, and the outbox depth; see the module docstring."""

    def __init__(self, step: float = 30.0, clock: Any = time.monotonic) -> None:
        # Buckets count steps of the monotonic clock: a gateway without an RTC steps its wall clock when
        # NTP syncs, and a backward step would otherwise freeze every ring until the clock caught up.
        self.step = step
        self.clock = clock
        self.devices: dict[tuple[str, str], dict[str, _Channel]] = {}
        self.channels = 0
        self.channels_dropped = 0
        self.outbox_depth = Ring()
        # Uplink state changes as the page observed them: url -> (connected, since).
        self.uplink_since: dict[str, tuple[bool, float]] = {}
        self._cpu_mark = (time.monotonic(), _cpu_seconds())
        self.cpu_percent = 0.0
        # Free bytes on the outbox's file system and where: probed each step in a worker thread
        # (statvfs may wait on a slow SD card), None until the first probe or without an outbox.
        self.disk_free: int | None = None
        self.disk_path = ""

    def bucket(self) -> int:
        return int(self.clock() // self.step)

    def record(self, instance: str, device: str, channel: str, value: Any, unit: str | None, ts: float) -> None:
        """One reading (on the adapter's publish path: O(1), no I/O); ``ts`` is its wall-clock time, shown as is."""
        chans = self.devices.get((instance, device))
        if chans is None:
            chans = self.devices[(instance, device)] = {}
        ch = chans.get(channel)
        if ch is None:
            if self.channels >= MAX_CHANNELS:
                self.channels_dropped += 1
                return
            ch = chans[channel] = _Channel()
            self.channels += 1
        ch.value, ch.unit, ch.ts = value, unit, ts
        if isinstance(value, (int, float)):
            if ch.ring is None:
                ch.ring = Ring()
            ch.ring.put(int(self.clock() // self.step), float(value))

    def forget(self, instance: str, device: str) -> None:
        chans = self.devices.pop((instance, device), None)
        if chans:
            self.channels -= len(chans)

    def sample(self, broker: MonitoredBroker) -> None:
        """The periodic sample: outbox depth, CPU since the last sample."""
        outbox = broker.outbox
        if outbox is not None:
            self.outbox_depth.put(self.bucket(), float(outbox.stats().depth_msgs))
        mark = (time.monotonic(), _cpu_seconds())
        elapsed = mark[0] - self._cpu_mark[0]
        if elapsed >= 1.0:
            self.cpu_percent = round(100.0 * (mark[1] - self._cpu_mark[1]) / elapsed, 1)
            self._cpu_mark = mark

    async def probe_disk(self, directory: str) -> None:
        try:
            st = await asyncio.to_thread(os.statvfs, directory)
        except OSError:
            self.disk_free = None
        else:
            self.disk_free = st.f_bavail * st.f_frsize
        self.disk_path = directory

    def uplink_state(self, url: str, connected: bool, now: float) -> float | None:
        """Seconds since the link's last state change as observed here (None before one was seen)."""
        seen = self.uplink_since.get(url)
        if seen is None or seen[0] != connected:
            self.uplink_since[url] = (connected, now)
            return None if seen is None else 0.0
        return now - seen[1]


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class RecentLog(logging.Handler):
    """The last ``LOG_LINES`` WARNING+ records of the ``edge`` loggers, numbered so a poll asks for new ones."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque[tuple[int, float, str, str, str]] = deque(maxlen=LOG_LINES)
        self.seq = 0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a bad format string in a log call must not break logging
            text = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
        self.seq += 1
        self.lines.append((self.seq, record.created, record.levelname, record.name, text[:LOG_TEXT]))

    def install(self) -> None:
        logging.getLogger("edge").addHandler(self)

    def remove(self) -> None:
        logging.getLogger("edge").removeHandler(self)


# -- /statusz ------------------------------------------------------------------------------------


def _int_arg(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name, "")
    if raw == "":
        return -1
    try:
        return int(raw)
    except ValueError:
        raise QueryError(f"invalid value for {name}: {raw!r}") from None


def statusz(
    b: MonitoredBroker, history: StatusHistory, log: RecentLog, query: Mapping[str, str], now: float | None = None
) -> dict[str, Any]:
    """The page's document. ``since``: the newest history bucket the page holds (series start there, so the
    page replaces that still-open bucket); ``log``: the newest log sequence it holds."""
    now = time.time() if now is None else now
    history.sample(b)
    last = history.bucket()
    since = _int_arg(query, "since")
    first = last - POINTS + 1 if since < 0 else max(since, last - POINTS + 1)
    log_since = _int_arg(query, "log")
    srv = b.server
    return {
        "now": now,
        "step": history.step,
        "bucket": last,
        "first": first,
        "gateway": _gateway(b, history, now),
        "uplinks": [_uplink(link.snapshot(), history) for link in b.leaf_links],
        "outbox": _outbox(b, history, first, last),
        "devices": _devices(b, history, first, last),
        "channels_dropped": history.channels_dropped,
        "clients": {"count": len(srv.clients), "total": srv.total_connections, "slow_consumers": srv.slow_consumers,
                    "stale": srv.stale_connections},
        "log_seq": log.seq,
        "log": [{"seq": s, "ts": ts, "level": lv, "logger": name, "text": text}
                for s, ts, lv, name, text in log.lines if s > log_since],
    }


def _gateway(b: MonitoredBroker, history: StatusHistory, now: float) -> dict[str, Any]:
    srv = b.server
    out: dict[str, Any] = {
        "name": srv.server_name, "server_id": srv.server_id, "version": __version__,
        "profile": b.settings.profile or "", "start": srv.start_time, "uptime": max(0.0, now - srv.start_time),
        "cpu": history.cpu_percent, "rss": _rss_bytes(), "lame_duck": bool(b.lame_duck),
        "in_msgs": srv.router.in_msgs, "out_msgs": srv.router.out_msgs,
        "disk_free": history.disk_free, "disk_path": history.disk_path,
    }
    return out


def _uplink(ln: dict[str, Any], history: StatusHistory) -> dict[str, Any]:
    url = str(ln.get("url", ""))
    connected = bool(ln.get("connected"))
    since = history.uplink_state(url, connected, history.clock())
    if connected:
        since = float(ln.get("connected_for", 0.0) or 0.0)
    return {
        "url": url, "hub": ln.get("name", ""), "state": "up" if connected else "down",
        "rtt": float(ln.get("rtt", 0.0) or 0.0) if connected else None, "since": since,
        "in_msgs": ln.get("in_msgs", 0), "out_msgs": ln.get("out_msgs", 0),
        "in_bytes": ln.get("in_bytes", 0), "out_bytes": ln.get("out_bytes", 0),
        "connects": ln.get("connects", 0), "reconnects": ln.get("reconnects", 0),
        "last_error": ln.get("last_error", ""), "dropped_down": ln.get("dropped_down", 0),
    }


def _outbox(b: MonitoredBroker, history: StatusHistory, first: int, last: int) -> dict[str, Any] | None:
    if b.outbox is None:
        return None
    st = b.outbox.stats()
    return {
        "depth": st.depth_msgs, "bytes": st.stored_bytes, "oldest_age": st.oldest_age or 0.0,
        "dropped": {"full": st.dropped_full, "age": st.dropped_age, "corrupt": st.dropped_corrupt},
        "rejected": st.rejected, "replay_rate": st.replay_rate, "forwarded": st.forwarded,
        "forwarding": bool(st.forwarding), "disk_full": bool(getattr(st, "disk_full", False)),
        "series": history.outbox_depth.since(first, last),
    }


def _devices(b: MonitoredBroker, history: StatusHistory, first: int, last: int) -> list[dict[str, Any]]:
    out = []
    for provider in b.device_providers:
        for d in provider.snapshot():
            instance = str(d.get("instance") or d.get("adapter", ""))
            dev_id = str(d.get("id", ""))
            channels = []
            for name, ch in sorted(history.devices.get((instance, dev_id), {}).items()):
                c: dict[str, Any] = {"name": name, "value": ch.value, "unit": ch.unit}
                if ch.ring is not None:
                    c["series"] = ch.ring.since(first, last)
                channels.append(c)
            out.append({
                "adapter": d.get("adapter", ""), "instance": instance, "id": dev_id, "name": d.get("name") or dev_id,
                "online": bool(d.get("online")), "last_seen": d.get("last_seen"),
                "readings": d.get("readings", 0), "errors": d.get("errors", 0), "channels": channels,
                "actions": [str(a) for a in d.get("actions") or ()],  # commands it accepts (cmd.<...>.<action>)
            })
    out.sort(key=lambda d: (d["adapter"], d["instance"], d["id"]))
    return out


# -- assets --------------------------------------------------------------------------------------

_ASSETS: Final = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_cache: dict[str, bytes] = {}


def load_assets() -> None:
    """Read the page files shipped in edge/monitoring/page/ (once per process; blocking: run it off the loop)."""
    if len(_cache) == len(_ASSETS):
        return
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
    for name in _ASSETS:
        with open(os.path.join(here, name), "rb") as fh:
            _cache[name] = fh.read()


def asset(name: str) -> tuple[str, bytes]:
    """(content type, bytes) of a page file; :func:`load_assets` has run (MonitoringServer.start)."""
    return _ASSETS[name], _cache[name]
