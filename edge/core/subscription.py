"""A subscription: who receives which subject, under which sid, with what limit."""

from __future__ import annotations

from typing import Any


class Subscription:
    """One SUB of one connection.

    ``conn`` is the owning connection (a client, a leaf link or an internal client); it must have
    a ``deliver(sub, subject, reply, header_len, data)`` method unless it is a client connection,
    which the router writes to directly for speed. ``max_msgs`` is the auto-unsubscribe limit
    (UNSUB sid max), ``delivered`` counts messages sent to it.
    """

    __slots__ = ("conn", "delivered", "max_msgs", "queue", "sid", "subject")

    def __init__(self, conn: Any, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        self.conn = conn
        self.subject = subject
        self.queue = queue
        self.sid = sid
        self.max_msgs = 0  # 0 = no auto-unsubscribe
        self.delivered = 0

    def __repr__(self) -> str:
        q = f" {self.queue.decode(errors='replace')}" if self.queue else ""
        return f"<Subscription {self.subject.decode(errors='replace')}{q} sid={self.sid.decode(errors='replace')}>"
