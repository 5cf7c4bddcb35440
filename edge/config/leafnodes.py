"""Schema of the ``[leafnodes]`` table: the hubs this gateway joins as a soliciting leaf node.

In the style of nats-server's ``leafnodes { remotes = [...] }`` (docs/nats-protocol.md section 3)::

    [leafnodes]
    reconnect = "1s"              # wait before a retry (nats-server DEFAULT_LEAF_NODE_RECONNECT)
    [[leafnodes.remotes]]
    urls = ["nats-leaf://hub1:7422", "tls://hub2:7422"]   # or url = "..."
    user = "leafu"                # or token = "...", nkey = "/path/seed.nk", credentials = "/path/x.creds"
    password = "leafp"
    deny_imports = ["secret.>"]   # never advertise interest in these (hub -> gateway traffic)
    deny_exports = ["local.>"]    # never forward these upstream (gateway -> hub traffic)
    no_randomize = false
    tls = { ca_file = "ca.pem", cert_file = "c.pem", key_file = "k.pem", verify = true }

Timer keys (``reconnect``, ``reconnect_jitter``, ``error_delay``, ``first_info_timeout``,
``connect_info_timeout``, ``dial_timeout``, ``ping_interval``, ``ping_max``) may be set on the section
(defaults for every remote) or per remote. Credentials may also be given in the URL's userinfo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section
from edge.config.store_forward import validate_subscribe_subject

__all__ = ["LeafRemote", "LeafTLS", "LeafURL", "LeafnodesSettings", "parse_leaf_url", "parse_leafnodes"]

# nats-server leafnode.go / const.go defaults (docs 3.9).
DEFAULT_RECONNECT: Final = 1.0  # DEFAULT_LEAF_NODE_RECONNECT
DEFAULT_RECONNECT_JITTER: Final = 1.0  # rand[0, 1 s) added per failed dial
DEFAULT_ERROR_DELAY: Final = 30.0  # loop detected / permission violation / same cluster name
DEFAULT_MIN_VERSION_DELAY: Final = 5.0  # min-version rejection
DEFAULT_FIRST_INFO_TIMEOUT: Final = 1.0  # DEFAULT_LEAFNODE_INFO_WAIT
DEFAULT_CONNECT_INFO_TIMEOUT: Final = 2.0  # "Stale Leaf Node Connection - Closing" after 2 s
DEFAULT_DIAL_TIMEOUT: Final = 1.0  # DEFAULT_ROUTE_DIAL
DEFAULT_PING_INTERVAL: Final = 120.0  # DEFAULT_PING_INTERVAL
DEFAULT_PING_MAX: Final = 2  # DEFAULT_PING_MAX_OUT
DEFAULT_OUTBOUND_LIMIT: Final = 32 * 1024 * 1024  # bytes queued for a slow hub before messages are dropped

SCHEMES: Final = ("nats-leaf", "nats", "tls", "leafnode")
_TIMERS: Final = (
    "reconnect", "reconnect_jitter", "error_delay", "first_info_timeout", "connect_info_timeout", "dial_timeout",
    "ping_interval",
)
_REMOTE_KEYS: Final = frozenset({
    "url", "urls", "user", "password", "token", "nkey", "credentials", "tls", "deny_imports", "deny_exports",
    "no_randomize", "ignore_discovered_servers", "ping_max", "outbound_limit", "account", *_TIMERS,
})
_SECTION_KEYS: Final = frozenset({"remotes", "ping_max", "outbound_limit", *_TIMERS})
_TLS_KEYS: Final = frozenset({"ca_file", "cert_file", "key_file", "verify", "insecure", "handshake_first", "timeout"})


@dataclass(frozen=True, slots=True)
class LeafURL:
    """One hub endpoint: ``scheme://[user[:pass]@]host:port``."""

    scheme: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None

    @property
    def tls(self) -> bool:
        return self.scheme == "tls"

    def __str__(self) -> str:  # never shows credentials
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LeafTLS:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    handshake_first: bool = False
    timeout: float = 2.0


@dataclass(frozen=True, slots=True)
class LeafRemote:
    urls: tuple[LeafURL, ...]
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey: str | None = None  # path of a file holding an nkey seed (SU...)
    credentials: str | None = None  # path of a .creds file (user JWT + seed)
    tls: LeafTLS | None = None
    deny_imports: tuple[str, ...] = ()
    deny_exports: tuple[str, ...] = ()
    no_randomize: bool = False
    ignore_discovered_servers: bool = False
    reconnect: float = DEFAULT_RECONNECT
    reconnect_jitter: float = DEFAULT_RECONNECT_JITTER
    error_delay: float = DEFAULT_ERROR_DELAY
    first_info_timeout: float = DEFAULT_FIRST_INFO_TIMEOUT
    connect_info_timeout: float = DEFAULT_CONNECT_INFO_TIMEOUT
    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    ping_interval: float = DEFAULT_PING_INTERVAL
    ping_max: int = DEFAULT_PING_MAX
    outbound_limit: int = DEFAULT_OUTBOUND_LIMIT


@dataclass(frozen=True, slots=True)
class LeafnodesSettings:
    remotes: tuple[LeafRemote, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.remotes)


def parse_leaf_url(text: Any) -> LeafURL:
    """``nats-leaf://[user[:pass]@]host:port`` (also ``nats://``, ``tls://``; port defaults to 7422)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"expected a URL string, got {text!r}")
    # Imported here: urllib.parse (with ipaddress) costs ~0.6 MB resident, and only a leaf config needs it.
    from urllib.parse import unquote, urlsplit

    if "://" not in text:
        text = "nats-leaf://" + text
    try:
        parts = urlsplit(text)
        port = parts.port or 7422  # DEFAULT_LEAFNODE_PORT
    except ValueError as exc:
        raise ValueError(f"bad URL {text!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(f"URL {text!r}: scheme must be one of {', '.join(SCHEMES)}")
    if not parts.hostname:
        raise ValueError(f"URL {text!r} has no host")
    if parts.path not in ("", "/"):
        raise ValueError(f"URL {text!r}: unexpected path {parts.path!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    scheme = "tls" if parts.scheme == "tls" else "nats-leaf"
    return LeafURL(scheme, parts.hostname, port, user, password)


def _read_subjects(value: Any) -> tuple[str, ...]:
    subjects = v.read_str_list(value)
    for s in subjects:
        validate_subscribe_subject(s)
    return tuple(subjects)


def _read_tls(raw: Any, rep: KeyReporter) -> LeafTLS:
    table = rep.require_table(raw, "tls")
    crep = rep.child("tls")
    crep.reject_unknown(table, _TLS_KEYS)
    kw: dict[str, Any] = {}
    for key in ("ca_file", "cert_file", "key_file"):
        if key in table:
            kw[key] = crep.read(table, key, v.read_str)
    if "verify" in table:
        kw["verify"] = crep.read(table, "verify", v.read_bool)
    if "insecure" in table and crep.read(table, "insecure", v.read_bool):
        kw["verify"] = False
    if "handshake_first" in table:
        kw["handshake_first"] = crep.read(table, "handshake_first", v.read_bool)
    if "timeout" in table:
        kw["timeout"] = crep.read(table, "timeout", v.read_duration, minimum=0.001)
    if ("cert_file" in kw) != ("key_file" in kw):
        raise crep.error("cert_file", "cert_file and key_file must be given together")
    return LeafTLS(**kw)


def _read_timers(table: dict[str, Any], rep: KeyReporter, kw: dict[str, Any]) -> None:
    for key in _TIMERS:
        if key in table:
            kw[key] = rep.read(table, key, v.read_duration, minimum=0.0 if key in ("reconnect_jitter",) else 0.001)
    if "ping_max" in table:
        kw["ping_max"] = rep.read(table, "ping_max", v.read_int, minimum=1)
    if "outbound_limit" in table:
        kw["outbound_limit"] = rep.read(table, "outbound_limit", v.read_size, minimum=64 * 1024)


def _parse_remote(raw: Any, rep: KeyReporter, defaults: dict[str, Any]) -> LeafRemote:
    if not isinstance(raw, dict):
        raise rep.error("", f"expected a table, got {raw!r}")
    rep.reject_unknown(raw, _REMOTE_KEYS)
    kw: dict[str, Any] = dict(defaults)
    if "url" in raw and "urls" in raw:
        raise rep.error("url", "give either url or urls, not both")
    key = "urls" if "urls" in raw else "url"
    if key not in raw:
        raise rep.error("urls", "a remote needs at least one URL")
    texts = rep.read(raw, key, v.read_str_list)
    urls: list[LeafURL] = []
    for text in texts:
        try:
            urls.append(parse_leaf_url(text))
        except ValueError as exc:
            raise rep.error(key, str(exc)) from None
    if not urls:
        raise rep.error(key, "a remote needs at least one URL")
    kw["urls"] = tuple(urls)
    for k in ("user", "password", "token", "nkey", "credentials"):
        if k in raw:
            kw[k] = rep.read(raw, k, v.read_str)
    if "account" in raw and rep.read(raw, "account", v.read_str) != "$G":
        raise rep.error("account", "only the global account ($G) exists on nats-edge")
    auth_kinds = [k for k in ("user", "token", "nkey", "credentials") if kw.get(k)]
    if len(auth_kinds) > 1:
        raise rep.error(auth_kinds[1], f"conflicts with {auth_kinds[0]}: give one kind of credentials")
    if kw.get("password") and not kw.get("user"):
        raise rep.error("password", "password needs user")
    if "tls" in raw:
        kw["tls"] = _read_tls(raw["tls"], rep)
    for k in ("deny_imports", "deny_exports"):
        if k in raw:
            kw[k] = rep.read(raw, k, _read_subjects)
    for k in ("no_randomize", "ignore_discovered_servers"):
        if k in raw:
            kw[k] = rep.read(raw, k, v.read_bool)
    _read_timers(raw, rep, kw)
    return LeafRemote(**kw)


def parse_leafnodes(raw: Any, rep: KeyReporter) -> LeafnodesSettings:
    """Parse and validate the table; errors name the file and the key (``leafnodes.remotes[0].urls``)."""
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _SECTION_KEYS)
    defaults: dict[str, Any] = {}
    _read_timers(table, rep, defaults)
    remotes_raw = table.get("remotes", [])
    if isinstance(remotes_raw, dict):
        remotes_raw = [remotes_raw]
    if not isinstance(remotes_raw, list):
        raise rep.error("remotes", f"expected a list of tables, got {remotes_raw!r}")
    remotes = tuple(
        _parse_remote(r, rep.child(f"remotes[{i}]"), defaults) for i, r in enumerate(remotes_raw)
    )
    return LeafnodesSettings(remotes=remotes, raw=table)


register_section("leafnodes", parse_leafnodes)
