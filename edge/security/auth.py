"""Client authentication as nats-server offers it (server/auth.go processClientOrLeafAuthentication).

Methods, in nats-server's order of precedence: an nkey user (``nkey`` + ``sig`` over the INFO
``nonce``), a user from ``authorization.users`` (password plain or bcrypt), the single
``user``/``password``, the ``token``, and for a client that sent no credentials at all, the
``no_auth_user``. Passwords and tokens starting with ``$2`` are bcrypt hashes (auth.go isBcrypt).

Every failure is counted, logged with the remote address, and fed to :class:`AuthBackoff`: after
``threshold`` consecutive failures an address is refused without any credential check for a period
that doubles with each further failure, so a password cannot be guessed at line rate and an
attacker cannot make the broker burn CPU on bcrypt.

Cost: a bcrypt check takes ~0.1-0.3 s at cost 10-11 on a Raspberry Pi 4 (less on x86). Client
connections run it in a worker thread (``authenticate(..., may_defer=True)`` returns a BcryptCheck)
while their own input waits, so the event loop keeps serving everyone else. The work is bounded by
the backoff (at most ``threshold`` failed checks per address and backoff period) and by a small cache
of recent successful verifications (keyed by an HMAC under a per-process random key), so
reconnecting clients do not pay it again.
``bcrypt`` and ``nkeys`` are imported only when such users are configured.

Port users: a serial port on the ``nats``/``frames`` codec with ``user = "name"`` is bound to that
user by :meth:`Authenticator.bind_port_user` before its connection starts; no credentials are checked
(the port is the credential) and its CONNECT keeps the binding (see edge.adapters.serial.config).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from edge.config.security import UserSettings
from edge.config.settings import AuthorizationSettings, is_bcrypt
from edge.core.client import CREDENTIAL_OPTIONS
from edge.protocol.errors import ProtocolError
from edge.security.permissions import ConnectionPermissions, PermissionRules

log = logging.getLogger("edge.auth")


BCRYPT_CACHE_SIZE: Final = 256
# Defaults of the per-address backoff ([auth_backoff] table).
BACKOFF_THRESHOLD: Final = 5
BACKOFF_BASE: Final = 1.0
BACKOFF_MAX: Final = 60.0
BACKOFF_ENTRIES: Final = 4096
# A failure record is forgotten this long after its last failure.
BACKOFF_FORGET: Final = 600.0


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


@dataclass(slots=True)
class _Failures:
    count: int
    blocked_until: float
    last: float


class AuthBackoff:
    """Per-address failure counts with exponential blocking; a bounded map with counted overflow."""

    def __init__(
        self,
        threshold: int = BACKOFF_THRESHOLD,
        base: float = BACKOFF_BASE,
        maximum: float = BACKOFF_MAX,
        max_entries: int = BACKOFF_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.base = base
        self.maximum = maximum
        self.max_entries = max_entries
        self.clock = clock
        self.entries: dict[str, _Failures] = {}
        self.overflow = 0  # entries evicted because the map was full
        self.refused = 0  # CONNECTs refused while their address was blocked

    def blocked_for(self, addr: str) -> float:
        """Seconds ``addr`` stays blocked (0.0 = may try)."""
        if self.threshold <= 0:
            return 0.0
        entry = self.entries.get(addr)
        if entry is None:
            return 0.0
        now = self.clock()
        if now - entry.last > BACKOFF_FORGET:
            del self.entries[addr]
            return 0.0
        return max(0.0, entry.blocked_until - now)

    def failure(self, addr: str) -> float:
        """Record a failed attempt; returns the blocking period it started (0.0 if none)."""
        if self.threshold <= 0:
            return 0.0
        now = self.clock()
        entry = self.entries.pop(addr, None)
        if entry is None or now - entry.last > BACKOFF_FORGET:
            entry = _Failures(0, 0.0, now)
            while len(self.entries) >= self.max_entries:
                del self.entries[next(iter(self.entries))]  # the least recently failing address
                self.overflow += 1
        entry.count += 1
        entry.last = now
        period = 0.0
        if entry.count >= self.threshold:
            period = min(self.maximum, self.base * 2 ** min(entry.count - self.threshold, 30))
            entry.blocked_until = now + period
        self.entries[addr] = entry  # re-inserted last: eviction order is least recently failing first
        return period

    def success(self, addr: str) -> None:
        self.entries.pop(addr, None)


@dataclass(frozen=True, slots=True)
class _User:
    settings: UserSettings
    rules: PermissionRules | None


class Authenticator:
    """Checks CONNECT options; on success sets ``conn.user`` and ``conn.permissions``."""

    def __init__(self, auth: AuthorizationSettings, backoff: AuthBackoff | None = None) -> None:
        self.auth = auth
        self.backoff = backoff or AuthBackoff()
        self.failures = 0
        self.users: dict[str, _User] = {}
        self.nkeys: dict[str, _User] = {}
        for u in auth.users:
            entry = _User(u, PermissionRules(u.permissions) if u.permissions is not None else None)
            if u.nkey is not None:
                self.nkeys[u.nkey] = entry
            else:
                assert u.user is not None
                self.users[u.user] = entry
        self.needs_nonce = bool(self.nkeys)
        secrets_ = [u.password or "" for u in auth.users] + [auth.password or "", auth.token or ""]
        if any(is_bcrypt(s) for s in secrets_):
            import bcrypt  # noqa: F401 - fail at start, not at the first login, if it is missing
        if self.nkeys:
            import nkeys  # noqa: F401
        self._cache_key = os.urandom(32)
        self._bcrypt_ok: dict[bytes, None] = {}
        self._bcrypt_done: dict[bytes, bool] = {}  # failed deferred checks, until the re-check reads them
        self._defer = False

    def inherit(self, previous: Authenticator) -> None:
        """Carry over what a config reload must not reset: the per-address failure history (a reload
        does not unblock a password guesser) and the verified-bcrypt cache (its keys include the stored
        hash, so a changed password never matches an old entry)."""
        self.backoff.entries = previous.backoff.entries
        self.backoff.overflow, self.backoff.refused = previous.backoff.overflow, previous.backoff.refused
        self.failures = previous.failures
        self._cache_key, self._bcrypt_ok = previous._cache_key, previous._bcrypt_ok

    def recheck(self, conn: Any, options: dict[str, Any]) -> bool:
        """After a reload: is a connected client, with the credentials of its CONNECT, still allowed?
        Sets its user and (new) permissions when it is; no backoff accounting either way (as
        nats-server's reloadAuthorization re-runs the check)."""
        if getattr(conn, "port_user", None) is not None:
            return self.bind_port_user(conn, conn.port_user)
        user, _ = self._check(conn, options)
        if user is None:
            return False
        _assign(conn, user)
        return True

    def nonce_for(self, conn: Any) -> str:
        """The connection's INFO nonce (made once, kept for the CONNECT check)."""
        nonce: str | None = getattr(conn, "nonce", None)
        if nonce is None:
            nonce = conn.nonce = new_nonce()
        return nonce

    # -- the CONNECT check ----------------------------------------------------------------------

    def authenticate(self, conn: Any, options: dict[str, Any], *, may_defer: bool = False) -> bool | BcryptCheck:
        """True (``conn.user``/``conn.permissions`` set) or False (counted, backoff). With ``may_defer``,
        a bcrypt verification that is not cached is returned as a :class:`BcryptCheck` instead of being
        run here, on the event loop; the caller runs it, records it, and calls again."""
        for key in CREDENTIAL_OPTIONS:
            value = options.get(key)
            if value is not None and not isinstance(value, str):
                # nats-server fails to unmarshal CONNECT into its string fields: a parse error, no -ERR.
                raise ProtocolError(None, f"CONNECT {key} is not a string")
        if getattr(conn, "port_user", None) is not None:
            # A serial port bound to its user (bind_port_user): the port is the credential. Whatever
            # the device's CONNECT carries is ignored; user and permissions stay as bound.
            return True
        addr = conn.host
        blocked = self.backoff.blocked_for(addr)
        if blocked:
            self.backoff.refused += 1
            self.failures += 1
            log.warning("%s:%d - cid:%d - authentication refused: %d failures, address blocked for %.1fs",
                        addr, conn.port, conn.cid, self.backoff.entries[addr].count, blocked)
            return False
        self._defer = may_defer
        try:
            user, reason = self._check(conn, options)
        except _Deferred as d:
            return d.check
        finally:
            self._defer = False
        if user is None:
            self.failures += 1
            period = self.backoff.failure(addr)
            log.warning("%s:%d - cid:%d - authentication error: %s%s", addr, conn.port, conn.cid, reason,
                        f" (address blocked for {period:g}s)" if period else "")
            return False
        self.backoff.success(addr)
        _assign(conn, user)
        return True

    def bind_port_user(self, conn: Any, name: str) -> bool:
        """Make ``conn`` (a serial port's client connection, not yet started) the user ``name``.

        ``name`` is a ``user`` (or nkey) of ``authorization.users`` or the single ``authorization.user``.
        No password: the port is the credential. Sets ``conn.user``, ``conn.permissions`` (exactly that
        user's, as a TCP login would) and ``conn.port_user``, and clears ``conn.auth_required`` so the
        connection needs no CONNECT and has no authentication timeout. Returns False for an unknown
        name (the config loader rejects those, so only a broken caller gets here).
        """
        entry = self.users.get(name) or self.nkeys.get(name)
        if entry is None and self.auth.user is not None and name == self.auth.user:
            entry = _User(UserSettings(user=name), None)
        if entry is None:
            return False
        conn.port_user = name
        _assign(conn, entry)
        conn.auth_required = False
        return True

    def _check(self, conn: Any, options: dict[str, Any]) -> tuple[_User | None, str]:
        auth = self.auth
        nkey = options.get("nkey")
        username = options.get("user")
        password = options.get("pass")
        token = options.get("auth_token")
        if self.nkeys and isinstance(nkey, str) and nkey:
            entry = self.nkeys.get(nkey)
            if entry is None:
                return None, f"unknown nkey {nkey[:8]}..."
            sig = options.get("sig")
            nonce = getattr(conn, "nonce", None)
            if not isinstance(sig, str) or not nonce or not _verify_nkey(nkey, nonce, sig):
                return None, f"nkey {nkey[:8]}...: signature verification failed"
            return entry, ""
        mapped = getattr(conn, "tls_identities", None)
        if mapped:
            for identity in mapped:
                if identity in self.users:
                    return self.users[identity], ""
            return None, f"no user for client certificate {mapped[0]!r}"
        if self.users and isinstance(username, str) and username:
            entry = self.users.get(username)
            if entry is None or entry.settings.password is None:
                return None, f"unknown user {username!r}"
            if not isinstance(password, str) or not self._password_ok(username, password, entry.settings.password):
                return None, f"wrong password for user {username!r}"
            return entry, ""
        if auth.user is not None:
            if not (isinstance(username, str) and isinstance(password, str) and _equal(username, auth.user)):
                return None, "wrong user"
            if not self._password_ok(username, password, auth.password or ""):
                return None, f"wrong password for user {username!r}"
            return _User(UserSettings(user=auth.user), None), ""
        if auth.token is not None:
            # nats.go sends the token as auth_token; nats-server also accepts it in "user" for leafs.
            if not isinstance(token, str) or not self._password_ok("", token, auth.token):
                return None, "wrong token"
            return _User(UserSettings(), None), ""
        no_creds = not any(isinstance(x, str) and x for x in (username, password, token, nkey, options.get("jwt")))
        if no_creds and auth.no_auth_user is not None:
            return self.users[auth.no_auth_user], ""
        if self.users or self.nkeys:
            return None, "no credentials" if no_creds else "credentials of an unconfigured kind"
        return None, "no credentials"

    def _password_ok(self, user: str, given: str, stored: str) -> bool:
        if not is_bcrypt(stored):
            return _equal(given, stored)
        key = hmac.new(self._cache_key, f"{user}\0{given}\0{stored}".encode(), hashlib.sha256).digest()
        if key in self._bcrypt_ok:
            return True
        if key in self._bcrypt_done:  # a deferred check's result, used once
            return self._bcrypt_done.pop(key)
        check = BcryptCheck(key, given, stored)
        if self._defer:
            raise _Deferred(check)
        ok = check.run()
        self.record(check, ok)
        return ok

    def record(self, check: BcryptCheck, ok: bool) -> None:
        """The result of a :class:`BcryptCheck`: successes are cached (bounded), a failure is kept for the
        one call that asked for it."""
        if ok:
            if len(self._bcrypt_ok) >= BCRYPT_CACHE_SIZE:
                del self._bcrypt_ok[next(iter(self._bcrypt_ok))]
            self._bcrypt_ok[check.key] = None
        else:
            if len(self._bcrypt_done) >= BCRYPT_CACHE_SIZE:
                del self._bcrypt_done[next(iter(self._bcrypt_done))]
            self._bcrypt_done[check.key] = False


def _assign(conn: Any, user: _User) -> None:
    """``conn`` is ``user`` now: its name, and exactly its permissions (None = unrestricted)."""
    conn.user = user.settings.name
    conn.permissions = ConnectionPermissions(user.rules, conn) if user.rules is not None else None


class BcryptCheck:
    """A bcrypt verification the CONNECT check needs and has not cached: ``run()`` it off the event loop
    (it takes 0.1-0.3 s on a Pi), then hand the result to :meth:`Authenticator.record` and check again."""

    __slots__ = ("given", "key", "stored")

    def __init__(self, key: bytes, given: str, stored: str) -> None:
        self.key = key
        self.given = given
        self.stored = stored

    def run(self) -> bool:
        import bcrypt

        try:
            return bool(bcrypt.checkpw(self.given.encode(), self.stored.encode()))
        except ValueError:  # malformed hash or over-long input
            return False


class _Deferred(Exception):
    """Control flow inside ``_check``: never escapes :meth:`Authenticator.authenticate`."""

    def __init__(self, check: BcryptCheck) -> None:
        self.check = check


def build_authenticator(settings: Any) -> Authenticator:
    """The server's authenticator, with the ``[auth_backoff]`` settings if given."""
    b = settings.sections.get("auth_backoff")
    backoff = AuthBackoff(b.threshold, b.base, b.max, b.entries) if b is not None else AuthBackoff()
    return Authenticator(settings.authorization, backoff)


def new_nonce() -> str:
    """An INFO nonce as nats-server makes it (11 random bytes, raw URL base64: 15 characters)."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode().rstrip("=")


def _verify_nkey(public_key: str, nonce: str, sig: str) -> bool:
    """nats-server auth.go: the signature is base64 raw-URL (std accepted too) over the nonce bytes."""
    padded = sig + "=" * (-len(sig) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded) if ("-" in sig or "_" in sig) else base64.b64decode(padded)
    except ValueError:
        try:
            raw = base64.urlsafe_b64decode(padded)
        except ValueError:
            return False
    key = decode_user_nkey(public_key)
    if key is None:
        return False
    import nacl.exceptions
    import nacl.signing  # PyNaCl, a dependency of nkeys

    try:
        nacl.signing.VerifyKey(key).verify(nonce.encode(), raw)
    except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
        return False
    return True


def decode_user_nkey(public_key: str) -> bytes | None:
    """The 32-byte ed25519 key of a ``U...`` public nkey, or None if it is malformed (prefix, CRC16)."""
    import nkeys

    try:
        raw = base64.b32decode(public_key + "=" * (-len(public_key) % 8))
    except ValueError:
        return None
    if len(raw) != 35 or raw[0] != nkeys.PREFIX_BYTE_USER:
        return None
    if nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
        return None
    return raw[1:-2]
