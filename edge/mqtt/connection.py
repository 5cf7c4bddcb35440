"""One MQTT network connection: the asyncio Protocol shell around the sans-IO codec (edge.protocol.mqtt).

Bytes are decoded and each packet handled synchronously inside ``data_received``; output is queued in
:attr:`out` and flushed once per loop turn by the server's flush cycle (``Router.mark_dirty``), like a NATS
client's. The queue plus what the transport buffers is bounded by the broker's ``max_pending``; beyond it
the connection is closed as a slow consumer (QoS 1/2 messages stay in the session and are sent again).

Closing follows MQTT 3.1.1: a malformed packet, a second CONNECT, a packet before CONNECT, an expired
keep alive (1.5 x the client's value) or a lost socket close the connection and publish the will; a
DISCONNECT discards the will first [MQTT-3.14.4-3]; a second connection with the same client id takes
the session over and closes the first (without its will) [MQTT-3.1.4-2].
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final, cast

from edge.core.outbound import OutboundBuffer
from edge.protocol import mqtt as P
from edge.protocol import mqtt_trace
from edge.protocol.gofmt import go_quote
from edge.protocol.mqtt_topics import TopicError, filter_subjects, is_valid_filter, topic_to_subject
from edge.protocol.subjects import is_valid_literal_subject, is_valid_subject

if TYPE_CHECKING:
    from edge.mqtt.listener import MQTTListener
    from edge.mqtt.sessions import Session

log = logging.getLogger("edge.mqtt")
trace_log = logging.getLogger("edge.trace")  # -V, as the NATS client connection's (edge.core.client)

ACK_PREFIX: Final = b"$MQTT.sfack."
# PUBLISH topic -> NATS subject conversions the listener remembers (topics up to P.TOPIC_CACHE_LEN bytes).
SUBJECT_CACHE_MAX: Final = 4096
_CONNECT_TASKS: Final[set[asyncio.Task[None]]] = set()


class MQTTConnection(asyncio.Protocol):
    """An MQTT client's connection. Looks to the auth code like a client connection (host, port, cid,
    user, permissions); looks to the router like any connection with queued output (``flush``)."""

    def __init__(self, listener: MQTTListener) -> None:
        self.listener = listener
        self.server = listener.server
        self.counters = listener.counters
        self.loop = listener.server.loop
        settings = self.server.settings
        self.max_pending = settings.max_pending
        self.max_payload = settings.max_payload
        # A PUBLISH carries a topic (<= 64 KiB) and a packet id besides its payload.
        self.decoder = P.Decoder(server=True, max_packet=settings.max_payload + 65_541)
        self.transport: asyncio.Transport | None = None
        self.cid = self.server.next_client_id()
        self.host = ""
        self.port = 0
        self.start = time.time()
        self.user: str | None = None
        self.permissions: Any = None
        self.credentials: dict[str, Any] = {}  # CONNECT's, as the auth code reads them: rechecked on a reload
        self.client_id = ""
        self.keepalive = 0
        self.session: Session | None = None
        self.will: P.Will | None = None
        self.connected = False
        self.closed = False
        self.close_reason = ""
        # The one outbound-buffer type (edge.core.outbound): a PUBLISH past max_pending closes the
        # connection as a slow consumer; its QoS 1/2 messages stay in the session and are sent again.
        self.outbound = OutboundBuffer(self, self.server.router.mark_dirty, settings.max_pending,
                                       on_overflow=self._slow_consumer)
        self.in_msgs = self.in_bytes = 0
        self._last_in = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._waiting: deque[P.Packet] | None = None  # packets held while a bcrypt check runs
        self._outbox_acks: dict[int, int] = {}  # packet id -> PUBACK/PUBREC owed once the outbox has it
        self._held = False  # output waits for the journal (flush)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.host, self.port = str(peer[0]), int(peer[1])
        if not self.server.admit_connection():
            # One max_connections for NATS and MQTT clients; nats-server's createMQTTClient closes the
            # connection at once (MQTT 3.1.1 has no CONNACK before a CONNECT to say why).
            log.warning("mqtt %s - maximum connections (%d) exceeded", self.tag, self.server.settings.max_connections)
            self.closed = True
            self.outbound.close()
            transport.close()
            return
        self._last_in = self.loop.time()
        self.listener.connections.add(self)
        self.counters.total_connections += 1
        # A CONNECT must arrive within the authorization timeout, as a NATS client's.
        self._timer = self.loop.call_later(self.server.settings.authorization.timeout, self._connect_timeout)

    def data_received(self, data: bytes) -> None:
        self._last_in = self.loop.time()
        if self.closed:
            return
        try:
            packets = self.decoder.feed(data)
        except P.ConnectRefused as exc:
            self._refuse(exc.return_code, str(exc))
            return
        except P.MalformedPacket as exc:
            self.close(f"malformed packet: {exc}", will=True)
            return
        if self._waiting is not None:
            self._waiting.extend(packets)
            return
        self._handle_all(packets)

    def _handle_all(self, packets: list[P.Packet]) -> None:
        trace = self.server.settings.trace  # -V: nats-server's MQTT trace lines (edge.protocol.mqtt_trace)
        try:
            for i, p in enumerate(packets):
                if self.closed:
                    return
                if trace:
                    self._trace_in(p)
                if type(p) is P.Publish and self.connected:  # the hot paths: no dispatch
                    self._on_publish(p)
                elif type(p) is P.Ack and self.connected:
                    self._on_ack(p)
                elif self._handle(p):  # a deferred CONNECT: the rest waits for it
                    self._waiting = deque(packets[i + 1:])
                    return
        except Exception:
            log.exception("mqtt %s - internal error; closing the connection", self.tag)
            self.close("internal error", will=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cleanup("client closed" if exc is None else f"read error: {exc}", will=True)

    def eof_received(self) -> bool | None:
        return False

    # -- monitoring (the fields /connz reads of any connection) --------------------------------

    rtt: Final = 0.0  # MQTT has no round-trip measurement
    name: Final = ""
    lang: Final = ""
    version: Final = ""

    @property
    def mqtt_client(self) -> str:
        """nats-server's /connz ``mqtt_client``: the MQTT client id."""
        return self.client_id

    @property
    def subs(self) -> dict[bytes, Any]:
        session = self.session
        if session is None:
            return {}
        return {sub.sid: sub for subs in session.subs.values() for sub in subs}

    @property
    def pending_bytes(self) -> int:
        buffered = self.transport.get_write_buffer_size() if self.transport is not None and not self.closed else 0
        return self.outbound.size + buffered

    @property
    def out_msgs(self) -> int:
        return self.outbound.msgs

    @property
    def out_bytes(self) -> int:
        return self.outbound.bytes

    # -- output ---------------------------------------------------------------------------------

    @property
    def tag(self) -> str:
        """nats-server's MQTT client tag: ``host:port - mid:N - "client id"`` (the id as Go's %q)."""
        return self._tag_for(self.client_id)

    def _tag_for(self, client_id: str) -> str:
        base = f"{self.host}:{self.port} - mid:{self.cid}"
        return f"{base} - {go_quote(client_id.encode())}" if client_id else base

    def _trace_in(self, p: P.Packet) -> None:
        # nats-server names the client by the CONNECT's id on the CONNECT's own line already.
        tag = self._tag_for(p.client_id) if type(p) is P.Connect else self.tag
        trace_log.debug("%s - <<- [%s]", tag, mqtt_trace.inbound(p))
        if type(p) is P.Publish:
            trace_log.debug("%s - <<- %s", tag, mqtt_trace.payload(p.payload))

    def send(self, data: bytes) -> None:
        """Queue a packet that answers one the client sent (CONNACK, PUBACK, SUBACK, ...)."""
        if self.server.settings.trace:
            trace_log.debug("%s - ->> [%s]", self.tag, mqtt_trace.outbound(data))
        self.outbound.append(data)

    def send_publish(self, topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, pid: int) -> None:
        if self.server.settings.trace:
            trace_log.debug("%s - ->> [%s]", self.tag, mqtt_trace.publish(topic, len(payload), qos, retain, dup, pid))
        if self.outbound.add_msg(P.encode_publish(topic, payload, qos, retain=retain, dup=dup, packet_id=pid),
                                 len(payload)):
            self.counters.msgs_out += 1

    def _slow_consumer(self) -> None:
        self.listener.slow_consumers += 1
        log.info("mqtt %s - slow consumer: more than %d bytes pending", self.tag, self.max_pending)
        self.outbound.discard()
        self.close("slow consumer", will=True, flush=False)

    def flush(self) -> None:
        """Write what is queued; called by the server once per loop turn. Held back while the session
        journal has records not yet in the file: nothing is acknowledged before it is stored."""
        if self.closed or not self.outbound.chunks or self.transport is None:
            return
        journal = self.listener.manager.journal
        if journal.unwritten:
            if not self._held:
                self._held = True
                journal.after_write(self._release)
            return
        self.transport.write(self.outbound.take())
        self.outbound.written(self.transport.get_write_buffer_size())  # past max_pending: slow consumer

    def _release(self) -> None:
        self._held = False
        self.flush()

    # -- closing --------------------------------------------------------------------------------

    def close(self, reason: str, *, will: bool, flush: bool = True) -> None:
        """Close; with ``flush``, what is queued is written first (once the journal has its records)."""
        if self.closed:
            return
        transport = self.transport
        data = self.outbound.take() if flush else b""
        self._cleanup(reason, will=will)
        if transport is None:
            return
        if not flush:
            transport.abort()
            return

        def finish() -> None:
            if data and not transport.is_closing():
                transport.write(data)
            transport.close()

        self.listener.manager.journal.after_write(finish)

    def _refuse(self, return_code: int, text: str) -> None:
        log.info("mqtt %s - CONNECT refused (return code %d): %s", self.tag, return_code, text)
        self.send(P.encode_connack(False, return_code))
        self.close(f"connect refused: {text}", will=False)

    def _cleanup(self, reason: str, *, will: bool) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.listener.connections.discard(self)
        self.server.release_connection()
        if self.connected:  # in /connz?state=closed as nats-server lists its closed MQTT clients
            self.server.remember_closed(self, reason)
        self.outbound.close()
        log.debug("mqtt %s - closed: %s", self.tag, reason)
        session = self.session
        self.session = None
        if session is not None and session.conn is self:
            session.conn = None
            session.client.on_behalf_of = None
            session.last_seen = time.time()
            session.permissions = None
            if will and self.will is not None:
                self._publish_will(session, self.will)
            if not session.persistent:
                self.listener.manager.drop(session)
            else:
                session.inflight.clear()

    def _publish_will(self, session: Session, w: P.Will) -> None:
        try:
            subject = topic_to_subject(w.topic)
        except TopicError:
            return
        if self.permissions is not None and not self.permissions.can_publish(subject, None):
            self.counters.publish_denied += 1
            return
        if w.retain:
            self.listener.manager.set_retained(w.topic, w.payload, w.qos)
        session.publish(subject, w.payload, w.qos)

    # -- timers ---------------------------------------------------------------------------------

    def _connect_timeout(self) -> None:
        self._timer = None
        if not self.connected:
            self.close("no CONNECT in time", will=False)

    def _keepalive_check(self) -> None:
        self._timer = None
        if self.closed:
            return
        limit = self.keepalive * 1.5  # [MQTT-3.1.2-24]
        idle = self.loop.time() - self._last_in
        if idle >= limit:
            self.close(f"keep alive expired ({limit:g}s without a packet)", will=True)
            return
        self._timer = self.loop.call_later(limit - idle, self._keepalive_check)

    # -- packets --------------------------------------------------------------------------------

    def _handle(self, p: P.Packet) -> bool:
        """Handle one packet; True when handling continues asynchronously (a bcrypt check)."""
        if isinstance(p, P.Publish):
            if not self.connected:
                return self._not_connected(p)
            self._on_publish(p)
        elif isinstance(p, P.Ack):
            if not self.connected:
                return self._not_connected(p)
            self._on_ack(p)
        elif isinstance(p, P.Connect):
            if self.connected:
                self.close("second CONNECT [MQTT-3.1.0-2]", will=True)
                return False
            return self._on_connect(p)
        elif isinstance(p, P.Subscribe):
            if not self.connected:
                return self._not_connected(p)
            self._on_subscribe(p)
        elif isinstance(p, P.Unsubscribe):
            if not self.connected:
                return self._not_connected(p)
            session = self.session
            assert session is not None
            for f in p.filters:
                session.unsubscribe(f)
            self.send(P.encode_ack(P.UNSUBACK, p.packet_id))
        elif isinstance(p, P.Simple):
            if not self.connected:
                return self._not_connected(p)
            if p.type == P.PINGREQ:
                self.send(P.PINGRESP_BYTES)
            else:  # DISCONNECT: the will is discarded [MQTT-3.14.4-3]
                self.will = None
                self.close("client disconnected", will=False)
        return False

    def _not_connected(self, p: P.Packet) -> bool:
        self.close(f"{type(p).__name__} before CONNECT [MQTT-3.1.0-1]", will=False)
        return False

    def _on_connect(self, c: P.Connect) -> bool:
        verdict = self._authenticate(c)
        if verdict is not True and verdict is not False:  # a bcrypt check: off the loop, input waits
            task = self.loop.create_task(self._finish_connect(c, verdict))
            _CONNECT_TASKS.add(task)
            task.add_done_callback(_CONNECT_TASKS.discard)
            if self.transport is not None:
                self.transport.pause_reading()
            return True
        self._complete_connect(c, verdict)
        return False

    def _authenticate(self, c: P.Connect) -> Any:
        options: dict[str, Any] = {}
        if c.username is not None:
            options["user"] = c.username
        if c.password is not None:
            options["pass"] = c.password.decode("utf-8", errors="replace")
        self.credentials = options
        auth: Any = self.server.authenticator  # edge.security.auth.Authenticator (bind_port_user too)
        if auth is None:
            return True
        mqtt_user = self.listener.settings.no_auth_user
        if c.username is None and c.password is None and mqtt_user is not None:
            return auth.bind_port_user(self, mqtt_user)  # that user's permissions, no password
        # The broker's CONNECT check (counts failures, per-address backoff); this connection has the
        # attributes it reads and sets (host, port, cid, user, permissions).
        return self.server.authenticate(cast("Any", self), options, may_defer=True)

    async def _finish_connect(self, c: P.Connect, check: Any) -> None:
        ok = await asyncio.to_thread(check.run)
        auth = self.server.authenticator
        if self.closed:
            return
        if auth is not None:
            auth.record(check, ok)
        self._complete_connect(c, self._authenticate(c) is True)
        packets, self._waiting = self._waiting or deque(), None
        if not self.closed:
            self._handle_all(list(packets))
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()

    def _complete_connect(self, c: P.Connect, authorized: bool) -> None:
        if not authorized:
            self._refuse(P.REFUSED_NOT_AUTHORIZED, "not authorized")
            return
        client_id = c.client_id or "auto-" + os.urandom(8).hex()  # [MQTT-3.1.3-6]
        self.client_id = client_id
        manager = self.listener.manager
        old = manager.sessions.get(client_id)
        if old is not None and old.conn is not None:
            log.info("mqtt %s - session taken over by a new connection", old.conn.tag)
            old.conn.close("session taken over", will=False)
        session, present = manager.attach(client_id, c.clean_session)
        if session is None:
            self._refuse(P.REFUSED_SERVER_UNAVAILABLE, f"max_sessions ({manager.settings.max_sessions}) reached")
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.connected = True
        self.session = session
        self.will = c.will
        session.conn = self
        # What the session publishes, it publishes for this client (audit records: source_identity).
        who = {"kind": "mqtt", "client_id": client_id, "user": self.user, "ip": self.host}
        session.client.on_behalf_of = {k: v for k, v in who.items() if v}
        session.permissions = self.permissions
        self.keepalive = c.keepalive
        self.send(P.encode_connack(present, P.ACCEPTED))
        if self.keepalive:
            self._timer = self.loop.call_later(self.keepalive * 1.5, self._keepalive_check)
        if present:
            session.resume()

    def _on_publish(self, p: P.Publish) -> None:
        session = self.session
        assert session is not None
        size = len(p.payload)
        self.in_msgs += 1
        self.in_bytes += size
        session.msgs_in += 1
        listener = self.listener
        self.counters.msgs_in += 1
        if size > self.max_payload:
            self.close(f"payload of {size} bytes exceeds max_payload {self.max_payload}", will=True)
            return
        subject = listener.subjects.get(p.topic)
        if subject is None:
            subject = self._convert_topic(p.topic)
            if subject is None:
                return
        if not p.qos and not p.retain and self.permissions is None:
            session.publish(subject, p.payload, 0)  # the common case: what the rest does for it
            return
        ack = P.PUBACK if p.qos == 1 else P.PUBREC
        if p.qos == 2 and session.qos2_seen(p.packet_id):
            self.send(P.encode_ack(P.PUBREC, p.packet_id))  # a resend: routed once already [MQTT-4.3.3-2]
            return
        if self.permissions is not None and not self.permissions.can_publish(subject, None):
            self.counters.publish_denied += 1
            log.info("mqtt %s - publish to %r denied by permissions", self.tag, subject.decode(errors="replace"))
            if p.qos:  # MQTT 3.1.1 has no negative ack: acknowledge, so the device does not resend forever
                self.send(P.encode_ack(ack, p.packet_id))
            return
        if p.retain:
            self.listener.manager.set_retained(p.topic, p.payload, p.qos)
        reply = None
        if p.qos and self.listener.covered(subject):
            reply = ACK_PREFIX + session.ack_token + b".%d" % p.packet_id
            self.listener.ensure_ack_subscription(session)
            self._outbox_acks[p.packet_id] = ack
        if p.qos == 2:
            session.qos2_received(p.packet_id)
        session.publish(subject, p.payload, p.qos, reply)
        if p.qos and reply is None:
            self.send(P.encode_ack(ack, p.packet_id))

    def _convert_topic(self, topic: bytes) -> bytes | None:
        """The subject of a PUBLISH topic, remembered in the listener's bounded cache; None when it has
        none (the connection is closed)."""
        try:
            subject = topic_to_subject(topic)
        except TopicError as exc:
            self.close(f"topic {topic!r}: {exc}", will=True)
            return None
        if not is_valid_literal_subject(subject):
            self.close(f"topic {topic!r} has no NATS subject ({subject!r})", will=True)
            return None
        subjects = self.listener.subjects
        if len(topic) <= P.TOPIC_CACHE_LEN:
            if len(subjects) >= SUBJECT_CACHE_MAX:
                subjects.clear()
            subjects[topic] = subject
        return subject

    def outbox_ack(self, pid: int, ok: bool) -> None:
        """The outbox answered a covered QoS 1/2 publish: durable (ok) or refused (full)."""
        ack = self._outbox_acks.pop(pid, None)
        if ack is None:
            return
        if ok:
            self.counters.outbox_acks += 1
            self.send(P.encode_ack(ack, pid))
        else:
            # No negative ack in 3.1.1: leave it unacknowledged; the device sends it again (DUP) when it
            # reconnects. Closing now makes that happen soon.
            log.warning("mqtt %s - outbox refused packet %d; closing so the device retries", self.tag, pid)
            self.close("outbox refused a publish", will=False)

    def _on_ack(self, p: P.Ack) -> None:
        session = self.session
        assert session is not None
        if p.type == P.PUBREL:
            session.qos2_released(p.packet_id)
            self.send(P.encode_ack(P.PUBCOMP, p.packet_id))  # also for an unknown id [MQTT-4.3.3-2]
        else:
            session.on_ack(p.type, p.packet_id)

    def _on_subscribe(self, p: P.Subscribe) -> None:
        session = self.session
        assert session is not None
        codes = []
        granted: list[tuple[tuple[bytes, ...], int]] = []
        for f, qos in p.filters:
            subjects = self._filter_subjects(f)
            if subjects is None:
                codes.append(P.SUBACK_FAILURE)
                continue
            session.subscribe(f, qos)
            codes.append(qos)
            granted.append((subjects, qos))
        self.send(P.encode_suback(p.packet_id, codes))
        manager = self.listener.manager
        for subjects, qos in granted:  # retained messages after the SUBACK [MQTT-3.3.1-6]
            for topic, payload, rqos in manager.retained_for(subjects):
                session.deliver(topic, payload, min(qos, rqos), True)

    def _filter_subjects(self, f: bytes) -> tuple[bytes, ...] | None:
        """The NATS subjects of a filter, or None: invalid, unconvertible or denied (SUBACK 0x80)."""
        if not is_valid_filter(f):
            return None
        try:
            subjects = filter_subjects(f)
        except TopicError:
            return None
        if not all(is_valid_subject(s) for s in subjects):
            return None
        if self.permissions is not None and not self.permissions.can_subscribe(subjects[0], None):
            self.counters.subscribe_denied += 1
            log.info("mqtt %s - subscription to %r denied by permissions", self.tag, f.decode(errors="replace"))
            return None
        return subjects
