"""Store-and-forward: covered local publishes go into the outbox first, then up the leaf link from it.

Data flow. A router publish hook (:meth:`Forwarder._on_publish`) appends every local message on a
covered subject (``[store_forward] subjects``) to the :class:`~edge.store.async_outbox.AsyncOutbox`,
whether the link is up or not; local subscribers already got it from the router. The leaf uplink
skips covered subjects (``Uplink.skip_upstream``), so the outbox is the only way up and there is one
order. Messages from the hub are never stored. A publish with a reply subject is answered once its
record is durable (``{"stream": ..., "seq": N}``, like a JetStream PubAck) or, when the store is
full under ``reject_new``, with ``{"error": {"code": 503, ...}}``, JetStream's PubAck error shape. A
record the disk refused (ENOSPC, EIO: see :mod:`edge.store.log`) is answered at once with
``{"error": {"code": 503, "description": "outbox disk full (ENOSPC: No space left on device)"}}`` and
is never stored later, so a publisher may safely publish it again. Only durable records are forwarded.

The drain task waits for the link, then reads the outbox in seq order from the last confirmed
position and queues records on the link as ``HMSG`` with a ``Nats-Msg-Id: <gateway>-<seq>`` header,
paced by a token bucket (``replay_rate``, burst 1/10 s) in batches of ``batch``. It reads ahead
(:data:`READ_AHEAD_BATCHES` batches per read, so one reader-thread hop per several batches when the
records come from disk) and frames each batch as one chunk of bytes queued on the link at once.
Confirmation:

* ``pong``: after each batch a PING; its PONG (PONGs answer PINGs in order) confirms the batch. At most
  :data:`MAX_PONG_BATCHES` batches are unconfirmed. On link loss the unconfirmed ones are sent again
  after reconnect, so the hub may see duplicates (same ``Nats-Msg-Id``).
* ``jetstream``: each record is a request with reply ``_SF.<id>.<seq>`` (subscribed by an internal
  client, so the uplink advertises it to the hub) to the subject a hub stream captures; the stream's
  PubAck (also ``"duplicate": true``) acknowledges it, and the outbox is confirmed up to the first
  record not yet acknowledged. Records not acknowledged within :data:`ACK_WAIT` are sent again; the
  stream's duplicate window drops the copies.

The pacing and confirmation state are the pure classes :class:`TokenBucket`, :class:`PongWindow` and
:class:`AckWindow`; :class:`Forwarder` is the asyncio shell.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

from edge.core.router import KIND_LEAF
from edge.protocol.encode import encode_lmsg
from edge.protocol.subjects import subject_matches
from edge.store.async_outbox import AsyncOutbox
from edge.store.log import BUSY, DISK_FULL, FULL, SPACE_ERRNOS, OutboxOptions
from edge.store.record import Record, RecordTooLargeError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from edge.config.store_forward import StoreForwardSettings
    from edge.core.internal import InternalClient, Message
    from edge.core.outbound import OutboundBuffer
    from edge.core.server import Server
    from edge.core.sublist import Match

class HubLink(Protocol):
    """What the forwarder needs of one leaf connection to the hub (edge.leaf.link.LeafLink has it)."""

    state: str
    closed: bool
    closed_fut: asyncio.Future[str]
    paused: bool
    hub_headers: bool
    pongs_in: int
    outbound: OutboundBuffer

    def send_ping(self) -> int: ...


class HubUplink(Protocol):
    """What the forwarder needs of the leaf uplink (edge.leaf.uplink.Uplink has it): the current link,
    an event set while one is up, and two hooks it installs (skip covered subjects, see every PONG)."""

    link: Any
    connected_event: asyncio.Event
    skip_upstream: Callable[[bytes], bool] | None
    pong_hook: Callable[[Any], None] | None


__all__ = ["AckWindow", "Forwarder", "ForwarderStats", "PongWindow", "TokenBucket", "with_msg_id"]

log = logging.getLogger("edge.store")

MAX_PONG_BATCHES: Final = 4
ACK_WAIT: Final = 5.0  # seconds before unacknowledged jetstream records are sent again
MAX_DEFERRED: Final = 20_000  # covered publishes held while the writer is behind (BUSY); beyond: rejected
MAX_PENDING_ACKS: Final = 200_000  # publisher acks waiting for durability; beyond: not answered (counted)
MAX_BATCH_BYTES: Final = 1024 * 1024
READ_AHEAD_BATCHES: Final = 4  # records read from the outbox at a time: this many batches ...
READ_AHEAD_BYTES: Final = 2 * MAX_BATCH_BYTES  # ... or about this many bytes
COVER_CACHE: Final = 4096
ID_FILE: Final = "gateway.id"
INBOX_PREFIX: Final = b"_SF."


def with_msg_id(headers: bytes, msg_id: bytes) -> bytes:
    """The header block with ``Nats-Msg-Id`` added (a publisher's own Nats-Msg-Id is kept)."""
    if not headers or not headers.endswith(b"\r\n\r\n") or not headers.startswith(b"NATS/1.0"):
        return b"NATS/1.0\r\nNats-Msg-Id: " + msg_id + b"\r\n\r\n"
    if b"\r\nnats-msg-id:" in headers.lower():
        return headers
    return headers[:-2] + b"Nats-Msg-Id: " + msg_id + b"\r\n\r\n"


class TokenBucket:
    """Records/s pacing. ``rate`` 0 = unlimited. ``delay(n, now)`` takes n tokens, returns seconds to wait."""

    def __init__(self, rate: int, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self.tokens = float(self.burst)
        self.last = 0.0

    def delay(self, n: int, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        if self.last:
            self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class PongWindow:
    """Pong-mode confirmation: batches sent, each followed by a PING with an ordinal."""

    def __init__(self, confirmed: int, max_batches: int = MAX_PONG_BATCHES) -> None:
        self.confirmed = confirmed
        self.sent = confirmed
        self.max_batches = max_batches
        self.inflight: collections.deque[tuple[int, int]] = collections.deque()  # (ping ordinal, last seq)

    def can_send(self) -> bool:
        return len(self.inflight) < self.max_batches

    def batch_sent(self, last_seq: int, ping: int) -> None:
        self.sent = last_seq
        self.inflight.append((ping, last_seq))

    def pong(self, pongs_in: int) -> int | None:
        """PONGs received so far on this link; returns the new confirmed seq, or None."""
        new = None
        while self.inflight and self.inflight[0][0] <= pongs_in:
            new = self.inflight.popleft()[1]
        if new is not None:
            self.confirmed = max(self.confirmed, new)
        return new

    def reset(self) -> int:
        """The link is gone: everything unconfirmed is sent again. Returns how many seqs are resent."""
        resent = self.sent - self.confirmed
        self.sent = self.confirmed
        self.inflight.clear()
        return resent


class AckWindow:
    """JetStream-mode confirmation: one PubAck per record; confirm the longest acknowledged prefix."""

    def __init__(self, confirmed: int, max_outstanding: int) -> None:
        self.confirmed = confirmed
        self.sent = confirmed
        self.max_outstanding = max(1, max_outstanding)
        self.order: collections.deque[int] = collections.deque()
        self.acked: set[int] = set()
        self.oldest_sent_at = 0.0

    def can_send(self) -> bool:
        return len(self.order) < self.max_outstanding

    def record_sent(self, seq: int, now: float) -> None:
        if not self.order:
            self.oldest_sent_at = now
        self.order.append(seq)
        self.sent = seq

    def ack(self, seq: int, now: float) -> int | None:
        """A PubAck for ``seq``; returns the new confirmed seq when the prefix grew."""
        if seq <= self.confirmed or seq > self.sent:
            return None
        self.acked.add(seq)
        new = None
        order, acked = self.order, self.acked
        while order and order[0] in acked:
            new = order.popleft()
            acked.discard(new)
        if new is not None:
            self.confirmed = new
            self.oldest_sent_at = now
        return new

    def expired(self, now: float, wait: float) -> bool:
        return bool(self.order) and now - self.oldest_sent_at > wait

    def reset(self) -> int:
        resent = len(self.order)
        self.sent = self.confirmed
        self.order.clear()
        self.acked.clear()
        return resent


@dataclass(slots=True)
class ForwarderStats:
    """Outbox depth and counters plus the forwarder's own (for /metrics and ``broker.outbox``)."""

    depth_msgs: int
    stored_bytes: int
    oldest_age: float  # seconds; 0 when empty
    appended: int
    forwarded: int  # records queued on the link (resends included)
    resent: int  # records sent again after a link loss or an ack timeout
    confirmed: int
    confirmed_seq: int
    dropped: int  # drop_oldest (caps and disk full) + age + corruption
    dropped_full: int
    dropped_age: int
    dropped_corrupt: int
    dropped_disk_full: int  # drop_oldest freeing space on a full disk
    rejected: int  # reject_new (full) + disk full/error + writer behind with the deferred queue full
    rejected_disk_full: int
    disk_full: bool  # the disk refused a write; appends are answered with an error until it takes writes
    disk_error: str  # e.g. "ENOSPC: No space left on device"; "" when writable
    publisher_acks: int
    publisher_errors: int
    puback_errors: int
    puback_duplicates: int
    replay_rate: float  # records/s forwarded over the last interval
    forwarding: bool
    bytes_written: int
    fsyncs: int


class Forwarder:
    """Owns the outbox, the publish hook and the drain task. ``await open()``, ``start()``, ``await stop()``."""

    def __init__(self, server: Server, settings: StoreForwardSettings, directory: str,
                 uplink: HubUplink | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self._clock = clock  # seconds, monotonic: ack timeouts, pacing, rate (a manual clock in tests)
        self.settings = settings
        self.directory = directory
        self.uplink = uplink
        self.box: AsyncOutbox | None = None
        self.gateway = b""
        self.stream_name = (settings.stream or "outbox").encode()
        self._patterns = [s.encode() for s in settings.subjects]
        self._cover: dict[bytes, bool] = {}
        self._client: InternalClient | None = None
        self._inbox = b""
        self._acks: collections.deque[tuple[int, bytes]] = collections.deque()
        # Seq ranges a failed write rejected, (first, last, why), until the acks waiting on them are answered.
        self._rejected: collections.deque[tuple[int, int, str]] = collections.deque()
        self._deferred: collections.deque[tuple[bytes, bytes, bytes, bytes, bytes | None]] = collections.deque()
        self._replies: list[tuple[bytes, bytes]] = []
        self._reply_scheduled = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._pong: PongWindow | None = None
        self._ackw: AckWindow | None = None
        self._link: HubLink | None = None
        self.forwarding = False
        self.forwarded = 0
        self.resent = 0
        self.rejected_busy = 0
        self.publisher_acks = 0
        self.publisher_errors = 0
        self.acks_overflow = 0
        self.puback_errors = 0
        self.puback_duplicates = 0
        self._rate_t = clock()
        self._rate_n = 0
        self._rate = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (recover) the outbox and install the publish hook; call before the broker is ready."""
        await asyncio.to_thread(os.makedirs, self.directory, exist_ok=True)  # a slow card must not block the loop
        self.gateway = (self.server.settings.server_name or await asyncio.to_thread(self._stable_id)).encode()
        opts = OutboxOptions.from_settings(self.settings)
        self.box = await AsyncOutbox.async_open(self.directory, opts, on_durable=self._on_durable)
        rep = self.box.report
        st = self.box.stats()
        log.info("Outbox %s: %d pending records (seq %d..%d), recovered %d records in %d segments",
                 self.directory, st.depth_msgs, st.confirmed_seq + 1, st.last_seq, rep.records, rep.segments)
        if rep.torn_bytes or rep.corrupt_bytes or rep.corrupt_regions or rep.state_problem:
            log.warning("Outbox %s recovery: dropped a torn tail of %d bytes and %d corrupt bytes in %d regions%s",
                        self.directory, rep.torn_bytes, rep.corrupt_bytes, rep.corrupt_regions,
                        f"; state: {rep.state_problem}" if rep.state_problem else "")
        self.server.router.hooks.append(self._on_publish)
        if self.uplink is not None:
            self.uplink.skip_upstream = self.covered
            self.uplink.pong_hook = self._on_pong

    def start(self) -> None:
        """Start draining (after the leaf manager started)."""
        if self.uplink is None:
            log.warning("store_forward: no leaf remote configured; records are stored but not forwarded")
            return
        if self.settings.confirm == "jetstream":
            from edge.core.internal import InternalClient

            self._client = InternalClient(self.server, "store-forward")
            self._inbox = INBOX_PREFIX + secrets.token_hex(8).encode() + b"."
            self._client.subscribe(self._inbox + b"*", self._on_puback)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="store-forward")

    async def stop(self) -> None:
        """Stop draining, unhook, write out everything appended, close the store."""
        if self._on_publish in self.server.router.hooks:
            self.server.router.hooks.remove(self._on_publish)
        if self.uplink is not None:
            self.uplink.pong_hook = None
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
            self._task = None
        if self._client is not None:
            self._client.close()
        if self.box is not None:
            await self.box.async_close()
            self._flush_acks(self.box.durable_seq)

    def _stable_id(self) -> str:
        path = os.path.join(self.directory, ID_FILE)
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        text = "gw" + secrets.token_hex(6)
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return text

    # -- the publish side -----------------------------------------------------------------------

    def covered(self, subject: bytes) -> bool:
        hit = self._cover.get(subject)
        if hit is None:
            hit = any(subject_matches(p, subject) for p in self._patterns)
            if len(self._cover) >= COVER_CACHE:
                self._cover.clear()
            self._cover[subject] = hit
        return hit

    def _on_publish(self, src: Any, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes,
                    match: Match) -> int:
        if getattr(src, "kind", None) == KIND_LEAF or src is self._client or not self.covered(subject):
            return 0
        headers = data[:hdr_len] if hdr_len else b""
        payload = data[hdr_len:] if hdr_len else data
        if self._deferred:
            self._defer(subject, payload, reply, headers)
        else:
            self._append(subject, payload, reply, headers, defer_busy=True)
        return 1 if reply else 0

    def _append(self, subject: bytes, payload: bytes, reply: bytes | None, headers: bytes, *,
                defer_busy: bool) -> bool:
        """False when the writer is behind (BUSY) and the caller should keep the message for later."""
        assert self.box is not None
        try:
            seq = self.box.append(subject, payload, reply or b"", headers)
        except RecordTooLargeError:
            seq = FULL
        if seq > 0:
            if reply:
                if len(self._acks) < MAX_PENDING_ACKS:
                    self._acks.append((seq, reply))
                else:
                    self.acks_overflow += 1
            self._wake.set()
            return True
        if seq == BUSY and defer_busy:
            self._defer(subject, payload, reply, headers)
            return True
        if seq == BUSY:
            return False
        if reply and seq == DISK_FULL:
            self._reply(reply, _disk_error_reply(self.box.outbox.disk_error))
            self.publisher_errors += 1
        elif reply and seq == FULL:
            self._reply(reply, b'{"error":{"code":503,"description":"outbox full"}}')
            self.publisher_errors += 1
        return True  # or CLOSED: shutting down; the publisher gets no ack

    def _defer(self, subject: bytes, payload: bytes, reply: bytes | None, headers: bytes) -> None:
        if len(self._deferred) >= MAX_DEFERRED:
            self.rejected_busy += 1
            if reply:
                self._reply(reply, b'{"error":{"code":503,"description":"outbox busy"}}')
                self.publisher_errors += 1
            return
        self._deferred.append((subject, payload, headers, b"", reply))

    def _on_durable(self, seq: int) -> None:
        deferred = self._deferred
        while deferred:
            subject, payload, headers, _, reply = deferred[0]
            if not self._append(subject, payload, reply, headers, defer_busy=False):
                break
            deferred.popleft()
        self._flush_acks(seq)
        self._wake.set()  # only durable records are forwarded: these are new to the drain

    def _flush_acks(self, durable: int) -> None:
        """Answer the waiting publishers whose records are now durable, or were rejected by the disk.

        Acks are in seq order and every ack of a rejected range was queued before the range was reported
        (append returns the seq on this loop before the writer can refuse it), so one ordered pass suffices.
        """
        assert self.box is not None
        rejected = self._rejected
        rejected.extend(self.box.take_rejections())
        acks = self._acks
        stream = self.stream_name
        while acks:
            seq, reply = acks[0]
            while rejected and rejected[0][1] < seq:
                rejected.popleft()
            if rejected and rejected[0][0] <= seq:
                self._reply(reply, _disk_error_reply(rejected[0][2]))
                self.publisher_errors += 1
            elif seq <= durable:
                self._reply(reply, b'{"stream":"%s","seq":%d}' % (stream, seq))
                self.publisher_acks += 1
            else:
                break
            acks.popleft()
        if not acks:
            rejected.clear()  # every later append gets a higher seq than any range reported so far

    def _reply(self, subject: bytes, body: bytes) -> None:
        """Replies go out on the next loop turn (never re-entering the router from its own hook)."""
        self._replies.append((subject, body))
        if not self._reply_scheduled:
            self._reply_scheduled = True
            self.server.loop.call_soon(self._send_replies)

    def _send_replies(self) -> None:
        self._reply_scheduled = False
        replies, self._replies = self._replies, []
        if self._client is None:
            from edge.core.internal import InternalClient

            self._client = InternalClient(self.server, "store-forward")
        for subject, body in replies:
            self._client.publish(subject, body)

    # -- the forwarding side --------------------------------------------------------------------

    def _on_pong(self, link: HubLink) -> None:
        if link is self._link and self._pong is not None:
            new = self._pong.pong(link.pongs_in)
            if new is not None and self.box is not None:
                self.box.confirm(new)
                self._wake.set()

    def _on_puback(self, msg: Message) -> None:
        if self._ackw is None or self.box is None:
            return
        try:
            seq = int(msg.subject[len(self._inbox):])
            ack = json.loads(msg.payload)
        except ValueError:
            self.puback_errors += 1
            return
        if not isinstance(ack, dict) or "error" in ack or not isinstance(ack.get("seq"), int) or (
                self.settings.stream and ack.get("stream") != self.settings.stream):
            self.puback_errors += 1
            if self.puback_errors == 1 or self.puback_errors % 1000 == 0:
                log.warning("store_forward: hub answered seq %d with %s (%d such answers)", seq,
                            msg.payload[:200].decode(errors="replace"), self.puback_errors)
            return
        if ack.get("duplicate"):
            self.puback_duplicates += 1
        new = self._ackw.ack(seq, self._clock())
        if new is not None:
            self.box.confirm(new)
            self._wake.set()

    async def _run(self) -> None:
        assert self.uplink is not None and self.box is not None
        uplink = self.uplink
        while True:
            await uplink.connected_event.wait()
            link = uplink.link
            if link is None or link.closed or link.state != "up":
                await asyncio.sleep(0.01)  # the event is cleared by link_closed on this same loop turn
                continue
            st = self.box.stats()
            confirmed = max(st.confirmed_seq, st.dropped_through)
            self._link = link
            if self.settings.confirm == "pong":
                self._pong = PongWindow(confirmed)
            else:
                self._ackw = AckWindow(confirmed, self.settings.batch)
            self.forwarding = True
            log.info("store_forward: link up, forwarding %d stored records from seq %d", st.depth_msgs, confirmed + 1)
            link.closed_fut.add_done_callback(lambda _f: self._wake.set())
            try:
                await self._drain(link)
            finally:
                self.forwarding = False
                self._link = None
                win = self._pong or self._ackw
                unconfirmed = win.reset() if win is not None else 0
                self.resent += unconfirmed
                self._pong = self._ackw = None
            log.info("store_forward: link down, forwarding paused with %d records stored (%d sent but unconfirmed"
                     " will be sent again)", self.box.stats().depth_msgs, unconfirmed)

    async def _wait(self, timeout: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _drain(self, link: HubLink) -> None:
        assert self.box is not None
        box = self.box
        settings = self.settings
        jet = settings.confirm == "jetstream"
        # A burst of 1/10 s keeps a stall shorter than that (a disk read, a busy loop turn) from costing
        # throughput: with a burst of one batch, tokens refilled during it were capped away.
        bucket = TokenBucket(settings.replay_rate, max(settings.batch, settings.replay_rate // 10))
        outbound = link.outbound
        limit = outbound.limit // 2
        read_n = settings.batch * READ_AHEAD_BATCHES
        # Read ahead: records read from the outbox (one read = several batches, one thread hop when
        # from disk) and not sent yet; they are the records above `ahead_after` (minus any that fell
        # below the floor since). A window reset (resend) makes win.sent differ: read again.
        ahead: collections.deque[Record] = collections.deque()
        ahead_after = -1
        while not link.closed:
            win = self._ackw if jet else self._pong
            assert win is not None
            now = self._clock()
            if jet and self._ackw is not None and self._ackw.expired(now, ACK_WAIT):
                n = self._ackw.reset()
                self.resent += n
                log.warning("store_forward: %d records not acknowledged by the hub within %.0fs; sending again",
                            n, ACK_WAIT)
            if not win.can_send() or link.paused or outbound.size > limit:
                await self._wait(0.25)
                continue
            n = settings.batch
            if jet:
                ackw = self._ackw
                assert ackw is not None  # jetstream mode has an ack window
                n = min(n, ackw.max_outstanding - len(ackw.order))
            if ahead_after != win.sent:
                ahead.clear()
                ahead_after = win.sent
            floor = box.floor
            while ahead and ahead[0].seq <= floor:  # dropped (age, full) since they were read
                ahead.popleft()
            if not ahead:
                got: list[Record] = await box.async_read_batch(win.sent, max(n, read_n), READ_AHEAD_BYTES)
                if link.closed:
                    return
                if not got:
                    await self._wait(0.25)
                    continue
                if win.sent != ahead_after or win.sent >= got[0].seq:  # the window was reset while reading
                    continue
                ahead.extend(got)
                continue  # the floor may have moved while reading
            data, count, last, nbytes = self._encode(ahead, n, max(1, outbound.room), jet, self._clock(),
                                                     link.hub_headers)
            if not count:  # no room in the window (jetstream: max outstanding reached)
                await self._wait(0.05)
                continue
            delay = bucket.delay(count, self._clock())
            if delay > 0:
                await asyncio.sleep(delay)  # pacing, not synchronisation
                if link.closed:
                    return
            outbound.add_batch(data, count, nbytes)
            ahead_after = last
            self.forwarded += count
            if not jet:
                self._pong.batch_sent(last, link.send_ping())  # type: ignore[union-attr]

    def _encode(self, ahead: collections.deque[Record], n: int, budget: int, jet: bool,
                now: float, headers: bool = True) -> tuple[bytes, int, int, int]:
        """Pop up to ``n`` records (about ``min(budget, MAX_BATCH_BYTES)`` bytes, at least one) from
        ``ahead`` and frame them (edge.protocol.encode) as one chunk of leaf ``HMSG``s, each with its
        ``Nats-Msg-Id``; for a hub without header support (``headers`` False) as ``LMSG``s without the
        headers, as the leaf link strips them. In jetstream mode each is a request to the
        prefixed subject and is entered in the ack window. Returns (wire bytes, records, last seq,
        header+payload bytes).
        """
        budget = min(budget, MAX_BATCH_BYTES)
        gw = self.gateway + b"-"
        id_head = b"NATS/1.0\r\nNats-Msg-Id: " + gw
        prefix = self.settings.jetstream_subject_prefix.encode() + b"." if jet else b""
        if prefix == b".":
            prefix = b""
        inbox = self._inbox
        ackw = self._ackw
        parts: list[bytes] = []
        append = parts.append
        pop = ahead.popleft
        total = nbytes = count = seq = 0
        while ahead and count < n and total < budget:
            rec = pop()
            seq = rec.seq
            sid = b"%d" % seq
            h = rec.headers
            hdrs = with_msg_id(h, gw + sid) if h else id_head + sid + b"\r\n\r\n"
            payload = rec.payload
            hl = len(hdrs)
            if jet:
                ackw.record_sent(seq, now)  # type: ignore[union-attr]
                subject, reply = prefix + rec.subject, inbox + sid
            else:
                subject, reply = rec.subject, None
            if headers:
                line = encode_lmsg(subject, reply, (), hl, hdrs + payload)
            else:
                line = encode_lmsg(subject, reply, (), 0, payload)
            append(line)
            total += len(line)
            nbytes += hl + len(payload)
            count += 1
        return b"".join(parts), count, seq, nbytes

    # -- visibility -----------------------------------------------------------------------------

    def stats(self) -> ForwarderStats:
        assert self.box is not None
        st = self.box.stats()
        now = self._clock()
        if now - self._rate_t >= 1.0:
            self._rate = (self.forwarded - self._rate_n) / (now - self._rate_t)
            self._rate_t, self._rate_n = now, self.forwarded
        return ForwarderStats(
            depth_msgs=st.depth_msgs, stored_bytes=st.stored_bytes, oldest_age=st.oldest_age or 0.0,
            appended=st.appended, forwarded=self.forwarded, resent=self.resent, confirmed=st.confirmed,
            confirmed_seq=st.confirmed_seq,
            dropped=st.dropped_full + st.dropped_age + st.dropped_corrupt + st.dropped_disk_full,
            dropped_full=st.dropped_full, dropped_age=st.dropped_age, dropped_corrupt=st.dropped_corrupt,
            dropped_disk_full=st.dropped_disk_full,
            rejected=st.rejected_full + st.rejected_disk_full + self.rejected_busy,
            rejected_disk_full=st.rejected_disk_full, disk_full=st.disk_full, disk_error=st.disk_error,
            publisher_acks=self.publisher_acks,
            publisher_errors=self.publisher_errors, puback_errors=self.puback_errors,
            puback_duplicates=self.puback_duplicates, replay_rate=round(self._rate, 1),
            forwarding=self.forwarding, bytes_written=st.bytes_written, fsyncs=st.fsyncs,
        )

    def snapshot(self) -> dict[str, Any]:
        return asdict(self.stats())


def _disk_error_reply(why: str) -> bytes:
    """The error a publisher gets for a record the disk refused: JetStream's PubAck error shape, 503."""
    kind = "disk full" if any(why.startswith(errno.errorcode[e] + ":") for e in SPACE_ERRNOS) else "disk error"
    text = f"outbox {kind} ({why})" if why else f"outbox {kind}"
    return json.dumps({"error": {"code": 503, "description": text}}, separators=(",", ":")).encode()


def resolve_directory(
    settings: StoreForwardSettings, state_dir: str | None, env: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(the outbox directory, where it came from). ``dir`` as configured, else ``<state dir>/outbox``
    with the state directory from ``state_dir``, else systemd's ``$STATE_DIRECTORY`` (its first path when
    the unit lists several), else the per-user ``$XDG_STATE_HOME/nats-edge`` (``~/.local/state/nats-edge``):
    never the directory the broker happens to be started from."""
    if settings.dir:
        return settings.dir, "store_forward.dir"
    if state_dir:
        return os.path.join(state_dir, "outbox"), "state_dir"
    env = os.environ if env is None else env
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return os.path.join(systemd, "outbox"), "$STATE_DIRECTORY"
    xdg = env.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return os.path.join(xdg, "nats-edge", "outbox"), "$XDG_STATE_HOME"
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".local", "state", "nats-edge", "outbox"), "the per-user state directory"


def outbox_command(directory: str, as_json: bool = False) -> str:
    """What ``nats-edge outbox`` prints: a read-only inspection of the store (broker running or not)."""
    from edge.store.inspect import inspect_store

    ins = inspect_store(directory)
    if as_json:
        return json.dumps(ins.as_dict(), indent=2)
    return ins.format()
