"""Schema of the ``[mqtt]`` table: the MQTT 3.1.1 listener (edge.mqtt).

Example::

    [mqtt]
    port = 1883                # or listen = "0.0.0.0:1883"; host defaults to the client host
    no_auth_user = "devices"   # MQTT clients that send no user name log in as this user
    ack_wait = "30s"           # an unacknowledged QoS 1/2 delivery is sent again (DUP) after this
    max_ack_pending = 1024     # QoS 1/2 deliveries in flight per session; more wait in the session
    dir = "/var/lib/nats-edge/mqtt"   # sessions and retained messages ("<state dir>/mqtt" by default)
    max_sessions = 10000       # persistent sessions kept on disk; a new one beyond is refused (CONNACK 3)
    max_session_msgs = 10000   # messages queued per session; beyond: the oldest is dropped (counted)
    max_retained = 10000       # retained topics; beyond: a new retained topic is not kept (counted)
    max_store_bytes = "64MB"   # live bytes of sessions + retained messages on disk; beyond: drops (counted)
    fsync_interval = "1s"      # the state journal is fsynced this long after a write at most (SD wear)

    [mqtt.tls]                 # as the top-level [tls] table
    cert_file = "server.pem"
    key_file = "server-key.pem"

Key names are nats-server's ``mqtt {}`` block's where the concept is the same (``host``, ``port``,
``listen``, ``tls``, ``no_auth_user``, ``ack_wait``, ``max_ack_pending``). The section is enabled when
it has a port (``port = -1`` picks a random one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = ["MQTTSettings", "parse_mqtt"]

DEFAULT_ACK_WAIT: Final = 30.0  # nats-server mqttDefaultAckWait
DEFAULT_MAX_ACK_PENDING: Final = 1024  # nats-server mqttDefaultMaxAckPending
MAX_ACK_PENDING_LIMIT: Final = 0xFFFF  # packet ids are 16 bits (nats-server mqttMaxAckTotalLimit)

_KNOWN: Final = frozenset({
    "host", "port", "listen", "tls", "no_auth_user", "ack_wait", "max_ack_pending", "dir", "max_sessions",
    "max_session_msgs", "max_retained", "max_store_bytes", "fsync_interval",
})


@dataclass(frozen=True, slots=True)
class MQTTSettings:
    host: str | None = None  # None = the broker's client host
    port: int | None = None  # None = not enabled; -1 = random
    tls: Any = None  # edge.config.security.TLSSettings
    no_auth_user: str | None = None
    ack_wait: float = DEFAULT_ACK_WAIT
    max_ack_pending: int = DEFAULT_MAX_ACK_PENDING
    dir: str | None = None
    max_sessions: int = 10_000
    max_session_msgs: int = 10_000
    max_retained: int = 10_000
    max_store_bytes: int = 64 * 1024 * 1024
    fsync_interval: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.port is not None


def parse_mqtt(raw: Any, rep: KeyReporter) -> MQTTSettings:
    """Parse and validate the table; errors name the file and the key."""
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _KNOWN)
    kw: dict[str, Any] = {}
    if "listen" in table:
        value = table["listen"]
        if not isinstance(value, str) or ":" not in value:
            raise rep.error("listen", f'expected "host:port", got {value!r}')
        host, _, port_text = value.rpartition(":")
        try:
            kw["port"] = v.read_port(int(port_text))
        except ValueError:
            raise rep.error("listen", f'expected "host:port" with a numeric port, got {value!r}') from None
        kw["host"] = host.strip("[]") or "0.0.0.0"
    if "host" in table:
        kw["host"] = rep.read(table, "host", v.read_str)
    if "port" in table:
        kw["port"] = rep.read(table, "port", v.read_port)
    if "tls" in table:
        from edge.config.security import parse_tls

        kw["tls"] = parse_tls(rep.require_table(table["tls"], "tls"), rep.child("tls"))
    readers: dict[str, tuple[Any, dict[str, Any]]] = {
        "no_auth_user": (v.read_str, {}),
        "ack_wait": (v.read_duration, {"minimum": 0.01}),
        "max_ack_pending": (v.read_int, {"minimum": 1, "maximum": MAX_ACK_PENDING_LIMIT}),
        "dir": (v.read_str, {}),
        "max_sessions": (v.read_int, {"minimum": 1}),
        "max_session_msgs": (v.read_int, {"minimum": 1}),
        "max_retained": (v.read_int, {"minimum": 0}),
        "max_store_bytes": (v.read_size, {"minimum": 64 * 1024}),
        "fsync_interval": (v.read_duration, {"minimum": 0.0, "maximum": 60.0}),
    }
    for key, (reader, kwargs) in readers.items():
        if key in table:
            kw[key] = rep.read(table, key, reader, **kwargs)
    return MQTTSettings(**kw, raw=table)


def check_mqtt_users(settings: MQTTSettings, auth: Any, rep: KeyReporter) -> None:
    """``no_auth_user`` must name a user of ``authorization.users`` (as nats-server checks)."""
    name = settings.no_auth_user
    if name is not None and name not in {u.user for u in auth.users if u.user}:
        raise rep.error("mqtt.no_auth_user", f"{name!r} is not in authorization.users")


def _check(section: MQTTSettings, settings: Any, rep: KeyReporter) -> None:
    check_mqtt_users(section, settings.authorization, rep)


register_section("mqtt", parse_mqtt, _check)
