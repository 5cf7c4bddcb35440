"""The broker's settings: typed, validated, with nats-server's defaults.

Defaults cite nats-server's ``server/const.go`` (v2.15); see docs/nats-protocol.md section 4.1.
Sections that belong to later features (``leafnodes``, ``store_forward``, ``adapters``) have their
own schema modules beside this one and are registered in :data:`edge.config.sections.SECTIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

# nats-server server/const.go
DEFAULT_PORT: Final = 4222
DEFAULT_HOST: Final = "127.0.0.1"  # nats-server binds 0.0.0.0; a gateway broker is local-first.
MAX_PAYLOAD: Final = 1024 * 1024  # MAX_PAYLOAD_SIZE
MAX_CONTROL_LINE: Final = 4096  # MAX_CONTROL_LINE_SIZE
MAX_PENDING: Final = 64 * 1024 * 1024  # MAX_PENDING_SIZE
MAX_CONNECTIONS: Final = 64 * 1024  # DEFAULT_MAX_CONNECTIONS
MAX_CLOSED_CLIENTS: Final = 10_000  # DEFAULT_MAX_CLOSED_CLIENTS: the /connz?state=closed ring
PING_INTERVAL: Final = 120.0  # DEFAULT_PING_INTERVAL, 2 minutes
PING_MAX: Final = 2  # DEFAULT_PING_MAX_OUT
WRITE_DEADLINE: Final = 10.0  # DEFAULT_FLUSH_DEADLINE
AUTH_TIMEOUT: Final = 2.0  # AUTH_TIMEOUT
LAME_DUCK_DURATION: Final = 120.0  # DEFAULT_LAME_DUCK_DURATION
LAME_DUCK_GRACE_PERIOD: Final = 10.0  # DEFAULT_LAME_DUCK_GRACE_PERIOD
MAX_PAYLOAD_LIMIT: Final = 64 * 1024 * 1024  # nats-server refuses max_payload above 64 MB


def is_bcrypt(secret: str | None) -> bool:
    """nats-server auth.go isBcrypt: a password or token starting ``$2`` (``$2a$``, ``$2b$``, ...) is a hash."""
    return secret is not None and secret.startswith("$2")


@dataclass(slots=True)
class AuthorizationSettings:
    """Single-user or token authentication, as nats-server's ``--user/--pass`` and ``--auth`` give."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    timeout: float = AUTH_TIMEOUT
    # Multiple users (edge.config.security.UserSettings) and the user of clients without credentials.
    users: list[Any] = field(default_factory=list)
    no_auth_user: str | None = None

    @property
    def required(self) -> bool:
        return self.user is not None or self.token is not None or bool(self.users)


@dataclass(slots=True)
class Settings:
    """Everything the broker needs to start. Built by :func:`edge.config.loader.load_settings`."""

    server_name: str = ""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0 = monitoring off (nats-server's default too)
    max_payload: int = MAX_PAYLOAD
    max_control_line: int = MAX_CONTROL_LINE
    max_pending: int = MAX_PENDING
    max_connections: int = MAX_CONNECTIONS
    max_subscriptions: int = 0  # 0 = unlimited
    max_closed_clients: int = MAX_CLOSED_CLIENTS  # 0 = keep none
    ping_interval: float = PING_INTERVAL
    ping_max: int = PING_MAX
    write_deadline: float = WRITE_DEADLINE
    lame_duck_duration: float = LAME_DUCK_DURATION
    lame_duck_grace_period: float = LAME_DUCK_GRACE_PERIOD
    debug: bool = False
    trace: bool = False
    logtime: bool = True
    log_file: str | None = None
    ports_file_dir: str | None = None
    state_dir: str | None = None
    authorization: AuthorizationSettings = field(default_factory=AuthorizationSettings)
    # The sources the settings came from, for log lines and check-config output.
    sources: list[str] = field(default_factory=list)
    profile: str | None = None
    # Feature sections parsed by their own schema modules, keyed by section name.
    sections: dict[str, Any] = field(default_factory=dict)
