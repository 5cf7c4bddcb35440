"""MQTT sessions and retained messages: where MQTT meets the broker's router.

Each session owns one :class:`~edge.core.internal.InternalClient` (the broker's socketless client, as
adapters use): its PUBLISHes go through the router like any client's (local subscribers, the leaf
uplink, the outbox), and each topic filter is one ordinary subscription on the converted subject
(``a/#`` also on ``a``). A persistent session keeps its subscriptions while no connection is attached,
so QoS 1/2 messages queue (bounded) and reach the device when it reconnects.

A message's MQTT QoS travels in a ``Nmqtt-Pub: <qos>`` header, as nats-server writes it, so a QoS 1
publish reaching another MQTT session (here or through the hub) is delivered at QoS 1; a plain NATS
message is QoS 0. Delivery QoS is min(message QoS, granted QoS) [MQTT-3.8.4-6].
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from edge.mqtt.store import Journal, SessionState, StoredMessage
from edge.protocol import mqtt as P
from edge.protocol.mqtt_topics import filter_subjects, reserved_wildcard, subject_to_topic
from edge.protocol.subjects import subject_matches

if TYPE_CHECKING:
    from edge.config.mqtt import MQTTSettings
    from edge.core.internal import InternalClient, Message
    from edge.core.server import Server
    from edge.core.subscription import Subscription
    from edge.mqtt.connection import MQTTConnection

log = logging.getLogger("edge.mqtt")

QOS_HEADER: Final = b"Nmqtt-Pub:"
TOPIC_CACHE_MAX: Final = 4096  # subject -> MQTT topic conversions the manager remembers (short subjects)
_HEADERS: Final = tuple(b"NATS/1.0\r\nNmqtt-Pub:%d\r\n\r\n" % q for q in range(3))
_HEADER_QOS: Final = {h: q for q, h in enumerate(_HEADERS)}  # the common header blocks, parsed once


def message_qos(headers: bytes) -> int:
    """The MQTT QoS a NATS message carries (``Nmqtt-Pub`` header), 0 without one."""
    if not headers:
        return 0
    i = headers.find(QOS_HEADER)
    if i < 0:
        return 0
    rest = headers[i + len(QOS_HEADER):i + len(QOS_HEADER) + 2].strip()
    return min(2, rest[0] - 48) if rest and 48 <= rest[0] <= 50 else 0


@dataclass(slots=True)
class Counters:
    """Counted drops and totals of the MQTT listener (for /varz, /metrics and ``nats-edge mqtt``)."""

    total_connections: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    dropped_session_full: int = 0  # oldest queued message dropped: max_session_msgs
    dropped_store_full: int = 0  # message not queued / retained not kept: max_store_bytes
    dropped_retained_full: int = 0  # new retained topic not kept: max_retained
    publish_denied: int = 0
    subscribe_denied: int = 0
    sessions_refused: int = 0  # max_sessions
    redelivered: int = 0
    outbox_acks: int = 0  # QoS 1/2 publishes acknowledged once the outbox had them durably


class Session:
    """One MQTT session (clean or persistent); a connection is attached while the device is online."""

    def __init__(self, manager: SessionManager, state: SessionState, persistent: bool) -> None:
        self.manager = manager
        self.state = state
        self.persistent = persistent
        self.client: InternalClient = manager.server.internal_client(f"mqtt:{state.client_id}", echo=True)
        self.conn: MQTTConnection | None = None
        self.subs: dict[bytes, list[Subscription]] = {}
        self.inflight: dict[int, StoredMessage] = {}  # packet id -> sent, not yet completed
        self.unsent: deque[StoredMessage] = deque()  # queued without a packet id yet, oldest first
        self._next_pid = 0
        self.permissions: Any = None
        self.ack_token = os.urandom(6).hex().encode()  # names this session's outbox-ack replies
        self.ack_sub: Subscription | None = None
        self.stalled = False  # no ack since the last ack_wait tick (edge.mqtt.listener)
        self.first_seen = time.time()  # this process's first sight of the session (device list)
        self.last_seen = self.first_seen
        self.msgs_in = 0  # PUBLISHes received from the device

    @property
    def client_id(self) -> str:
        return self.state.client_id

    # -- subscriptions --------------------------------------------------------------------------

    def subscribe(self, topic_filter: bytes, qos: int) -> None:
        """(Re)subscribe ``topic_filter`` at ``qos``; the filter was converted and checked by the caller."""
        self.unsubscribe(topic_filter, persist=False)
        subs = []
        for subject in filter_subjects(topic_filter):
            no_dollar = reserved_wildcard(subject)
            subs.append(self.client.subscribe(subject, self._callback(qos, no_dollar)))
        self.subs[topic_filter] = subs
        self.state.subs[topic_filter] = qos
        if self.persistent:
            self.manager.journal.session(self.state)

    def unsubscribe(self, topic_filter: bytes, *, persist: bool = True) -> bool:
        subs = self.subs.pop(topic_filter, None)
        if subs is None:
            return False
        for sub in subs:
            self.client.unsubscribe(sub)
        self.state.subs.pop(topic_filter, None)
        if persist and self.persistent:
            self.manager.journal.session(self.state)
        return True

    def drop_denied_subscriptions(self) -> list[bytes]:
        """After the permissions changed (a reload): remove the subscriptions they no longer allow, as
        the SUBSCRIBE check would refuse them now; returns their filters. MQTT has no way to tell the
        client; the caller logs them."""
        perms = self.permissions
        if perms is None:
            return []
        denied = [f for f in self.subs if not perms.can_subscribe(filter_subjects(f)[0], None)]
        for f in denied:
            self.unsubscribe(f)
        return denied

    def _callback(self, granted: int, no_dollar: bool) -> Callable[[Message], None]:
        def on_message(msg: Message) -> None:
            subject = msg.subject
            if no_dollar and subject[:1] == b"$":
                return  # [MQTT-4.7.2-1]: wildcards at the first level never match $-topics
            perms = self.permissions
            if perms is not None and perms.rules.deny_filter and perms.rules.delivery_denied(subject):
                return
            topics = self.manager.topics
            topic = topics.get(subject)
            if topic is None:
                topic = subject_to_topic(subject)
                if len(subject) <= P.TOPIC_CACHE_LEN:
                    if len(topics) >= TOPIC_CACHE_MAX:
                        topics.clear()
                    topics[subject] = topic
            qos = (_HEADER_QOS.get(msg.headers) or message_qos(msg.headers)) if granted else 0
            if qos:
                self.deliver(topic, msg.payload, min(qos, granted), False)
            elif self.conn is not None:  # QoS 0: what deliver does for it, without the call
                self.conn.send_publish(topic, msg.payload, 0, False, False, 0)

        return on_message

    # -- delivery -------------------------------------------------------------------------------

    def deliver(self, topic: bytes, payload: bytes, qos: int, retain: bool) -> None:
        conn = self.conn
        if qos == 0:
            if conn is not None:
                conn.send_publish(topic, payload, 0, retain, False, 0)
            return
        m = self.manager.queue(self, topic, payload, qos, retain)
        if m is None:
            return
        if conn is not None and not self.unsent and len(self.inflight) < self.manager.settings.max_ack_pending:
            self._send(m, dup=False)
        else:
            self.unsent.append(m)

    def _send(self, m: StoredMessage, *, dup: bool) -> None:
        conn = self.conn
        assert conn is not None
        if not m.pid:
            m.pid = self._new_pid()
            if self.persistent:
                self.manager.journal.sent(self.state, m)
        self.inflight[m.pid] = m
        if m.released:
            conn.send(P.encode_ack(P.PUBREL, m.pid))
        else:
            conn.send_publish(m.topic, m.payload, m.qos, m.retain, dup, m.pid)

    def _new_pid(self) -> int:
        for _ in range(65535):
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self.inflight:
                return self._next_pid
        raise RuntimeError("no free packet id")  # cannot happen: max_ack_pending <= 65535

    def _fill(self) -> None:
        """Send queued messages, oldest first, while the in-flight window has room."""
        if self.conn is None:
            return
        window = self.manager.settings.max_ack_pending
        messages = self.state.messages
        unsent = self.unsent
        while unsent and len(self.inflight) < window:
            m = unsent.popleft()
            if m.mid in messages:  # not dropped meanwhile
                self._send(m, dup=False)

    def resume(self) -> None:
        """A connection attached: resend what was in flight (DUP, or PUBREL), then what queued [MQTT-4.4.0-1].
        Packet ids are given only inside the window, so every message that has one fits in it again."""
        self.inflight.clear()
        self.unsent.clear()
        for m in self.state.messages.values():
            if m.pid:
                self.manager.counters.redelivered += 1
                self._send(m, dup=True)
            else:
                self.unsent.append(m)
        self._fill()

    def redeliver_expired(self) -> None:
        """ack_wait passed without PUBACK/PUBREC/PUBCOMP: send the in-flight messages again (DUP)."""
        if self.conn is None:
            return
        for m in list(self.inflight.values()):
            self.manager.counters.redelivered += 1
            self._send(m, dup=True)

    def on_ack(self, ptype: int, pid: int) -> None:
        """PUBACK / PUBREC / PUBCOMP from the device for a message we sent."""
        m = self.inflight.get(pid)
        conn = self.conn
        self.stalled = False
        if m is None:
            if ptype == P.PUBREC and conn is not None:
                conn.send(P.encode_ack(P.PUBREL, pid))  # a PUBREC we already answered: answer again
            return
        if ptype == P.PUBREC and m.qos == 2:
            if not m.released:
                m.released = True
                if self.persistent:
                    self.manager.journal.released(self.state, m)
            if conn is not None:
                conn.send(P.encode_ack(P.PUBREL, pid))
            return
        if (ptype == P.PUBACK and m.qos == 1) or (ptype == P.PUBCOMP and m.qos == 2):
            del self.inflight[pid]
            self.manager.complete(self, m)
            self._fill()

    # -- inbound QoS 2 --------------------------------------------------------------------------

    def qos2_seen(self, pid: int) -> bool:
        return pid in self.state.qos2_in

    def qos2_received(self, pid: int) -> None:
        self.state.qos2_in.add(pid)
        if self.persistent:
            self.manager.journal.qos2_received(self.state, pid)

    def qos2_released(self, pid: int) -> None:
        if pid in self.state.qos2_in:
            self.state.qos2_in.discard(pid)
            if self.persistent:
                self.manager.journal.qos2_received(self.state, pid, released=True)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, subject: bytes, payload: bytes, qos: int, reply: bytes | None = None) -> None:
        self.client.publish(subject, payload, reply=reply, headers=_HEADERS[qos])

    def close(self) -> None:
        self.client.close()
        self.subs.clear()
        self.ack_sub = None


class SessionManager:
    """The sessions by client id, the retained messages and the journal that keeps both on disk."""

    def __init__(self, server: Server, settings: MQTTSettings, directory: str) -> None:
        self.server = server
        self.settings = settings
        self.directory = directory
        self.journal = Journal(directory, server.loop, settings.fsync_interval)
        self.sessions: dict[str, Session] = {}
        self.counters = Counters()
        self.live_bytes = 0
        self.topics: dict[bytes, bytes] = {}  # message subject -> MQTT topic (Session._callback)

    @property
    def retained(self) -> dict[bytes, tuple[bytes, int]]:
        return self.journal.state.retained

    def restore(self) -> None:
        """Re-subscribe every persistent session of the (opened) journal; on the loop, before listening."""
        state = self.journal.state
        for ss in state.sessions.values():
            session = Session(self, ss, persistent=True)
            for f, q in ss.subs.items():
                session.subs[f] = [session.client.subscribe(s, session._callback(q, reserved_wildcard(s)))
                                   for s in filter_subjects(f)]
            session.unsent.extend(m for m in ss.messages.values() if not m.pid)
            self.sessions[ss.client_id] = session
            self.live_bytes += sum(m.size for m in ss.messages.values())
        self.live_bytes += sum(len(t) + len(p) + 32 for t, (p, _) in state.retained.items())
        log.info("MQTT state %s: %d persistent sessions, %d retained messages", self.journal.path,
                 len(state.sessions), len(state.retained))

    async def close(self) -> None:
        for s in self.sessions.values():
            s.close()
        await self.journal.close()

    # -- sessions -------------------------------------------------------------------------------

    def attach(self, client_id: str, clean: bool) -> tuple[Session | None, bool]:
        """The session for a CONNECT: (session or None when max_sessions is reached, session present)."""
        old = self.sessions.get(client_id)
        if clean:
            if old is not None:
                self.drop(old)
            session = Session(self, SessionState(client_id), persistent=False)
            self.sessions[client_id] = session
            return session, False
        if old is not None and old.persistent:
            return old, True
        if old is not None:
            self.drop(old)
        if sum(1 for s in self.sessions.values() if s.persistent) >= self.settings.max_sessions:
            self.counters.sessions_refused += 1
            return None, False
        state = SessionState(client_id)
        self.journal.state.sessions[client_id] = state
        session = Session(self, state, persistent=True)
        self.sessions[client_id] = session
        self.journal.session(state)
        return session, False

    def drop(self, session: Session) -> None:
        """Forget a session: its subscriptions leave the router, a persistent one leaves the disk."""
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        session.close()
        if session.persistent:
            self.live_bytes -= sum(m.size for m in session.state.messages.values())
            self.journal.state.sessions.pop(session.client_id, None)
            self.journal.delete_session(session.state)

    # -- queued messages ------------------------------------------------------------------------

    def queue(self, session: Session, topic: bytes, payload: bytes, qos: int, retain: bool) -> StoredMessage | None:
        """Add a QoS 1/2 message to a session (on disk if persistent); None if it was dropped (counted)."""
        st = session.state
        m = StoredMessage(st.next_mid, topic, payload, qos, retain)
        if session.persistent and self.live_bytes + m.size > self.settings.max_store_bytes:
            self.counters.dropped_store_full += 1
            return None
        if len(st.messages) >= self.settings.max_session_msgs:
            # Drop the oldest message not in flight (an in-flight one must still complete its flow).
            self.counters.dropped_session_full += 1
            unsent = session.unsent
            while unsent and unsent[0].mid not in st.messages:
                unsent.popleft()
            if not unsent:
                return None
            self.complete(session, unsent.popleft())
        st.next_mid += 1
        st.messages[m.mid] = m
        if session.persistent:
            self.live_bytes += m.size
            self.journal.message(st, m)
        return m

    def complete(self, session: Session, m: StoredMessage) -> None:
        st = session.state
        if st.messages.pop(m.mid, None) is None:
            return
        if session.persistent:
            self.live_bytes -= m.size
            self.journal.done(st, m)

    # -- retained -------------------------------------------------------------------------------

    def set_retained(self, topic: bytes, payload: bytes, qos: int) -> None:
        """Keep (or, with an empty payload, clear) the retained message of ``topic`` [MQTT-3.3.1-5/10/11]."""
        old = self.retained.get(topic)
        previous = len(topic) + len(old[0]) + 32 if old is not None else 0
        if not payload:
            if old is not None:
                del self.retained[topic]
                self.live_bytes -= previous
                self.journal.clear_retained(topic, previous)
            return
        if old is None and len(self.retained) >= self.settings.max_retained:
            self.counters.dropped_retained_full += 1
            return
        size = len(topic) + len(payload) + 32
        if self.live_bytes - previous + size > self.settings.max_store_bytes:
            self.counters.dropped_store_full += 1
            return
        self.retained[topic] = (payload, qos)
        self.live_bytes += size - previous
        self.journal.retain(topic, payload, qos, previous)

    def retained_for(self, subjects: tuple[bytes, ...]) -> list[tuple[bytes, bytes, int]]:
        """Retained (topic, payload, qos) whose subject one of ``subjects`` (a filter's) matches."""
        from edge.protocol.mqtt_topics import TopicError, topic_to_subject

        out = []
        no_dollar = reserved_wildcard(subjects[0])
        for topic, (payload, qos) in self.retained.items():
            if no_dollar and topic[:1] == b"$":
                continue
            try:
                subject = topic_to_subject(topic)
            except TopicError:
                continue
            if any(subject_matches(s, subject) for s in subjects):
                out.append((topic, payload, qos))
        return out
