"""Schema of the security settings: ``[authorization]`` users and the ``[tls]`` table.

Example::

    [authorization]
    no_auth_user = "sensor"
    users = [
      { user = "admin", password = "$2a$11$..." },                       # bcrypt hash (nats-server: "$2")
      { user = "sensor", password = "s3cret",
        permissions = { publish = { allow = ["dev.>"] }, subscribe = { deny = ["secret.>"] } } },
      { nkey = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4",
        permissions = { subscribe = ["svc.>", "work.* workers"], allow_responses = true } },
    ]

    [tls]
    cert_file = "/etc/nats-edge/server.pem"
    key_file = "/etc/nats-edge/server-key.pem"
    ca_file = "/etc/nats-edge/ca.pem"     # for verify
    verify = true                          # require and verify a client certificate (mTLS)
    timeout = "2s"                         # TLS handshake timeout (nats-server TLS_TIMEOUT)
    handshake_first = false                # TLS before INFO (nats-server tls.handshake_first)

Key names and semantics follow nats-server's config (server/opts.go parseUsers, parseUserPermissions,
parseTLS). ``publish``/``subscribe`` accept a list (= allow) or a table with ``allow`` and ``deny``;
``allow_responses`` accepts true or a table ``{max, expires}`` (nats-server ResponsePermission).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import KeyReporter, register_section

__all__ = [
    "AuthBackoffSettings",
    "PermissionSettings",
    "ResponsePermission",
    "SubjectPermission",
    "TLSSettings",
    "UserSettings",
    "check_users",
    "parse_tls",
    "parse_users",
]

# nats-server server/opts.go: DEFAULT_ALLOW_RESPONSE_MAX_MSGS, DEFAULT_ALLOW_RESPONSE_EXPIRATION.
DEFAULT_RESPONSE_MAX_MSGS: Final = 1
DEFAULT_RESPONSE_EXPIRES: Final = 120.0
# nats-server server/const.go TLS_TIMEOUT.
DEFAULT_TLS_TIMEOUT: Final = 2.0

_USER_KEYS: Final = frozenset({"user", "password", "nkey", "permissions"})
_PERM_KEYS: Final = frozenset({"publish", "subscribe", "allow_responses"})
_SUBJ_PERM_KEYS: Final = frozenset({"allow", "deny"})
_RESP_KEYS: Final = frozenset({"max", "expires", "ttl"})
_TLS_KEYS: Final = frozenset({"cert_file", "key_file", "ca_file", "verify", "timeout", "handshake_first", "map_users"})
_AUTH_BACKOFF_KEYS: Final = frozenset({"threshold", "base", "max", "entries"})


@dataclass(frozen=True, slots=True)
class SubjectPermission:
    """Allow and deny lists; ``allow is None`` means everything not denied is allowed."""

    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ResponsePermission:
    """``allow_responses``: publish up to ``max_msgs`` replies to each reply subject received, within ``expires``."""

    max_msgs: int = DEFAULT_RESPONSE_MAX_MSGS
    expires: float = DEFAULT_RESPONSE_EXPIRES


@dataclass(frozen=True, slots=True)
class PermissionSettings:
    publish: SubjectPermission | None = None
    subscribe: SubjectPermission | None = None
    allow_responses: ResponsePermission | None = None


@dataclass(frozen=True, slots=True)
class UserSettings:
    """One entry of ``authorization.users``: a user with a password (plain or bcrypt) or an nkey."""

    user: str | None = None
    password: str | None = None
    nkey: str | None = None
    permissions: PermissionSettings | None = None

    @property
    def name(self) -> str:
        return self.user if self.user is not None else (self.nkey or "")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    cert_file: str
    key_file: str
    ca_file: str | None = None
    verify: bool = False
    timeout: float = DEFAULT_TLS_TIMEOUT
    handshake_first: bool = False
    # Map a verified client certificate's subject (CN, or the whole RFC 4514 DN) to a user (nats-server
    # tls.verify_and_map).
    map_users: bool = False
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _subject_list(value: Any) -> tuple[str, ...]:
    items = v.read_str_list(value)
    for item in items:
        subject = item.split(" ", 1)[0]
        if not _valid_permission_subject(subject):
            raise ValueError(f"invalid subject {item!r}")
    return tuple(items)


def _valid_permission_subject(subject: str) -> bool:
    tokens = subject.split(".")
    for i, tok in enumerate(tokens):
        if not tok or any(c in tok for c in " \t\r\n"):
            return False
        if ">" in tok and (tok != ">" or i != len(tokens) - 1):
            return False
        if "*" in tok and tok != "*":
            return False
    return True


def _parse_subject_permission(value: Any, rep: KeyReporter, name: str) -> SubjectPermission:
    if isinstance(value, dict):
        child = rep.child(name)
        child.reject_unknown(value, _SUBJ_PERM_KEYS)
        allow = child.read(value, "allow", _subject_list) if "allow" in value else None
        deny = child.read(value, "deny", _subject_list) if "deny" in value else ()
        return SubjectPermission(allow, deny)
    # A bare list (or string) is the allow list, as nats-server reads it.
    return SubjectPermission(rep.read({name: value}, name, _subject_list), ())


def _parse_permissions(value: Any, rep: KeyReporter) -> PermissionSettings:
    table = rep.require_table(value, "permissions")
    prep = rep.child("permissions")
    prep.reject_unknown(table, _PERM_KEYS)
    pub = _parse_subject_permission(table["publish"], prep, "publish") if "publish" in table else None
    sub = _parse_subject_permission(table["subscribe"], prep, "subscribe") if "subscribe" in table else None
    resp = None
    if "allow_responses" in table:
        raw = table["allow_responses"]
        if isinstance(raw, dict):
            rrep = prep.child("allow_responses")
            rrep.reject_unknown(raw, _RESP_KEYS)
            max_msgs = rrep.read(raw, "max", v.read_int, minimum=1) if "max" in raw else DEFAULT_RESPONSE_MAX_MSGS
            exp_key = "expires" if "expires" in raw else "ttl"
            expires = (
                rrep.read(raw, exp_key, v.read_duration, minimum=0.001) if exp_key in raw else DEFAULT_RESPONSE_EXPIRES
            )
            resp = ResponsePermission(max_msgs, expires)
        elif prep.read(table, "allow_responses", v.read_bool):
            resp = ResponsePermission()
    return PermissionSettings(pub, sub, resp)


def parse_users(value: Any, rep: KeyReporter) -> list[UserSettings]:
    """``authorization.users``: a list of tables; errors name ``authorization.users[i].key``."""
    if not isinstance(value, list):
        raise rep.error("users", f"expected a list of tables, got {value!r}")
    users: list[UserSettings] = []
    for i, entry in enumerate(value):
        urep = rep.child(f"users[{i}]")
        if not isinstance(entry, dict):
            raise rep.error(f"users[{i}]", f"expected a table, got {entry!r}")
        urep.reject_unknown(entry, _USER_KEYS)
        user = urep.read(entry, "user", v.read_str) if "user" in entry else None
        password = urep.read(entry, "password", v.read_str, allow_empty=True) if "password" in entry else None
        nkey = urep.read(entry, "nkey", v.read_str) if "nkey" in entry else None
        if nkey is not None:
            if not (nkey.startswith("U") and len(nkey) == 56 and nkey.isalnum() and nkey.isupper()):
                raise urep.error("nkey", f"not a user public nkey (56 characters starting with U): {nkey!r}")
            if password is not None:
                raise urep.error("password", "an nkey user has no password")
        elif user is None:
            raise urep.error("user", "each user needs a user name or an nkey")
        # A user without a password can only log in through a mapped client certificate (tls.map_users).
        perms = _parse_permissions(entry["permissions"], urep) if "permissions" in entry else None
        users.append(UserSettings(user, password, nkey, perms))
    return users


def check_users(auth: Any, rep: KeyReporter) -> None:
    """Cross-key rules of nats-server's validateOptions/configureAuthorization."""
    users = auth.users
    if not users:
        if auth.no_auth_user is not None:
            raise rep.error("authorization.no_auth_user", "needs authorization.users")
        return
    if auth.token is not None:
        raise rep.error("authorization.token", "cannot have a token and a users array")
    if auth.user is not None:
        raise rep.error("authorization.user", "cannot have a single user/password and a users array")
    seen: set[str] = set()
    for i, u in enumerate(users):
        if u.name in seen:
            raise rep.error(f"authorization.users[{i}]", f"duplicate user {u.name!r}")
        seen.add(u.name)
    if auth.no_auth_user is not None and auth.no_auth_user not in {u.user for u in users if u.user}:
        raise rep.error("authorization.no_auth_user", f"{auth.no_auth_user!r} is not in authorization.users")


def parse_tls(raw: Any, rep: KeyReporter) -> TLSSettings:
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _TLS_KEYS)
    for key in ("cert_file", "key_file"):
        if key not in table:
            raise rep.error(key, "required when TLS is configured")
    kw: dict[str, Any] = {
        "cert_file": rep.read(table, "cert_file", v.read_str),
        "key_file": rep.read(table, "key_file", v.read_str),
    }
    if "ca_file" in table:
        kw["ca_file"] = rep.read(table, "ca_file", v.read_str)
    for key in ("verify", "handshake_first", "map_users"):
        if key in table:
            kw[key] = rep.read(table, key, v.read_bool)
    if "timeout" in table:
        kw["timeout"] = rep.read(table, "timeout", v.read_duration, minimum=0.01, maximum=600.0)
    if kw.get("map_users"):
        kw["verify"] = True  # verify_and_map implies verify
    if kw.get("verify") and "ca_file" not in kw:
        raise rep.error("ca_file", "required to verify client certificates (verify = true)")
    return TLSSettings(**kw, raw=table)


@dataclass(frozen=True, slots=True)
class AuthBackoffSettings:
    """``[auth_backoff]``: refuse an address for ``base`` seconds (doubling up to ``max``) once it has
    failed authentication ``threshold`` times in a row; ``threshold = 0`` turns it off. ``entries`` bounds
    the number of addresses remembered (the least recently failing is forgotten first, counted)."""

    threshold: int = 5
    base: float = 1.0
    max: float = 60.0
    entries: int = 4096
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def parse_auth_backoff(raw: Any, rep: KeyReporter) -> AuthBackoffSettings:
    table: dict[str, Any] = dict(raw)
    rep.reject_unknown(table, _AUTH_BACKOFF_KEYS)
    kw: dict[str, Any] = {}
    if "threshold" in table:
        kw["threshold"] = rep.read(table, "threshold", v.read_int, minimum=0)
    if "base" in table:
        kw["base"] = rep.read(table, "base", v.read_duration, minimum=0.001)
    if "max" in table:
        kw["max"] = rep.read(table, "max", v.read_duration, minimum=0.001)
    if "entries" in table:
        kw["entries"] = rep.read(table, "entries", v.read_int, minimum=1)
    return AuthBackoffSettings(**kw, raw=table)


register_section("tls", parse_tls)
register_section("auth_backoff", parse_auth_backoff)
