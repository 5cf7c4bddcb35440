"""Keys of one ``[[adapters.serial]]`` table (validated at config load; pyserial is not imported here).

::

    [[adapters.serial]]
    port = "/dev/serial/by-id/usb-Espressif_ESP32-if00"   # required; by-id paths survive re-enumeration
    device = "node7"          # device token in subjects; default: the port's file name, sanitised
    codec = "jsonl"           # nats | frames | jsonl | nmea | lines
    codec_options = { device_field = "id" }   # passed to firmware_bridge.codecs.get_codec
    baudrate = 115200
    bytesize = 8              # 5..8
    parity = "N"              # N E O M S
    stopbits = 1              # 1, 1.5, 2
    rtscts = false
    xonxoff = false
    silence_timeout = "0s"    # no bytes for this long -> devices offline (and the path is re-checked); 0 = off
    reopen_min = "0.5s"       # backoff for reopening a vanished port, doubling ...
    reopen_max = "10s"        # ... up to this
    read_size = 4096          # bytes per read (one read per loop turn per port)
    max_pending_readings = 1024   # decoded readings waiting to be published; beyond: dropped, counted
    publish_batch = 256       # readings published per loop turn
    frame_size = 256          # frames codec: bytes of NATS ops per frame sent to the device
    user = "sensor"           # nats/frames codecs: the port's user from [authorization] (see below)
    actions = ["relay", "led"]          # jsonl/lines: the command actions the device accepts (default: any)
    command_template = "RELAY {on}"     # lines: the line written per command (required for commands)
    command_reply = true      # jsonl: wait for the device's reply line (false: answer once written)
    command_timeout = "5s"    # from request to reply (queue wait included)
    max_pending_commands = 8  # commands queued on the port; beyond: answered busy, counted

Commands (``jsonl``/``lines``/``nmea``; ``nats``/``frames`` devices subscribe to their commands
themselves): a request on ``cmd.<gw>.serial.<device>.<action>`` is written to the port as one line
(:mod:`firmware_bridge.commands`), one command at a time, never while the device is in the middle of
a line; see :mod:`edge.adapters.serial.adapter`.

``user`` (``nats``/``frames`` only) names an entry of ``authorization.users`` (its ``user`` name, or
the public nkey of an nkey user) or the single ``authorization.user``. The port's client connection
is that user from the start, without CONNECT credentials or password: the port is the credential
(whoever can reach the wire can speak for the device, so protect the port, not a password). It gets
exactly that user's permissions (publish/subscribe allow and deny lists, ``allow_responses``),
enforced by the same code as for TCP clients: a denied PUB or SUB gets ``-ERR 'Permissions Violation
for ...'`` down the line (inside a frame for ``frames``) and the connection stays open. Credentials a
device puts in its CONNECT are ignored; they cannot change the port's user. A name that is not
configured is a config error (``adapters.serial[i].user``), as is ``user`` on another codec.

Without ``user`` a ``nats``/``frames`` port authenticates like a TCP client, as it always has: with
no ``[authorization]`` it is unrestricted; with authorization configured, the device's CONNECT must
carry credentials, and a CONNECT without any gets the ``no_auth_user`` (and its permissions) if one is
set, else ``-ERR 'Authorization Violation'``. The C and MicroPython device libraries send no
credentials, so on a broker with authorization such a port needs ``user`` (or a ``no_auth_user``);
the adapter logs a warning at start when it has neither. A physical port is deliberately *not*
unrestricted by default: adding a serial port must not open a hole around the configured users.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from edge.adapters.base import sanitize_token
from edge.config import values as v

if TYPE_CHECKING:
    from edge.config.sections import KeyReporter

__all__ = ["SerialConfig", "parse_serial"]

_KEYS: Final = frozenset({
    "port", "device", "codec", "codec_options", "baudrate", "bytesize", "parity", "stopbits", "rtscts", "xonxoff",
    "silence_timeout", "reopen_min", "reopen_max", "read_size", "max_pending_readings", "publish_batch",
    "frame_size", "user", "actions", "command_template", "command_reply", "command_timeout", "max_pending_commands",
})
PROTOCOL_CODECS: Final = ("nats", "frames")


@dataclass(frozen=True, slots=True)
class SerialConfig:
    port: str
    device: str
    codec: str
    codec_options: dict[str, Any] = field(default_factory=dict)
    baudrate: int = 115200
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1
    rtscts: bool = False
    xonxoff: bool = False
    silence_timeout: float = 0.0
    reopen_min: float = 0.5
    reopen_max: float = 10.0
    read_size: int = 4096
    max_pending_readings: int = 1024
    publish_batch: int = 256
    frame_size: int = 256
    # The port's user (authorization.users), checked against [authorization] once every source is
    # read (edge.adapters.section.check_adapter_users); user_where is (source, key) for that error.
    user: str | None = None
    user_where: tuple[str, str] | None = field(default=None, compare=False, repr=False)
    actions: tuple[str, ...] = ()  # empty: any action (jsonl), any with a template (lines)
    command_template: str | None = None
    command_reply: bool = True
    command_timeout: float = 5.0
    max_pending_commands: int = 8

    @property
    def accepts_commands(self) -> bool:
        """Whether a command can reach the device through this adapter (else: ``unsupported``)."""
        return self.codec == "jsonl" or (self.codec == "lines" and self.command_template is not None)


def _choice(value: Any, *, choices: tuple[Any, ...]) -> Any:
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"expected one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


# Command keys and the codecs they apply to (nats/frames devices take their commands over NATS).
_COMMAND_KEYS: Final = {
    "actions": ("jsonl", "lines"), "command_template": ("lines",), "command_reply": ("jsonl",),
    "command_timeout": ("jsonl", "lines"), "max_pending_commands": ("jsonl", "lines"),
}


def _tokens(value: Any) -> tuple[str, ...]:
    items = v.read_str_list(value)
    for item in items:
        if sanitize_token(item) != item:
            raise ValueError(f"{item!r} is not a valid subject token (no dots, spaces, '*', '>')")
    return tuple(items)


def _template(value: Any) -> str:
    text = v.read_str(value)
    if "\n" in text or "\r" in text:
        raise ValueError("must be one line (the line break is added)")
    return text


def parse_serial(table: dict[str, Any], rep: KeyReporter) -> SerialConfig:
    from firmware_bridge.codecs import CODEC_NAMES, get_codec

    rep.reject_unknown(table, _KEYS)
    if "port" not in table:
        raise rep.error("port", "required: the serial device path, e.g. /dev/serial/by-id/...")
    if "codec" not in table:
        raise rep.error("codec", f"required: one of {', '.join(CODEC_NAMES)}")
    port = rep.read(table, "port", v.read_str)
    codec = rep.read(table, "codec", _choice, choices=CODEC_NAMES)
    options = dict(rep.require_table(table["codec_options"], "codec_options")) if "codec_options" in table else {}
    try:
        get_codec(codec, options)
    except ValueError as exc:
        raise rep.child("codec_options").error(str(exc).split(":", 1)[0], str(exc)) from None
    kw: dict[str, Any] = {"codec_options": options}
    device = rep.read(table, "device", v.read_str) if "device" in table else os.path.basename(port)
    kw["device"] = sanitize_token(device)
    readers: dict[str, tuple[Any, dict[str, Any]]] = {
        "baudrate": (v.read_int, {"minimum": 50, "maximum": 20_000_000}),
        "bytesize": (v.read_int, {"minimum": 5, "maximum": 8}),
        "parity": (_choice, {"choices": ("N", "E", "O", "M", "S")}),
        "stopbits": (_choice, {"choices": (1, 1.5, 2)}),
        "rtscts": (v.read_bool, {}),
        "xonxoff": (v.read_bool, {}),
        "silence_timeout": (v.read_duration, {"minimum": 0.0, "maximum": 86400.0}),
        "reopen_min": (v.read_duration, {"minimum": 0.01, "maximum": 3600.0}),
        "reopen_max": (v.read_duration, {"minimum": 0.01, "maximum": 3600.0}),
        "read_size": (v.read_int, {"minimum": 16, "maximum": 1 << 20}),
        "max_pending_readings": (v.read_int, {"minimum": 1, "maximum": 1 << 20}),
        "publish_batch": (v.read_int, {"minimum": 1, "maximum": 1 << 16}),
        "frame_size": (v.read_int, {"minimum": 64, "maximum": 1 << 16}),
        "command_timeout": (v.read_duration, {"minimum": 0.01, "maximum": 3600.0}),
        "max_pending_commands": (v.read_int, {"minimum": 1, "maximum": 1024}),
    }
    for key, (reader, kwargs) in readers.items():
        if key in table:
            kw[key] = rep.read(table, key, reader, **kwargs)
    if "user" in table:
        if codec not in PROTOCOL_CODECS:
            raise rep.error(
                "user", f"only the nats and frames codecs make the port a client with a user; codec is {codec!r}"
            )
        kw["user"] = rep.read(table, "user", v.read_str)
        kw["user_where"] = (rep.source, rep.key("user"))
    for key, codecs in _COMMAND_KEYS.items():
        if key in table and codec not in codecs:
            raise rep.error(key, f"only for the {' and '.join(codecs)} codec; codec is {codec!r}")
    if "actions" in table:
        kw["actions"] = rep.read(table, "actions", _tokens)
    if "command_template" in table:
        kw["command_template"] = rep.read(table, "command_template", _template)
    if "command_reply" in table:
        kw["command_reply"] = rep.read(table, "command_reply", v.read_bool)
    cfg = SerialConfig(port=port, codec=codec, **kw)
    if cfg.reopen_min > cfg.reopen_max:
        raise rep.error("reopen_min", "must not exceed reopen_max")
    return cfg
