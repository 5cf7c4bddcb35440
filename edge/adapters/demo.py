"""The demo adapter: simulated sensors publishing realistic readings, so a newcomer sees data flowing.

``nats-edge run --demo`` (or ``[[adapters.demo]]``) publishes, every ``interval``, one reading per
channel (temperature, humidity, pressure, battery) of each device on ``dev.<gateway>.demo.<device>.<channel>``
and logs one INFO line per batch. Commands: a request on ``cmd.<gateway>.demo.<device>.read`` answers
with the latest values as JSON, ``...ping`` with ``pong``; other actions get an error object.

Keys: ``devices = ["demo1"]``, ``interval = "1s"``, ``seed = 1`` (deterministic values).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.adapters.base import Adapter, sanitize_token
from edge.config import values as v

if TYPE_CHECKING:
    from edge.config.loader import KeyReporter
    from edge.core.internal import Message

__all__ = ["DemoAdapter", "DemoConfig"]

_KEYS: Final = frozenset({"devices", "interval", "seed"})
MAX_DEMO_DEVICES: Final = 64


@dataclass(frozen=True, slots=True)
class DemoConfig:
    devices: tuple[str, ...] = ("demo1",)
    interval: float = 1.0
    seed: int | None = None


class DemoAdapter(Adapter):
    kind = "demo"

    @classmethod
    def parse_config(cls, table: dict[str, Any], rep: KeyReporter) -> DemoConfig:
        rep.reject_unknown(table, _KEYS)
        kw: dict[str, Any] = {}
        if "devices" in table:
            devices = rep.read(table, "devices", v.read_str_list)
            if not devices or len(devices) > MAX_DEMO_DEVICES:
                raise rep.error("devices", f"expected 1 to {MAX_DEMO_DEVICES} device names")
            kw["devices"] = tuple(sanitize_token(d) for d in devices)
        if "interval" in table:
            kw["interval"] = rep.read(table, "interval", v.read_duration, minimum=0.01, maximum=3600.0)
        if "seed" in table:
            kw["seed"] = rep.read(table, "seed", v.read_int)
        return DemoConfig(**kw)

    async def run(self) -> None:
        from firmware_bridge.simulator import UNITS, Simulator

        cfg: DemoConfig = self.config
        ctx = self.ctx
        sims = {
            d: Simulator("jsonl", device=d, seed=None if cfg.seed is None else cfg.seed + i)
            for i, d in enumerate(cfg.devices)
        }
        latest: dict[str, dict[str, float]] = {}
        for device in cfg.devices:
            ctx.on_command(device, lambda action, msg, d=device: self._command(d, action, msg, latest))
        ctx.log.info(
            "demo adapter: %d simulated device(s) publishing every %gs on %s",
            len(sims), cfg.interval, ctx.templates.reading,
        )
        while True:
            now = time.time()
            for device, sim in sims.items():
                values = sim.sample(now)
                latest[device] = values
                for channel, value in values.items():
                    ctx.reading(device, channel, value, UNITS[channel], ts=now)
                text = " ".join(f"{ch}={val}{UNITS[ch]}" for ch, val in values.items())
                ctx.log.info("demo %s: %s -> %s", device, text, ctx.subject("reading", device, channel="x")[:-1] + "*")
            await asyncio.sleep(cfg.interval)

    def _command(self, device: str, action: str, msg: Message, latest: dict[str, dict[str, float]]) -> None:
        if action == "ping":
            body: Any = "pong"
        elif action == "read":
            body = latest.get(device, {})
        else:
            body = {"error": f"unknown action {action!r}; try read or ping"}
        payload = body.encode() if isinstance(body, str) else json.dumps(body, ensure_ascii=False).encode()
        self.ctx.respond(msg, payload)
