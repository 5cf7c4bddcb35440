"""The asyncio face of the outbox: the only store module that knows about the event loop.

:class:`~edge.store.log.Outbox` is thread-agnostic. This wrapper opens and closes it off the loop,
moves the writer thread's durability notifications onto the loop with ``call_soon_threadsafe``
(coalesced: at most one scheduled callback at a time, however often the writer fsyncs), and serves
``async_read_batch`` from the memory window on the loop, or from disk on one reader thread. The same
notification reports rejections (records a failed write refused): ``on_durable`` then runs even if the
durable seq did not move, and the callee collects them with :meth:`AsyncOutbox.take_rejections`.

Why a writer thread and not aiofiles (which the broker uses for its few one-off files): the outbox's
writes are many and small, and its cost on an SD card is the fsync. One thread that owns the segment
file group-commits: it takes every record appended since its last pass, writes them in one go and
fsyncs once per batch (``fsync_interval``/``fsync_every``), while the loop only appends to a bounded
in-memory queue. aiofiles would hand each small write (and each fsync) to a thread pool as a separate
job, in no guaranteed order between jobs, with a future and a loop wake-up per record: more threads
touching one file, no batching, and far more work per message on a Pi.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from edge.store.log import Outbox, OutboxOptions, OutboxStats, RecoveryReport
from edge.store.record import Record

__all__ = ["AsyncOutbox"]


class AsyncOutbox:
    """Use :meth:`async_open`; every method runs on the loop thread (``async_*`` must)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_durable: Callable[[int], None] | None) -> None:
        self._loop = loop
        self._user_on_durable = on_durable
        self._outbox: Outbox | None = None
        self._latest = 0  # written by the writer thread, read on the loop
        self._scheduled = False
        self._sched_lock = threading.Lock()
        self._durable_seq = 0
        self._durable_changed: asyncio.Future[None] | None = None
        # One thread for disk reads; only the forwarder reads, so its queue holds at most one job.
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-reader")

    @classmethod
    async def async_open(
        cls,
        directory: str | os.PathLike[str],
        options: OutboxOptions | None = None,
        on_durable: Callable[[int], None] | None = None,
    ) -> AsyncOutbox:
        """Open and recover the directory in a thread. ``on_durable(seq)`` is called on the loop."""
        self = cls(asyncio.get_running_loop(), on_durable)
        try:
            self._outbox = await asyncio.to_thread(Outbox, directory, options, self._from_writer)
        except BaseException:
            self._reader.shutdown(wait=False)
            raise
        self._durable_seq = self._outbox.durable_seq
        return self

    @property
    def outbox(self) -> Outbox:
        assert self._outbox is not None
        return self._outbox

    @property
    def report(self) -> RecoveryReport:
        return self.outbox.report

    @property
    def durable_seq(self) -> int:
        """Highest seq known durable on the loop (updated when the notification arrives)."""
        return self._durable_seq

    # Runs on the writer thread.
    def _from_writer(self, seq: int) -> None:
        with self._sched_lock:
            self._latest = seq
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _deliver(self) -> None:
        with self._sched_lock:
            seq = self._latest
            self._scheduled = False
        if seq > self._durable_seq:
            self._durable_seq = seq
            fut, self._durable_changed = self._durable_changed, None
            if fut is not None and not fut.done():
                fut.set_result(None)
        elif not self.outbox.has_rejections:
            return
        if self._user_on_durable is not None:
            self._user_on_durable(self._durable_seq)

    def append(
        self, subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes = b"", ts_ns: int | None = None
    ) -> int:
        """See :meth:`Outbox.append`: a seq >= 1, or BUSY/FULL/DISK_FULL/CLOSED. Never blocks."""
        return self.outbox.append(subject, payload, reply, headers, ts_ns)

    def take_rejections(self) -> list[tuple[int, int, str]]:
        """See :meth:`Outbox.take_rejections`."""
        return self.outbox.take_rejections()

    def confirm(self, up_to_seq: int) -> None:
        self.outbox.confirm(up_to_seq)

    def stats(self) -> OutboxStats:
        return self.outbox.stats()

    @property
    def floor(self) -> int:
        """``max(confirmed, dropped_through)`` (see :attr:`Outbox.floor`)."""
        return self.outbox.floor

    async def async_read_batch(self, after_seq: int, max_records: int, max_bytes: int) -> list[Record]:
        """Records above ``after_seq`` in order; from memory on the loop, else from disk on the reader thread."""
        got = self.outbox.read_memory(after_seq, max_records, max_bytes)
        if got is not None:
            return got
        return await self._loop.run_in_executor(
            self._reader, self.outbox.read_batch, after_seq, max_records, max_bytes
        )

    async def async_wait_durable(self, seq: int) -> None:
        """Return once every record up to ``seq`` is durable (wrap in ``asyncio.timeout`` as needed)."""
        while self._durable_seq < seq:
            if self._durable_changed is None:
                self._durable_changed = self._loop.create_future()
            await asyncio.shield(self._durable_changed)

    async def async_flush(self) -> bool:
        """Force a writer cycle (write, fsync, persist positions) and wait for it, off the loop."""
        return await asyncio.to_thread(self.outbox.flush, 10.0)

    async def async_close(self) -> None:
        """Write out everything pending and stop, off the loop. Idempotent."""
        if self._outbox is not None:
            await asyncio.to_thread(self._outbox.close)
        self._reader.shutdown(wait=False)
