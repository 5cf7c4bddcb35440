"""The demo adapter: simulated sensors publishing realistic readings, so a newcomer sees data flowing.

``nats-edge run --demo`` (or ``[[adapters.demo]]``) publishes, every ``interval``, one reading per
channel (temperature, humidity, pressure, battery) of each device on ``dev.<gateway>.demo.<device>.<channel>``
and logs one INFO line per batch. Commands (the envelope of :mod:`edge.adapters.commands`): a request on
``cmd.<gateway>.demo.<device>.read`` answers ``{"ok": true, "result": {<latest values>}}``, ``...ping``
``{"ok": true, "result": "pong"}``; another action ``{"ok": false, "code": "unsupported", ...}``.

Keys: ``devices = ["demo1"]``, ``interval = "1s"``, ``seed = 1`` (deterministic values).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.adapters.base import Adapter, sanitize_token
from edge.config import values as v

if TYPE_CHECKING:
    from edge.adapters.commands import Command
    from edge.config.sections import KeyReporter

__all__ = ["DemoAdapter", "DemoConfig"]

_KEYS: Final = frozenset({"devices", "interval", "seed"})
ACTIONS: Final = ("read", "ping")
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
        self.latest: dict[str, dict[str, float]] = {}
        latest = self.latest
        ctx.serve_commands(self._command, cfg.devices)
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

    def actions(self, device: str) -> list[str]:
        return list(ACTIONS)

    async def _command(self, cmd: Command) -> Any:
        from edge.adapters.commands import CommandError

        if cmd.action == "ping":
            return "pong"
        if cmd.action == "read":
            return self.latest.get(cmd.device, {})
        raise CommandError("unsupported", f"unknown action {cmd.action!r}; try read or ping")
