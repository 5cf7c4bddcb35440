"""Internal clients: how adapters and broker services publish and subscribe without a socket.

An :class:`InternalClient` is a connection of kind ``internal``: its publishes go through the same
router as a TCP client's (so subscribers, the outbox and the leaf uplink all see them), and messages
for its subscriptions are handed to a callback, synchronously, on the event loop. Callbacks must not
block; one that needs to do I/O schedules it (and owns the task).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge.core.router import KIND_INTERNAL
from edge.core.subscription import Subscription
from edge.protocol.subjects import is_valid_subject

if TYPE_CHECKING:
    from edge.core.server import Server

log = logging.getLogger("edge.internal")


@dataclass(slots=True)  # not frozen: building a frozen dataclass costs ~2 us more per delivery
class Message:
    """A message delivered to an internal subscription (one per delivery, the callback's to keep).
    ``headers`` is the raw header block or b""; ``source`` the connection or client that published it
    (its ``identity`` says who: see :func:`source_identity`), None when not known."""

    subject: bytes
    reply: bytes | None
    headers: bytes
    payload: bytes
    source: Any = None


def source_identity(source: Any) -> dict[str, Any] | None:
    """Who published a message, for an audit record: the publisher's ``identity`` (a NATS client's
    cid, user, name and address; an MQTT client's id and user; a leaf link's hub; an internal client's
    name), or None when the source is unknown."""
    identity = getattr(source, "identity", None)
    return dict(identity) if isinstance(identity, dict) else None


MessageCallback = Callable[[Message], None]


class InternalClient:
    """A socketless client of the broker, e.g. one per adapter or service."""

    kind = KIND_INTERNAL

    def __init__(self, server: Server, name: str, *, echo: bool = False) -> None:
        self.server = server
        self.name = name
        self.echo = echo
        self.headers = True
        self.closed = False
        self.cid = server.next_client_id()
        self._callbacks: dict[bytes, MessageCallback] = {}
        self.subs: dict[bytes, Subscription] = {}
        self._next_sid = 0
        self.in_msgs = 0
        self.out_msgs = 0
        # Whom this client publishes for, when not itself (an MQTT session: its connection's client).
        self.on_behalf_of: dict[str, Any] | None = None

    @property
    def identity(self) -> dict[str, Any]:
        return self.on_behalf_of or {"kind": "internal", "name": self.name}

    def publish(
        self, subject: bytes, payload: bytes, *, reply: bytes | None = None, headers: bytes = b""
    ) -> int:
        """Route a message; returns how many receivers it reached. ``headers`` is a raw NATS header block."""
        if self.closed:
            return 0
        self.in_msgs += 1
        router = self.server.router
        router.in_msgs += 1
        router.in_bytes += len(headers) + len(payload)
        if headers:
            return router.route(self, subject, reply, len(headers), headers + payload)
        return router.route(self, subject, reply, 0, payload)

    def subscribe(self, subject: bytes, callback: MessageCallback, *, queue: bytes | None = None) -> Subscription:
        """Subscribe; raises ValueError for an invalid subject."""
        if not is_valid_subject(subject):
            raise ValueError(f"invalid subject {subject!r}")
        self._next_sid += 1
        sid = b"%d" % self._next_sid
        sub = Subscription(self, subject, queue, sid)
        self.subs[sid] = sub
        self._callbacks[sid] = callback
        self.server.add_subscription(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self.subs.pop(sub.sid, None) is not None:
            self._callbacks.pop(sub.sid, None)
            self.server.remove_subscriptions([sub])

    def remove_subscription(self, sub: Subscription) -> None:
        self.unsubscribe(sub)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes,
                src: Any = None) -> None:
        callback = self._callbacks.get(sub.sid)
        if callback is None:
            return
        self.out_msgs += 1
        msg = Message(subject, reply, data[:hdr_len], data[hdr_len:], src)
        try:
            callback(msg)
        except Exception:
            # A faulty service or adapter must not break the publisher's connection.
            log.exception("internal client %s: subscription callback for %s failed", self.name, subject)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        subs = list(self.subs.values())
        self.subs.clear()
        self._callbacks.clear()
        self.server.remove_subscriptions(subs)
