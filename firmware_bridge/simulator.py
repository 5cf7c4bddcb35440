"""A sans-IO serial device: realistic readings rendered as the bytes a codec expects.

``Simulator(codec, device, seed).next_chunk(now)`` advances the models to ``now`` (seconds since the
epoch, supplied by the caller: no clock is read here) and returns one sample's bytes. A pty driver
only has to call ``next_chunk`` on a timer, write the result, and pass what it reads from the pty to
``receive``, writing back what that returns (PONGs, so the broker does not close the device as stale).

Models (deterministic for a given seed):
- temperature (°C): daily sine of ±3 °C around 21 °C, a mean-reverting random drift, sensor noise;
- humidity (%): anti-correlated with temperature, plus drift, clamped to 0..100;
- pressure (hPa): Ornstein-Uhlenbeck walk around 1013.25;
- battery (%): linear discharge (about 55 h from full), clamped at 0;
- GPS (nmea only): a walk at about 1.4 m/s whose heading wanders, starting from ``start``.

Renderings: ``nats``: ``CONNECT`` once, then one ``PUB <prefix>.<channel>`` per channel with a JSON
body ``{"value":..,"unit":..,"ts":..}``; ``frames``: the same ops, one per COBS+CRC frame; ``jsonl``:
one object per sample; ``nmea``: GGA + RMC with correct checksums; ``lines``: ``T=.. H=.. P=.. B=..``,
matched by ``LINES_PATTERN``. ``codec_options()`` returns the matching ``get_codec`` options and
``config_block(port)`` the ready-to-paste ``[[adapters.serial]]`` TOML table that reads (and, for
``lines``, commands) this device.

Commands (``jsonl``/``lines``; :mod:`firmware_bridge.commands`): the simulated device has a relay.
``receive`` takes the gateway's command lines and returns the reply lines (jsonl). Actions (``ACTIONS``):
``relay`` ``{"on": true}`` -> ``{"relay": true}``; ``toggle`` -> ``{"relay": <new state>}``; ``read`` ->
the last sample's values. Another action is answered ``unsupported``, a bad ``on`` ``bad_arguments``.
``lines`` devices take ``RELAY 1``/``RELAY 0`` (``LINES_COMMAND_TEMPLATE``) and answer nothing. Every
command taken is appended to ``commands`` (``(action, args)``), so a test can see what arrived.
"""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime
from typing import Final, Literal

from firmware_bridge._linebuf import LineBuffer
from firmware_bridge.commands import encode_reply, parse_command
from firmware_bridge.frames import FrameDecoder, encode_frame
from firmware_bridge.nats import PONG, Ping, ServerOpParser, encode_connect, encode_pub
from firmware_bridge.nmea import KNOT_MS, nmea_checksum

__all__ = ["ACTIONS", "LINES_COMMAND_TEMPLATE", "LINES_PATTERN", "UNITS", "SimCodec", "Simulator"]

SimCodec = Literal["nats", "frames", "jsonl", "nmea", "lines"]
UNITS: Final = {"temperature": "°C", "humidity": "%", "pressure": "hPa", "battery": "%"}
LINES_PATTERN: Final = r"^T=(?P<temperature>\S+) H=(?P<humidity>\S+) P=(?P<pressure>\S+) B=(?P<battery>\S+)$"
_CODECS: Final = ("nats", "frames", "jsonl", "nmea", "lines")
ACTIONS: Final = ("relay", "toggle", "read")
LINES_COMMAND_TEMPLATE: Final = "RELAY {on}"
_M_PER_DEG_LAT: Final = 111_320.0  # mean metres per degree of latitude (WGS-84, rounded)
_BATTERY_PER_S: Final = 100 / (55 * 3600)


class Simulator:
    """One simulated serial device.

    Args:
        codec: the wire format to render.
        device: device id (in subjects, the jsonl ``id`` field and the CONNECT name).
        seed: random seed; equal seeds and ``now`` sequences give equal bytes.
        subject_prefix: subject prefix for ``nats``/``frames``; default ``sensors.<device>``.
        start: starting (lat, lon) of the GPS track, decimal degrees.

    Raises:
        ValueError: unknown codec, or a device/prefix that is not a valid subject.
    """

    def __init__(
        self,
        codec: SimCodec,
        device: str = "sim1",
        seed: int | None = None,
        subject_prefix: str | None = None,
        start: tuple[float, float] = (52.5200, 13.4050),
    ) -> None:
        if codec not in _CODECS:
            raise ValueError(f"codec: unknown simulator codec {codec!r}; expected one of {', '.join(_CODECS)}")
        if not device or any(c in device for c in " \t\r\n.*>"):
            raise ValueError(f"device: not a valid subject token: {device!r}")
        self.codec: Final = codec
        self.device: Final = device
        self.subject_prefix: Final = subject_prefix or f"sensors.{device}"
        self._rng = random.Random(seed)
        self._last: float | None = None
        self._started = False
        self._drift = 0.0
        self._hum_drift = 0.0
        self._pressure = 1013.25
        self._battery = 100.0
        self._lat, self._lon = start
        self._heading = self._rng.uniform(0, 360)
        self._speed_ms = 1.4
        self._parser = ServerOpParser(max_payload=64 * 1024)
        self._frames_in = FrameDecoder()
        self._lines_in = LineBuffer()
        self.relay = False
        self.latest: dict[str, float] = {}
        self.commands: list[tuple[str, dict[str, object]]] = []

    def codec_options(self) -> dict[str, object]:
        """Options for ``firmware_bridge.codecs.get_codec(self.codec, ...)`` that decode this output."""
        if self.codec == "frames":
            return {}
        if self.codec == "jsonl":
            return {"device_field": "id", "ts_field": "ts", "units": dict(UNITS)}
        if self.codec == "lines":
            return {"pattern": LINES_PATTERN, "units": dict(UNITS)}
        return {}

    def config_block(self, port: str) -> str:
        """The ``[[adapters.serial]]`` TOML table (newline-terminated) that reads this device on ``port``."""
        lines = [
            "[[adapters.serial]]",
            f"port = {_toml(port)}",
            f"device = {_toml(self.device)}",
            f"codec = {_toml(self.codec)}",
        ]
        opts = self.codec_options()
        if opts:
            lines.append(f"codec_options = {_toml(opts)}")
        if self.codec == "lines":  # (a jsonl port takes every action without configuration)
            lines += ['actions = ["relay"]', f"command_template = {_toml(LINES_COMMAND_TEMPLATE)}"]
        return "\n".join(lines) + "\n"

    def hello(self) -> bytes:
        """The bytes a device sends on start: CONNECT for ``nats``/``frames``, else nothing."""
        if self.codec not in ("nats", "frames"):
            return b""
        return self._op(encode_connect(self.device, lang="sim"))

    def receive(self, data: bytes) -> bytes:
        """Consume bytes from the gateway; return the reply to write: PONG per PING (nats/frames), a reply
        line per command (jsonl), else b""."""
        if self.codec in ("jsonl", "lines"):
            return b"".join(self._command_line(line) for line in self._lines_in.feed(data))
        if self.codec == "nmea":
            return b""
        if self.codec == "frames":
            data = b"".join(self._frames_in.feed(data))
        return b"".join(self._op(PONG) for op in self._parser.feed(data) if isinstance(op, Ping))

    def _command_line(self, line: bytes) -> bytes:
        if self.codec == "lines":
            text = line.decode("utf-8", "replace").split()
            if len(text) == 2 and text[0] == "RELAY" and text[1] in ("0", "1"):
                self.relay = text[1] == "1"
                self.commands.append(("relay", {"on": self.relay}))
            return b""
        try:
            parsed = parse_command(json.loads(line))
        except ValueError:
            return b""
        if parsed is None:
            return b""
        action, args, cid = parsed
        self.commands.append((action, args))
        if action == "relay":
            on = args.get("on")
            if not isinstance(on, bool):
                return encode_reply(cid, False, error="'on' must be true or false", code="bad_arguments")
            self.relay = on
            return encode_reply(cid, True, {"relay": self.relay})
        if action == "toggle":
            self.relay = not self.relay
            return encode_reply(cid, True, {"relay": self.relay})
        if action == "read":
            return encode_reply(cid, True, dict(self.latest))
        return encode_reply(cid, False, error=f"unknown action {action!r}", code="unsupported")

    def sample(self, now: float) -> dict[str, float]:
        """Advance the models to ``now`` and return the channel values (rounded like a sensor)."""
        dt = 0.0 if self._last is None else max(0.0, now - self._last)
        self._last = now
        rng = self._rng
        # Mean-reverting drifts (Ornstein-Uhlenbeck, Euler step): theta pulls back, sigma*sqrt(dt) kicks.
        k = math.sqrt(dt)
        self._drift += -self._drift * min(1.0, dt / 3600) + rng.gauss(0, 0.02) * k
        self._hum_drift += -self._hum_drift * min(1.0, dt / 3600) + rng.gauss(0, 0.05) * k
        self._pressure += (1013.25 - self._pressure) * min(1.0, dt / 7200) + rng.gauss(0, 0.01) * k
        self._battery = max(0.0, self._battery - _BATTERY_PER_S * dt)
        day = 3.0 * math.sin(2 * math.pi * ((now % 86400) - 6 * 3600) / 86400)  # coolest at 06:00 UTC
        temp = 21.0 + day + self._drift + rng.gauss(0, 0.05)
        hum = min(100.0, max(0.0, 45.0 - 1.5 * (temp - 21.0) + self._hum_drift + rng.gauss(0, 0.2)))
        self._advance_gps(dt)
        self.latest = {
            "temperature": round(temp, 2),
            "humidity": round(hum, 1),
            "pressure": round(self._pressure + rng.gauss(0, 0.02), 2),
            "battery": round(self._battery, 1),
        }
        return dict(self.latest)

    def next_chunk(self, now: float) -> bytes:
        """Advance to ``now`` and return one sample rendered for the codec (CONNECT first, once)."""
        values = self.sample(now)
        prefix = b""
        if not self._started:
            self._started = True
            prefix = self.hello()
        if self.codec in ("nats", "frames"):
            ops = []
            for ch, v in values.items():
                obj = {"value": v, "unit": UNITS[ch], "ts": round(now, 3)}
                body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
                ops.append(self._op(encode_pub(f"{self.subject_prefix}.{ch}", body.encode())))
            return prefix + b"".join(ops)
        if self.codec == "jsonl":
            obj = {"id": self.device, "ts": round(now, 3), **values}
            return json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        if self.codec == "lines":
            v = values
            text = f"T={v['temperature']} H={v['humidity']} P={v['pressure']} B={v['battery']}"
            return text.encode() + b"\r\n"
        return self._nmea(now)

    def _op(self, op: bytes) -> bytes:
        return encode_frame(op) if self.codec == "frames" else op

    def _advance_gps(self, dt: float) -> None:
        self._heading = (self._heading + self._rng.gauss(0, 5) * math.sqrt(dt)) % 360
        self._speed_ms = min(3.0, max(0.5, self._speed_ms + self._rng.gauss(0, 0.05) * math.sqrt(dt)))
        dist = self._speed_ms * dt
        rad = math.radians(self._heading)
        self._lat = max(-89.9, min(89.9, self._lat + dist * math.cos(rad) / _M_PER_DEG_LAT))
        lon_scale = _M_PER_DEG_LAT * math.cos(math.radians(self._lat))
        self._lon = (self._lon + dist * math.sin(rad) / lon_scale + 180) % 360 - 180

    def _nmea(self, now: float) -> bytes:
        t = datetime.fromtimestamp(now, tz=UTC)
        hms = f"{t:%H%M%S}.{t.microsecond // 10000:02d}"
        lat = _ddmm(self._lat, 2) + ("N" if self._lat >= 0 else "S")
        lon = _ddmm(self._lon, 3) + ("E" if self._lon >= 0 else "W")
        sats = 7 + self._rng.randrange(6)
        alt = 34.0 + self._rng.gauss(0, 0.5)
        knots = self._speed_ms / KNOT_MS
        gga = f"GPGGA,{hms},{lat},{lon},1,{sats:02d},0.9,{alt:.1f},M,47.0,M,,"
        rmc = f"GPRMC,{hms},A,{lat},{lon},{knots:.2f},{self._heading:.1f},{t:%d%m%y},,,A"
        return b"".join(_sentence(s) for s in (gga, rmc))


def _toml(value: object) -> str:
    """A TOML value: strings (JSON's escapes are TOML's, non-ASCII kept), numbers, booleans, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _toml_key(key: str) -> str:
    return key if key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key) else _toml(key)


def _ddmm(value: float, deg_digits: int) -> str:
    """Decimal degrees -> NMEA ``ddmm.mmmm,`` / ``dddmm.mmmm,`` (absolute value; hemisphere appended)."""
    a = abs(value)
    deg = int(a)
    minutes = round((a - deg) * 60, 4)
    if minutes >= 60:  # rounding carried into the next degree
        deg, minutes = deg + 1, 0.0
    return f"{deg:0{deg_digits}d}{minutes:07.4f},"


def _sentence(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"$" + raw + b"*" + f"{nmea_checksum(raw):02X}".encode() + b"\r\n"
