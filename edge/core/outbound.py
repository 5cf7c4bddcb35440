"""A connection's outbound buffer: the one place output is queued, bounded, counted and marked for flush.

Theory of operation. Everything a connection writes during a loop turn (messages from the router,
protocol lines such as ``PONG``, ``+OK``, ``-ERR``, ``INFO``, ``LS+``) is appended here as byte strings;
the first append of a turn marks the owner dirty (``Router.mark_dirty``) and the server's flush cycle
calls the owner's ``flush()`` once at the end of the turn, which writes :meth:`take` with one
``transport.write``. Order is the order of appends.

The bound, ``limit``, is what is left of ``max_pending`` after what the transport itself still buffers
(nats-server's max_pending, server/const.go MAX_PENDING_SIZE 64 MiB: docs/nats-protocol.md 4.1).
Two policies, chosen by the owner:

* ``on_overflow`` given (client connections): a message is always queued, and if the buffer is then
  past ``limit`` the owner is told (it closes as a slow consumer, counted by the server; nats-server
  does the same and never drops silently).
* no ``on_overflow`` (the leaf link): a message offered while the buffer is already at ``limit`` is
  refused (:meth:`add_msg` returns False) and the caller counts the drop (``dropped_slow``).

Protocol lines (:meth:`append`) are never refused: each answers one op the peer sent, so they are
bounded by the input, and the flush's check of the transport backlog still applies.

``msgs``/``bytes`` count the messages queued and their header+payload bytes (``/connz`` out_msgs,
out_bytes). The router's per-subscriber loop does what :meth:`add_parts` does inline over these slots
(``Router._deliver``, the one deliberate exception, for speed); every rule it applies lives here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class OutboundBuffer:
    """Queued output of one connection (``owner``), flushed once per loop turn."""

    __slots__ = ("_mark_dirty", "bytes", "chunks", "closed", "limit", "max_pending", "msgs", "on_overflow",
                 "owner", "size")

    def __init__(
        self,
        owner: Any,
        mark_dirty: Callable[[Any], None],
        max_pending: int,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        """``mark_dirty(owner)`` schedules the owner's ``flush()`` for the end of this loop turn;
        ``on_overflow`` (see the module docstring) chooses the close-on-overflow policy."""
        self.owner = owner
        self._mark_dirty = mark_dirty
        self.chunks: list[bytes] = []
        self.size = 0  # bytes in chunks
        self.max_pending = max_pending
        self.limit = max_pending  # max_pending minus what the transport still buffers
        self.on_overflow = on_overflow
        self.msgs = 0
        self.bytes = 0
        self.closed = False

    def __len__(self) -> int:
        return self.size

    # -- queueing -------------------------------------------------------------------------------

    def append(self, data: bytes) -> None:
        """Queue a protocol line (or any bytes not counted as a message). Ignored once closed."""
        if self.closed:
            return
        if not self.chunks:
            self._mark_dirty(self.owner)
        self.chunks.append(data)
        self.size += len(data)

    def add_msg(self, frame: bytes, nbytes: int) -> bool:
        """Queue one message frame carrying ``nbytes`` of headers+payload, counted in :attr:`msgs` and
        :attr:`bytes`. Returns False when it was not queued (closed, or refused because the buffer is
        full and there is no ``on_overflow``); True otherwise, even if it triggered ``on_overflow``."""
        if self.closed:
            return False
        if self.on_overflow is None and self.size >= self.limit:
            return False
        if not self.chunks:
            self._mark_dirty(self.owner)
        self.chunks.append(frame)
        self.size += len(frame)
        self.msgs += 1
        self.bytes += nbytes
        if self.size > self.limit:
            self.overflow()
        return True

    def add_parts(self, head: bytes, sid: bytes, tail: bytes, nbytes: int) -> bool:
        """:meth:`add_msg` for a frame in the router's three shared parts (no join, no copy)."""
        if self.closed:
            return False
        if self.on_overflow is None and self.size >= self.limit:
            return False
        if not self.chunks:
            self._mark_dirty(self.owner)
        self.chunks += (head, sid, tail)
        self.size += len(head) + len(sid) + len(tail)
        self.msgs += 1
        self.bytes += nbytes
        if self.size > self.limit:
            self.overflow()
        return True

    def add_batch(self, data: bytes, count: int, nbytes: int) -> None:
        """Queue ``count`` already framed messages in one chunk (the forwarder's batches); counted like
        :meth:`add_msg`. The caller checked :attr:`room` first."""
        if self.closed:
            return
        if not self.chunks:
            self._mark_dirty(self.owner)
        self.chunks.append(data)
        self.size += len(data)
        self.msgs += count
        self.bytes += nbytes

    def overflow(self) -> None:
        """The buffer went past :attr:`limit`: apply the owner's policy (close as slow consumer)."""
        if self.on_overflow is not None:
            self.on_overflow()

    @property
    def room(self) -> int:
        """Bytes that may still be queued before :attr:`limit` (negative when past it)."""
        return self.limit - self.size

    # -- flushing -------------------------------------------------------------------------------

    def take(self) -> bytes:
        """Everything queued, joined, and the buffer emptied (for the owner's one write per turn)."""
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data

    def written(self, backlog: int) -> None:
        """After a write the transport still buffers ``backlog`` bytes: the room for the next turn is
        what is left of ``max_pending``; already past it is an overflow (nats-server: slow consumer)."""
        self.limit = self.max_pending - backlog
        if backlog > self.max_pending:
            self.overflow()

    def set_max_pending(self, max_pending: int, backlog: int) -> None:
        """A new ``max_pending`` (configuration reload); ``backlog`` as in :meth:`written`."""
        self.max_pending = max_pending
        self.limit = max_pending - backlog

    def discard(self) -> None:
        """Drop what is queued (slow consumer: nats-server does not flush to it)."""
        self.chunks.clear()
        self.size = 0

    def close(self) -> None:
        """Drop what is queued and ignore everything queued from now on."""
        self.closed = True
        self.discard()
