"""The MQTT listener: binds the ``[mqtt]`` port, owns the sessions and their on-disk state.

Started by edge.runtime.broker only when ``[mqtt]`` is configured (imported lazily: a plain broker loads
no MQTT code). The join with the broker is :class:`~edge.mqtt.sessions.Session`'s internal client; the
outbox is consulted only through ``Forwarder.covered`` and the reply it sends a publisher once the
record is durable (the same acknowledgement a NATS publisher with a reply gets).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import TYPE_CHECKING, Any

from edge.errors import ListenError
from edge.mqtt.connection import ACK_PREFIX, MQTTConnection
from edge.mqtt.sessions import Counters, Session, SessionManager

if TYPE_CHECKING:
    from edge.config.mqtt import MQTTSettings
    from edge.core.internal import Message
    from edge.core.server import Server

log = logging.getLogger("edge.mqtt")


def resolve_mqtt_directory(settings: MQTTSettings, state_dir: str | None) -> str:
    """``dir`` as configured, else ``mqtt`` next to the outbox in the broker's state directory."""
    if settings.dir:
        return settings.dir
    from edge.config.store_forward import StoreForwardSettings
    from edge.store.forwarder import resolve_directory

    outbox, _ = resolve_directory(StoreForwardSettings(), state_dir)
    return os.path.join(os.path.dirname(outbox), "mqtt")


class MQTTListener:
    """``await start()`` (replays the state, listens), ``await stop()``."""

    def __init__(self, server: Server, settings: MQTTSettings, directory: str, outbox: Any = None) -> None:
        self.server = server
        self.settings = settings
        self.outbox = outbox  # edge.store.forwarder.Forwarder or None
        self.manager = SessionManager(server, settings, directory)
        self.connections: set[MQTTConnection] = set()
        self.subjects: dict[bytes, bytes] = {}  # PUBLISH topic -> subject (MQTTConnection._convert_topic)
        self.slow_consumers = 0
        self.port = 0
        self.host = ""
        self._listener: asyncio.Server | None = None
        self._redeliver: asyncio.TimerHandle | None = None

    @property
    def counters(self) -> Counters:
        return self.manager.counters

    async def start(self) -> None:
        loop = self.server.loop
        await loop.run_in_executor(None, self.manager.journal.open)
        self.manager.restore()
        s = self.settings
        self.host = s.host or self.server.settings.host
        port = 0 if s.port is None or s.port < 0 else s.port
        ssl_ctx = None
        if s.tls is not None:
            from edge.security.tls import build_server_context

            source = self.server.settings.sources[-1] if self.server.settings.sources else "mqtt"
            ssl_ctx = build_server_context(s.tls, source)
        try:
            self._listener = await loop.create_server(
                lambda: MQTTConnection(self), host=self.host, port=port, reuse_address=True, backlog=1024,
                ssl=ssl_ctx, ssl_handshake_timeout=s.tls.timeout if s.tls is not None else None,
            )
        except OSError as exc:
            # nats-server's wording for its MQTT listener: "Unable to listen for MQTT connections: ..."
            raise ListenError.mqtt(self.host, port, exc) from exc
        sock = self._listener.sockets[0]
        self.port = sock.getsockname()[1]
        for sk in self._listener.sockets:
            sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._redeliver = loop.call_later(s.ack_wait, self._redeliver_tick)
        log.info("Listening for MQTT clients on %s:%d%s", self.host, self.port, " (TLS)" if ssl_ctx else "")

    async def stop(self) -> None:
        if self._redeliver is not None:
            self._redeliver.cancel()
            self._redeliver = None
        if self._listener is not None:
            self._listener.close()
        for conn in list(self.connections):
            conn.close("server shutdown", will=False)
        if self._listener is not None:
            try:
                async with asyncio.timeout(1.0):
                    await self._listener.wait_closed()
            except TimeoutError:
                pass
        await self.manager.close()

    def _redeliver_tick(self) -> None:
        """Every ack_wait: in-flight QoS 1/2 deliveries that saw no progress since the last tick go again."""
        for session in list(self.manager.sessions.values()):
            if session.conn is not None and session.inflight:
                if session.stalled:
                    session.redeliver_expired()
                session.stalled = True  # cleared by any ack before the next tick
        self._redeliver = self.server.loop.call_later(self.settings.ack_wait, self._redeliver_tick)

    # -- a reloaded [authorization] --------------------------------------------------------------

    def reload_authorization(self) -> tuple[int, int]:
        """Recheck the connected MQTT clients against the server's new authenticator (after
        edge.core.server.Server.reload_authorization, which does the same for NATS clients, as
        nats-server's reloadAuthorization does for all of its clients): one whose CONNECT credentials no
        longer pass is closed, without its will (the authority to publish it is what was revoked); one
        that passes gets its user's new permissions, and the session's subscriptions those deny are
        removed. Returns (clients closed, subscriptions removed)."""
        auth: Any = self.server.authenticator
        closed = removed = 0
        for conn in list(self.connections):
            session = conn.session
            if conn.closed or not conn.connected or session is None:
                continue  # before CONNECT: it meets the new rules when it sends one
            if auth is None:
                conn.permissions = None
            elif not auth.recheck(conn, conn.credentials):
                log.warning("mqtt %s - authorization revoked by a configuration reload", conn.tag)
                conn.close("authorization revoked", will=False)
                closed += 1
                continue
            session.permissions = conn.permissions
            for f in session.drop_denied_subscriptions():
                log.warning("mqtt %s - subscription to %r removed: the reloaded permissions deny it", conn.tag,
                            f.decode(errors="replace"))
                removed += 1
        return closed, removed

    # -- the outbox -----------------------------------------------------------------------------

    def covered(self, subject: bytes) -> bool:
        return self.outbox is not None and bool(self.outbox.covered(subject))

    def ensure_ack_subscription(self, session: Session) -> None:
        if session.ack_sub is None:
            session.ack_sub = session.client.subscribe(
                ACK_PREFIX + session.ack_token + b".*", lambda msg: self._on_outbox_ack(session, msg)
            )

    def _on_outbox_ack(self, session: Session, msg: Message) -> None:
        conn = session.conn
        if conn is None:
            return  # the device went away; it sends the message again (DUP) and gets its ack then
        try:
            pid = int(msg.subject.rsplit(b".", 1)[1])
            body = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        if "seq" in body:
            conn.outbox_ack(pid, True)
        elif "error" in body:
            conn.outbox_ack(pid, False)

    # -- monitoring -----------------------------------------------------------------------------

    def varz(self) -> dict[str, Any]:
        """The /varz ``mqtt`` block: nats-server's keys, plus our counters."""
        from dataclasses import asdict

        s = self.settings
        return {
            "host": self.host,
            "port": self.port,
            "no_auth_user": s.no_auth_user or "",
            "tls_timeout": s.tls.timeout if s.tls is not None else 0,
            "ack_wait": int(s.ack_wait * 1e9),
            "max_ack_pending": s.max_ack_pending,
            "connections": sum(1 for c in self.connections if c.connected),
            "sessions": len(self.manager.sessions),
            "retained": len(self.manager.retained),
            "store_bytes": self.manager.live_bytes,
            **asdict(self.counters),
        }

    def snapshot(self) -> list[dict[str, Any]]:
        """The MQTT devices for the device list (/devicez, ``edge.<gateway>.devices``): one per session,
        connected or persistent, named by its client id (edge.monitoring.providers' device shape)."""
        now = time.time()
        devices = []
        for sess in self.manager.sessions.values():
            conn = sess.conn
            devices.append({
                "adapter": "mqtt",
                "id": sess.client_id,
                "name": sess.client_id,
                "online": conn is not None,
                "first_seen": sess.first_seen,
                "last_seen": now if conn is not None else sess.last_seen,
                "subject": "",
                "readings": sess.msgs_in,
                "errors": 0,
                "ip": conn.host if conn is not None else "",
                "persistent": sess.persistent,
                "subscriptions": sorted(f.decode(errors="replace") for f in sess.state.subs),
                "queued": len(sess.state.messages),
            })
        return devices
