"""Message routing: one published message to every matching subscriber, synchronously.

The router is the hot path of the broker. For each message it looks the subject up in the
subscription index's cache, writes the ``MSG``/``HMSG`` frame into each matching client's outbound
buffer (:class:`~edge.core.outbound.OutboundBuffer`, one member per queue group), and marks those
clients for the once-per-loop-turn flush. The frame's parts (edge.protocol.encode) are built once per
message and shared by all subscribers; only the sid differs.

Subscribers that are not client connections (leaf links, internal clients of adapters and system
services) get a ``deliver()`` call instead. Publish hooks (the outbox, the leaf uplink) see every
message after local delivery and add to the delivered count (for no-responders).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from edge.core.sublist import EMPTY_MATCH, Match, SubscriptionIndex
from edge.protocol.encode import HMSG_HEAD, HMSG_TAIL, HMSG_TAIL_REPLY, MSG_HEAD, MSG_TAIL, MSG_TAIL_REPLY

if TYPE_CHECKING:
    from edge.core.subscription import Subscription

# A hook sees (source, subject, reply, header_len, data, match) and returns how many receivers it
# reached (0 or more). Hooks run after local delivery, in registration order.
PublishHook = Callable[[Any, bytes, "bytes | None", int, bytes, Match], int]

KIND_CLIENT: Final = 0
KIND_LEAF: Final = 1
KIND_INTERNAL: Final = 2


class Router:
    """Routes messages through a :class:`SubscriptionIndex` into connections' outbound buffers."""

    __slots__ = (
        "_cache",
        "_dirty",
        "_schedule_flush",
        "cache_hits",
        "hooks",
        "in_bytes",
        "in_msgs",
        "out_bytes",
        "out_msgs",
        "sublist",
    )

    def __init__(self, sublist: SubscriptionIndex, schedule_flush: Callable[[], None]) -> None:
        self.sublist = sublist
        self._cache = sublist._cache  # read directly on the hot path; cleared in place by the index
        self._dirty: list[Any] = []
        self._schedule_flush = schedule_flush
        self.hooks: list[PublishHook] = []
        # Hits of the lookup below, which bypasses SubscriptionIndex.match (and so its counters) on
        # a hit; see match_stats().
        self.cache_hits = 0
        self.in_msgs = 0
        self.in_bytes = 0
        self.out_msgs = 0
        self.out_bytes = 0

    def match_stats(self) -> tuple[int, int]:
        """(matches, cache hits) over the router's lookups and direct SubscriptionIndex.match calls."""
        sl = self.sublist
        return sl.matches + self.cache_hits, sl.cache_hits + self.cache_hits

    def take_dirty(self) -> list[Any]:
        """The connections with queued output since the last call (each once)."""
        dirty = self._dirty
        self._dirty = []
        return dirty

    def mark_dirty(self, conn: Any) -> None:
        """``conn``'s empty outbound buffer got its first bytes: flush it this loop turn."""
        self._dirty.append(conn)
        self._schedule_flush()

    def route(
        self,
        src: Any,
        subject: bytes,
        reply: bytes | None,
        hdr_len: int,
        data: bytes,
        queues: list[bytes] | None = None,
    ) -> int:
        """Deliver one message; return the number of receivers reached (local + hooks).

        ``queues`` restricts queue-group delivery to the named groups (a message from a leaf link
        names the groups it is meant for; an empty list reaches no queue group: docs 3.5).
        The caller counts the message into :attr:`in_msgs`/:attr:`in_bytes` (clients do it once
        per read rather than once per message).
        """
        m = self._cache.get(subject)
        if m is None:
            m = self.sublist.match(subject)
        else:
            self.cache_hits += 1
        if m is EMPTY_MATCH:
            delivered = 0
        else:
            if queues is not None and m.queues:
                m = Match(m.plain, [g for g in m.queues if g.name in queues])
            delivered = self._deliver(src, subject, reply, hdr_len, data, m)
        if self.hooks:
            for hook in self.hooks:
                delivered += hook(src, subject, reply, hdr_len, data, m)
        return delivered

    def _deliver(
        self, src: Any, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes, m: Match
    ) -> int:
        delivered = 0
        dirty = self._dirty
        was_clean = not dirty
        size = len(data)
        # The frame in a head shared by every message on this subject, the sid, and a tail shared by
        # every subscriber of this message: edge.protocol.encode's formats, applied inline (no call).
        # Made at the first client subscriber: internal clients and links take the message unframed.
        head = tail = b""
        plain_tail: bytes | None = None  # for subscribers without header support, made on demand
        frame_len = 0
        targets: list[Subscription] = m.plain
        if m.queues:
            targets = list(targets)
            for group in m.queues:
                member = self._pick(group, src)
                if member is not None:
                    targets.append(member)
        for sub in targets:
            c = sub.conn
            if c is src and not c.echo:
                continue
            if c.kind:  # not a client connection: a leaf link, an internal client or a permission filter
                if not src.echo and src is getattr(c, "owner", None):
                    continue  # a filter (edge.security.permissions) standing in for the publisher itself
                c.deliver(sub, subject, reply, hdr_len, data, src)
                delivered += 1
                sub.delivered += 1
                continue
            # OutboundBuffer.add_parts, inline over the buffer's slots: the one deliberate exception to
            # "use the buffer's methods" (a call per subscriber costs measurable throughput). The
            # rules are the buffer's: skip when closed, mark dirty on the first chunk (one scheduled
            # flush per _deliver), count, and hand a buffer past its limit to its overflow policy.
            b = c.outbound
            chunks = b.chunks
            if not chunks:
                if b.closed:
                    continue
                dirty.append(c)
            if not frame_len:
                if hdr_len:
                    head = HMSG_HEAD % subject
                    if reply:
                        tail = HMSG_TAIL_REPLY % (reply, hdr_len, size, data)
                    else:
                        tail = HMSG_TAIL % (hdr_len, size, data)
                else:
                    cached = m.head
                    if cached is None:
                        cached = m.head = MSG_HEAD % subject
                    head = cached
                    if reply:
                        tail = MSG_TAIL_REPLY % (reply, size, data)
                    else:
                        tail = MSG_TAIL % (size, data)
                    plain_tail = tail
                frame_len = len(head) + len(tail)
            sid = sub.sid
            if hdr_len and not c.options.headers:
                if plain_tail is None:
                    payload = data[hdr_len:]
                    if reply:
                        plain_tail = MSG_TAIL_REPLY % (reply, len(payload), payload)
                    else:
                        plain_tail = MSG_TAIL % (len(payload), payload)
                h = MSG_HEAD % subject
                chunks += (h, sid, plain_tail)
                b.size += len(h) + len(sid) + len(plain_tail)
            else:
                chunks += (head, sid, tail)
                b.size += frame_len + len(sid)
            b.msgs += 1
            b.bytes += size
            delivered += 1
            sub.delivered += 1
            if b.size > b.limit:
                b.overflow()
            if sub.max_msgs and sub.delivered >= sub.max_msgs:
                c.remove_subscription(sub)
        self.out_msgs += delivered
        self.out_bytes += delivered * size
        if was_clean and dirty:
            self._schedule_flush()
        return delivered

    @staticmethod
    def _pick(group: Any, src: Any) -> Subscription | None:
        """One member of a queue group, round robin, skipping the publisher itself when echo is off."""
        members = group.members
        for _ in range(len(members)):
            sub = group.pick()
            c = sub.conn
            if c.closed or (c is src and not c.echo):
                continue
            if c.kind and not src.echo and src is getattr(c, "owner", None):
                continue  # a permission filter standing in for the publisher itself
            return sub
        return None
