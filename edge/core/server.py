"""The broker core: listeners, connections, subscriptions, the router and the flush cycle.

One :class:`Server` per process, on one event loop. Connections register here; subscriptions go
through :meth:`add_subscription` / :meth:`remove_subscriptions` so interest listeners (the leaf
uplink) see every change; output queued during a loop turn is flushed once, at the end of it, by
:meth:`_flush`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from edge import NATS_SERVER_VERSION, __version__
from edge.config.settings import Settings
from edge.core.client import ClientConnection, CloseReason
from edge.core.internal import InternalClient
from edge.core.router import Router
from edge.core.sublist import SubscriptionIndex
from edge.core.subscription import Subscription
from edge.errors import ListenError
from edge.protocol import errors as E
from edge.protocol.encode import encode_info

log = logging.getLogger("edge.server")

# nats-server's INFO "proto" for clients (server.go: PROTO_VERSION / ClientProtoInfo).
CLIENT_PROTO: Final = 1

InterestListener = Callable[[Subscription, bool], None]


def _bind_literal(host: str, port: int) -> socket.socket | None:
    """Bind a listening socket for an IP-literal host without a name lookup.

    Going through getaddrinfo would import the IDNA codec (unicodedata, ~0.4 MB resident) just to
    encode "127.0.0.1". Returns None for host names, which take the resolver path.
    """
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock
    return None


@dataclass(frozen=True, slots=True)
class ClosedConnection:
    """What ``/connz?state=closed`` shows of a client connection after it is gone."""

    cid: int
    host: str
    port: int
    start: float
    stop: float
    reason: str
    rtt: float
    in_msgs: int
    out_msgs: int
    in_bytes: int
    out_bytes: int
    name: str
    lang: str
    version: str
    user: str | None
    subs: tuple[str, ...]  # the subjects it was subscribed to when it closed
    mqtt_client: str = ""  # an MQTT client's id (/connz "type": "mqtt")

    @property
    def pending_bytes(self) -> int:  # for /connz's sort=pending, as on open connections
        return 0


_BASE32: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648


def new_server_id() -> str:
    """A 56-character upper-case base32 id starting with N, shaped like nats-server's nkey ids."""
    # Not base64.b32encode: its first call builds a 1024-entry table that stays resident.
    return "N" + "".join(_BASE32[b & 31] for b in os.urandom(55))  # 256 % 32 == 0: uniform


class Authenticator(Protocol):
    """What the server asks of ``[authorization]`` (edge.security.auth.Authenticator, built by the runtime)."""

    needs_nonce: bool

    def nonce_for(self, conn: Any) -> str: ...
    def authenticate(self, conn: Any, options: dict[str, Any], *, may_defer: bool = False) -> Any: ...
    def recheck(self, conn: Any, credentials: dict[str, Any]) -> bool: ...
    def record(self, check: Any, ok: bool) -> None: ...
    def inherit(self, previous: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class ListenerTLS:
    """TLS on the client port (edge.security.tls.client_listener_tls, passed in by the runtime).

    ``options(server)`` gives the protocol factory and extra ``create_server`` arguments; ``info`` the
    fields nats-server adds to INFO when TLS is on.
    """

    options: Callable[[Server], tuple[Callable[[], asyncio.Protocol], dict[str, Any]]]
    info: dict[str, Any]


class Server:
    """The broker. Create it inside a running loop, then ``await start()``.

    The optional parts come in through the constructor (the runtime builds them, so that core never
    imports edge.security): ``authenticator`` when ``[authorization]`` requires it, ``tls`` when the
    client port uses TLS.
    """

    def __init__(
        self,
        settings: Settings,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        authenticator: Authenticator | None = None,
        tls: ListenerTLS | None = None,
    ) -> None:
        self.settings = settings
        self.loop = loop or asyncio.get_running_loop()
        self.server_id = new_server_id()
        # nats-server falls back to the random server id; a gateway's name goes into every device
        # subject, so it falls back to the host name, which is stable across restarts.
        self.server_name = settings.server_name or socket.gethostname() or self.server_id
        self.sublist = SubscriptionIndex()
        self._flush_scheduled = False
        self.router = Router(self.sublist, self._schedule_flush)
        self.clients: dict[int, ClientConnection] = {}
        # Client connections of another protocol (MQTT, edge.mqtt): they count against max_connections
        # as nats-server counts its MQTT clients, but live with their listener (admit/release_connection).
        self.other_clients = 0
        # The most recent closed connections, oldest first (nats-server's closed-clients ring).
        self.closed_clients: deque[ClosedConnection] = deque(maxlen=settings.max_closed_clients)
        self.interest_listeners: list[InterestListener] = []
        self._next_cid = 0
        self._listener: asyncio.Server | None = None
        self.port = 0
        self.start_time = time.time()
        self.total_connections = 0
        self.slow_consumers = 0
        self.stale_connections = 0
        self.max_subscriptions_exceeded = 0
        self.auth_failures = 0
        self.rejected_connections = 0
        self.accepting = False
        auth = settings.authorization
        self.auth_required = auth.required
        self._info_base: dict[str, Any] = {}
        self.tls_handshake_failures = 0
        self.authenticator: Authenticator | None = authenticator
        self.tls = tls

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the client listener. Raises ListenError (address in use, ...) for the caller to report."""
        port = self.settings.port
        if port < 0:
            port = 0  # nats-server's RANDOM_PORT (-1)
        def factory() -> asyncio.Protocol:
            return ClientConnection(self)

        tls_kw: dict[str, Any] = {}
        if self.tls is not None:  # plain INFO then start_tls, or TLS first
            factory, tls_kw = self.tls.options(self)
        try:
            sock = _bind_literal(self.settings.host, port)
            if sock is not None:
                self._listener = await self.loop.create_server(factory, sock=sock, backlog=1024, **tls_kw)
            else:
                self._listener = await self.loop.create_server(
                    factory,
                    host=self.settings.host,
                    port=port,
                    reuse_address=True,
                    backlog=1024,
                    **tls_kw,
                )
        except OSError as exc:
            raise ListenError.client(self.settings.host, self.settings.port, exc) from exc
        sock = self._listener.sockets[0]
        self.port = sock.getsockname()[1]
        for s in self._listener.sockets:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.accepting = True
        self._info_base = {
            "server_id": self.server_id,
            "server_name": self.server_name,
            "version": NATS_SERVER_VERSION,
            "edge_version": __version__,  # clients ignore INFO fields they do not know
            "proto": CLIENT_PROTO,
            "go": "python{}.{}.{}".format(*sys.version_info[:3]),
            "host": self.settings.host,
            "port": self.port,
            "headers": True,
            "max_payload": self.settings.max_payload,
        }
        self._set_info_auth(self.settings)
        if self.tls is not None:
            self._info_base.update(self.tls.info)
        log.info("Listening for client connections on %s:%d", self.settings.host, self.port)

    def _set_info_auth(self, settings: Settings) -> None:
        # nats-server omits auth_required when no_auth_user lets clients in without credentials.
        if settings.authorization.required and settings.authorization.no_auth_user is None:
            self._info_base["auth_required"] = True
        else:
            self._info_base.pop("auth_required", None)

    def stop_accepting(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self.accepting = False

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Stop accepting, flush every client's pending output, close them, wait (bounded)."""
        self.stop_accepting()
        self._flush()
        clients = list(self.clients.values())
        for c in clients:
            c.close()
        deadline = self.loop.time() + timeout
        # Wait for the transports to finish writing what was queued; bounded by the deadline.
        while self.loop.time() < deadline:
            if all(c.transport is None or (c.transport.is_closing() and c.transport.get_write_buffer_size() == 0)
                   for c in clients):
                break
            await asyncio.sleep(0.01)
        if self._listener is not None:
            self._listener.close()
            try:
                async with asyncio.timeout(max(0.1, deadline - self.loop.time())):
                    await self._listener.wait_closed()
            except TimeoutError:
                pass

    # -- connections ----------------------------------------------------------------------------

    def next_client_id(self) -> int:
        self._next_cid += 1
        return self._next_cid

    def internal_client(self, name: str, *, echo: bool = False) -> InternalClient:
        """A socketless client for an adapter or service (see edge.core.internal)."""
        return InternalClient(self, name, echo=echo)

    @property
    def connection_count(self) -> int:
        """Open client connections, NATS and other protocols (what max_connections bounds)."""
        return len(self.clients) + self.other_clients

    def register(self, conn: ClientConnection) -> bool:
        """Assign a client id; returns False if max_connections is reached."""
        conn.cid = self.next_client_id()
        if self.connection_count >= self.settings.max_connections:
            self.rejected_connections += 1
            return False
        self.clients[conn.cid] = conn
        self.total_connections += 1
        return True

    def admit_connection(self) -> bool:
        """A client connection of another protocol (MQTT) opens: False, and counted as rejected, when
        max_connections is reached; otherwise it counts until :meth:`release_connection`."""
        if self.connection_count >= self.settings.max_connections:
            self.rejected_connections += 1
            return False
        self.other_clients += 1
        return True

    def release_connection(self) -> None:
        self.other_clients -= 1

    def unregister(self, conn: ClientConnection, reason: str) -> None:
        """``conn`` closed (called before its subscriptions are dropped): remembered in the closed ring."""
        if self.clients.pop(conn.cid, None) is None:
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s - Client connection closed: %s", conn.tag, reason)
        self.remember_closed(conn, reason)

    def remember_closed(self, conn: Any, reason: str) -> None:
        """Keep what ``/connz?state=closed`` shows of a closed client connection, NATS or MQTT (any object
        with a client connection's monitoring fields), in the bounded closed-connections ring."""
        if self.closed_clients.maxlen:
            self.closed_clients.append(ClosedConnection(
                conn.cid, conn.host, conn.port, conn.start, time.time(), reason, conn.rtt, conn.in_msgs,
                conn.out_msgs, conn.in_bytes, conn.out_bytes, conn.name, conn.lang, conn.version, conn.user,
                tuple(s.subject.decode(errors="replace") for s in conn.subs.values()),
                getattr(conn, "mqtt_client", ""),
            ))

    def info_for(self, conn: ClientConnection, *, connect_info: bool = False) -> bytes:
        info = dict(self._info_base)
        info["client_id"] = conn.cid
        info["client_ip"] = conn.host
        if self.authenticator is not None and self.authenticator.needs_nonce:
            info["nonce"] = self.authenticator.nonce_for(conn)
        if connect_info:
            info["connect_info"] = True
            info["remote_account"] = "$G"
        return encode_info(info)

    def lame_duck_info(self) -> bytes:
        """The INFO every client gets on entering lame duck mode: ``ldm`` and no ``connect_urls``
        (nats-server's lameDuckMode sendLDMToClients; clients then reconnect elsewhere)."""
        return encode_info({**self._info_base, "ldm": True, "connect_urls": []})

    def apply_settings(self, new: Settings) -> None:
        """A reloaded configuration's limits, for the server and every connection (SIGHUP): max_pending,
        max_payload (also what INFO tells new clients, as nats-server does after a reload), trace, and
        the size of the closed-connections ring. Timers read ``self.settings`` when they next fire."""
        old = self.settings
        self.settings = new
        if new.max_closed_clients != old.max_closed_clients:
            self.closed_clients = deque(self.closed_clients, maxlen=new.max_closed_clients)
        if self._info_base:
            self._info_base["max_payload"] = new.max_payload
        for conn in list(self.clients.values()):
            conn.apply_limits(new.max_pending, new.max_payload, new.trace)

    def reload_authorization(self, settings: Settings, authenticator: Authenticator | None) -> tuple[int, int]:
        """Apply a reloaded ``authorization`` to new and connected clients, as nats-server's
        reloadAuthorization does: a client whose CONNECT credentials no longer pass is closed (with no
        -ERR, as nats-server); one that passes gets its user's new permissions, and each of its
        subscriptions those now deny is removed with 'Permissions Violation for Subscription to "s" (sid "n")'.
        ``authenticator`` is the one built for ``settings`` (None without authorization); it inherits the
        previous one's failure backoff and bcrypt cache. Returns (clients closed, subscriptions removed)."""
        previous = self.authenticator
        self.auth_required = settings.authorization.required
        self.authenticator = authenticator
        if authenticator is not None and previous is not None:
            authenticator.inherit(previous)
        if self._info_base:  # listening: what new clients are told
            self._set_info_auth(settings)
        closed = removed = 0
        for conn in list(self.clients.values()):
            if conn.closed:
                continue
            if not conn.connected:  # still before CONNECT: it meets the new rules when it sends it
                conn.auth_required = self.auth_required
                continue
            if self.authenticator is None:
                conn.permissions = None
            elif not self.authenticator.recheck(conn, conn.credentials):
                # nats-server (2.15) closes these without an -ERR; we log why.
                log.warning("%s - authorization revoked by a configuration reload", conn.tag)
                conn.close_with_error(None, CloseReason.AUTH_VIOLATION)
                closed += 1
                continue
            removed += self._reapply_permissions(conn)
        return closed, removed

    def _reapply_permissions(self, conn: ClientConnection) -> int:
        perms = conn.permissions
        denied = []
        for sid, sub in list(conn.subs.items()):
            sub.conn = conn  # undo an earlier permission filter (edge.security.permissions.wrap)
            if perms is None:
                continue
            if perms.can_subscribe(sub.subject, sub.queue):
                perms.wrap(sub)
            else:
                denied.append(sub)
                del conn.subs[sid]
        if denied:
            self.remove_subscriptions(denied)
            for sub in denied:
                conn.send_err(E.permissions_subscribe_revoked(sub.subject.decode(errors="replace"),
                                                              sub.sid.decode(errors="replace")))
        conn._update_slow_path()
        return len(denied)

    def authenticate(self, conn: ClientConnection, options: dict[str, Any], *, may_defer: bool = False) -> Any:
        """Check CONNECT credentials (edge.security.auth); sets conn.user and conn.permissions. True or
        False; with ``may_defer``, a bcrypt check to run off the loop (edge.security.auth.BcryptCheck)."""
        if self.authenticator is None:
            return True
        verdict = self.authenticator.authenticate(conn, options, may_defer=may_defer)
        if verdict is False:
            self.auth_failures += 1
        return verdict

    # -- subscriptions --------------------------------------------------------------------------

    def add_subscription(self, sub: Subscription) -> None:
        self.sublist.insert(sub)
        for listener in self.interest_listeners:
            listener(sub, True)

    def remove_subscriptions(self, subs: Iterable[Subscription]) -> None:
        for sub in subs:
            if self.sublist.remove(sub):
                for listener in self.interest_listeners:
                    listener(sub, False)

    def find_own_subscription(self, conn: Any, subject: bytes) -> Subscription | None:
        """The subscription of ``conn`` that matches ``subject`` (for the no-responders reply)."""
        m = self.sublist.match(subject)
        for sub in m.plain:
            if getattr(sub.conn, "owner", sub.conn) is conn:  # owner: edge.security's delivery filter
                return sub
        for group in m.queues:
            for sub in group.members:
                if getattr(sub.conn, "owner", sub.conn) is conn:
                    return sub
        return None

    # -- flush cycle ----------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for conn in self.router.take_dirty():
            conn.flush()

    # -- monitoring helpers ---------------------------------------------------------------------

    @property
    def num_subscriptions(self) -> int:
        return len(self.sublist)

    async def write_ports_file(self, directory: str, http_port: int = 0) -> str:
        """nats-server's ``--ports_file_dir``: ``<prog>_<pid>.ports`` with the bound URLs, written (atomically,
        through aiofiles' worker thread) so that a stalling disk never blocks the event loop."""
        import aiofiles
        import aiofiles.os

        ports: dict[str, list[str]] = {"nats": [f"nats://{self.settings.host}:{self.port}"]}
        if http_port:
            ports["monitoring"] = [f"http://{self.settings.http_host}:{http_port}"]
        path = os.path.join(directory, f"nats-edge_{os.getpid()}.ports")
        tmp = path + ".tmp"
        async with aiofiles.open(tmp, "w") as fh:
            await fh.write(json.dumps(ports))
        await aiofiles.os.replace(tmp, path)
        return path
