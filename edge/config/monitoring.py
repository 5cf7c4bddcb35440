"""Schema of ``[monitoring]``: who may read the monitoring port (status page and JSON endpoints).

Example::

    http = "0.0.0.0:8222"          # the monitoring port on the LAN (default host: 127.0.0.1)
    [monitoring]
    auth = true                    # HTTP basic auth over the [authorization] users (bcrypt included)
    tls = true                     # serve HTTPS with the [tls] certificate and key
    allow_lan_without_auth = false # must be true to bind a non-loopback address without auth
    history_step = "30s"           # one history point per channel per step (the ring holds 120)

A monitoring port bound to anything but loopback without ``auth = true`` is refused at load unless
``allow_lan_without_auth = true`` (:func:`check_monitoring`), because the page shows device data and
the broker's topology to anyone on the network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = ["MonitoringSettings", "check_monitoring", "is_loopback", "parse_monitoring"]

_KEYS: Final = frozenset({"auth", "tls", "allow_lan_without_auth", "history_step"})
DEFAULT_HISTORY_STEP: Final = 30.0


@dataclass(frozen=True, slots=True)
class MonitoringSettings:
    auth: bool = False
    tls: bool = False
    allow_lan_without_auth: bool = False
    history_step: float = DEFAULT_HISTORY_STEP
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_monitoring(raw: Any, rep: KeyReporter) -> MonitoringSettings:
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _KEYS)
    kw: dict[str, Any] = {}
    for key in ("auth", "tls", "allow_lan_without_auth"):
        if key in table:
            kw[key] = rep.read(table, key, v.read_bool)
    if "history_step" in table:
        kw["history_step"] = rep.read(table, "history_step", v.read_duration, minimum=0.1, maximum=3600.0)
    return MonitoringSettings(**kw, raw=table)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    return host == "localhost" or host.startswith("127.") or host in ("::1", "[::1]")


def check_monitoring(settings: Any, rep: KeyReporter) -> None:
    """Cross-key rules: a LAN bind needs auth (or an explicit opt-out); auth needs password users; TLS a [tls]."""
    mon: MonitoringSettings = settings.sections.get("monitoring") or MonitoringSettings()
    if mon.auth:
        auth = settings.authorization
        if not (auth.user is not None or auth.token is not None or any(u.password is not None for u in auth.users)):
            raise rep.error("monitoring.auth", "needs [authorization] users with passwords (or user/password, token)")
    if mon.tls and settings.sections.get("tls") is None:
        raise rep.error("monitoring.tls", "needs a [tls] section with cert_file and key_file")
    if settings.http_port and not is_loopback(settings.http_host) and not mon.auth and not mon.allow_lan_without_auth:
        raise rep.error(
            "http_host",
            f"the monitoring port is bound to {settings.http_host!r}, reachable from the network, without "
            "authentication: set [monitoring] auth = true (HTTP basic auth over [authorization] users), or "
            "[monitoring] allow_lan_without_auth = true to accept that",
        )


register_section("monitoring", parse_monitoring)
