"""The outbox: an append-only segmented log with group commit, caps and crash recovery.

Theory of operation
-------------------
``append()`` runs on the caller's thread (the event loop) and never touches the disk: under a short
lock it assigns the next seq, frames the record (:mod:`edge.store.record`), puts the frame on the
*pending* list and the record in the *memory window*, and returns the seq. One writer thread takes the
whole pending list at a time (group commit), appends it to the active segment, fsyncs once, and reports
the highest durable seq through ``on_durable``. It takes the list when ``fsync_every`` records are
waiting, when half of ``max_pending_bytes`` is, or ``fsync_interval`` after the first one arrived,
whichever is first; so a publish never waits for anything, and a record is durable at most one fsync
after the batch it joined. Past ``max_pending_bytes`` (the disk cannot keep up) ``append`` answers
:data:`BUSY`, counted; the caller should pause its reader until ``on_durable`` fires.

Segments are ``<dir>/<first_seq:020d>.seg``. A segment is rolled at ``segment_bytes`` and when its first
record is older than ``max_age / 16`` (so age expiry, done by whole segments, is precise to 1/16 of
``max_age``). Each run of the process starts a new segment, so within a segment seqs are consecutive;
recovery treats a break in that as corruption.

Positions. ``floor = max(confirmed, dropped_through)``: records at or below it are gone for readers.
``confirm()`` and drops only move positions in memory; the writer persists them (atomically, in
``outbox.state``) on its next cycle and then unlinks every segment that lies wholly below the floor.
The state also holds ``seq_ceiling``: readers are never given a seq above the persisted ceiling and a
restart continues above it, so a seq that was handed out but never became durable is not reused after
a crash (the hub deduplicates replays by seq). The writer raises the ceiling in steps of
:data:`SEQ_RESERVE`, long before appends reach it. Readers are given only durable records (seq <=
``durable_seq``): a record that a failed write later rejects has never left the process.

Disk errors. When a write, fsync or the state file fails (ENOSPC, EDQUOT, EIO, EROFS, ...) the writer
rolls the active segment back to its last fsync and closes it, then first unlinks segments that are
already below the floor, and under ``drop_oldest`` (for ENOSPC/EDQUOT only) drops the oldest closed
segments one at a time (counted in ``dropped_disk_full``), retrying the write after each. If the write
still fails, every record that is not durable is *rejected*: its seq range is handed to the caller
(:meth:`Outbox.take_rejections`, signalled through ``on_durable``), it is never written afterwards (its
seq is never reused), and the outbox enters the disk-error state: ``append`` answers
:data:`DISK_FULL` (counted in ``rejected_disk_full``) and the writer only probes, at
:data:`DISK_PROBE_MIN` doubling to :data:`DISK_PROBE_MAX` seconds, whether at least
:data:`RESUME_FREE_BYTES` are free and the state file can be written; then it resumes. One log line on
entering the state, one on leaving it. A segment unlinked to make room while the state file cannot be
written may, after a crash in that window, leave a stale confirmed position: some confirmed records are
then sent again (at-least-once, the hub's Nats-Msg-Id deduplication drops them).

Caps. ``max_msgs`` counts records above the floor; ``max_bytes`` counts stored bytes (segment files
not yet deleted plus pending frames), which is what wears an SD card. When full, ``drop_oldest`` moves
``dropped_through`` over the oldest record (count cap) or the oldest closed segment (byte cap);
``reject_new`` makes ``append`` return :data:`FULL`. Every dropped or rejected record is counted.

Reading. ``read_batch(after_seq, ...)`` returns records above ``max(after_seq, floor)`` in seq order.
Records newer than the window's start come from memory without I/O (:meth:`Outbox.read_memory`);
older ones (after a restart, or a long outage) are read from the segment files using a sparse index
(one checkpoint per :data:`INDEX_STRIDE` bytes), which is blocking I/O: call it off the event loop.

Threading contract: ``append``, ``confirm``, ``read_memory``, ``take_rejections``, ``stats`` and the
properties are thread-safe and never block on I/O. The constructor, ``read_batch``, ``flush`` and
``close`` block.
``on_durable`` runs on the writer thread; :mod:`edge.store.async_outbox` moves it to the loop.
"""

from __future__ import annotations

import bisect
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

from edge.errors import EdgeError
from edge.store import _files as files
from edge.store.record import (
    HEADER_SIZE,
    MAX_RECORD_LENGTH,
    FrameInfo,
    Record,
    ScanError,
    encode_record,
    record_size,
    scan_index,
    scan_records,
)

__all__ = [
    "BUSY",
    "CLOSED",
    "DISK_FULL",
    "FULL",
    "FullPolicy",
    "Outbox",
    "OutboxLockedError",
    "OutboxOptions",
    "OutboxStats",
    "RecoveryReport",
    "SegmentScan",
    "StoreError",
    "scan_segment_file",
]

log = logging.getLogger(__name__)

# append() results below 1 (a seq is always >= 1).
BUSY: Final = -1  # pending bytes at max_pending_bytes: the writer is behind; retry after on_durable
FULL: Final = -2  # at max_msgs/max_bytes with reject_new (or nothing droppable)
CLOSED: Final = -3
DISK_FULL: Final = -4  # the disk refused the last write (ENOSPC, EIO, ...); see the module docstring

SEQ_RESERVE: Final = 1 << 20  # seqs reserved ahead in the state file; a restart skips at most this many
INDEX_STRIDE: Final = 64 * 1024  # one read checkpoint per 64 KiB of segment: 256 per 16 MB segment
READ_CHUNK: Final = 256 * 1024
SCAN_CHUNK: Final = 1024 * 1024
AGE_ROLL_DIVISOR: Final = 16
DISK_PROBE_MIN: Final = 0.25  # seconds from entering the disk-error state to the first probe ...
DISK_PROBE_MAX: Final = 5.0  # ... doubling up to this
RESUME_FREE_BYTES: Final = 64 * 1024  # free space a probe requires before appends are accepted again
MAX_REJECTIONS: Final = 1024  # rejected ranges not yet taken; one per disk-error episode, so never reached
SPACE_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})  # dropping old segments can help these

FullPolicy = Literal["drop_oldest", "reject_new"]


class StoreError(EdgeError):
    """The outbox cannot be used (bad directory, already open elsewhere)."""


class OutboxLockedError(StoreError):
    """Another process (or Outbox object) has the directory open."""


@dataclass(frozen=True, slots=True)
class OutboxOptions:
    """Limits and cadence. Defaults match ``[store_forward]``'s (edge.config.store_forward)."""

    max_bytes: int = 256 * 1024 * 1024
    max_msgs: int = 1_000_000
    max_age: float = 7 * 86400.0  # seconds; 0 = no age limit
    full_policy: FullPolicy = "drop_oldest"
    fsync_interval: float = 0.1
    fsync_every: int = 1000
    segment_bytes: int = 16 * 1024 * 1024
    # Frames appended but not yet written. Bounds memory when the disk stalls; overflow = BUSY.
    max_pending_bytes: int = 8 * 1024 * 1024
    # Recently appended records kept for read_batch without disk reads (live forwarding).
    window_bytes: int = 4 * 1024 * 1024
    # The writer wakes at least this often when idle, to expire old records.
    maintenance_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError("max_bytes must be at least twice segment_bytes")
        if self.max_msgs < 1 or self.fsync_every < 1:
            raise ValueError("max_msgs and fsync_every must be at least 1")
        if self.fsync_interval < 0 or self.max_age < 0 or self.maintenance_interval <= 0:
            raise ValueError("durations must not be negative")
        if self.full_policy not in ("drop_oldest", "reject_new"):
            raise ValueError(f"unknown full_policy {self.full_policy!r}")

    @classmethod
    def from_settings(cls, sf: object, **overrides: object) -> OutboxOptions:
        """Build from a :class:`edge.config.store_forward.StoreForwardSettings` (duck-typed)."""
        kw = {name: getattr(sf, name) for name in (
            "max_bytes", "max_msgs", "max_age", "full_policy", "fsync_interval", "fsync_every",
            "segment_bytes",
        )}
        kw.update(overrides)
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What opening the directory found and repaired."""

    segments: int  # segment files kept
    records: int  # valid records in them (confirmed ones included)
    bytes: int
    torn_bytes: int  # incomplete frame at the end of the newest segment, truncated
    corrupt_bytes: int  # from a corrupt frame to the end of its segment, truncated
    corrupt_regions: int  # segments cut short by corruption (>= 1 record lost each)
    segments_removed: int  # empty, or wholly confirmed/dropped
    temp_files_removed: int
    state_problem: str | None
    confirmed: int
    dropped_through: int
    next_seq: int


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth_msgs: int  # records above the floor (not confirmed, not dropped)
    stored_bytes: int  # segment files not yet deleted + pending frames
    oldest_age: float | None  # seconds, of the oldest record above the floor (segment precision)
    appended: int
    last_seq: int
    durable_seq: int
    confirmed_seq: int
    confirmed: int  # records removed by confirm()
    dropped_through: int
    dropped_full: int
    dropped_age: int
    dropped_corrupt: int  # corrupt regions found (at open or when reading); >= 1 record each
    rejected_full: int
    rejected_busy: int
    fsyncs: int
    bytes_written: int
    write_errors: int
    segments: int
    pending_bytes: int
    window_msgs: int
    dropped_disk_full: int = 0  # live records in segments dropped to make room on a full disk (drop_oldest)
    rejected_disk_full: int = 0  # records refused because the disk could not take them
    disk_full: bool = False  # in the disk-error state: appends answer DISK_FULL until a probe succeeds
    disk_error: str = ""  # why, e.g. "ENOSPC: No space left on device"; "" when writable


@dataclass(slots=True, eq=False)
class _Segment:
    first_seq: int
    path: str
    last_seq: int = 0
    count: int = 0
    size: int = 0
    first_ts: int = 0
    last_ts: int = 0
    idx_seq: list[int] = field(default_factory=list)
    idx_off: list[int] = field(default_factory=list)
    idx_ts: list[int] = field(default_factory=list)
    closed: bool = False
    deleted: bool = False  # wholly below the floor; the writer unlinks it
    corrupt_seen: bool = False

    def live(self, floor: int) -> int:
        if self.deleted or self.count == 0 or self.last_seq <= floor:
            return 0
        return self.count if self.first_seq > floor else self.last_seq - floor

    def mark(self) -> tuple[int, int, int, int, int, int, int]:
        """The index as it is now (taken at each fsync), for :meth:`restore` after a failed write."""
        return (self.first_seq, self.first_ts, self.last_seq, self.last_ts, self.count, self.size, len(self.idx_seq))

    def restore(self, mark: tuple[int, int, int, int, int, int, int]) -> None:
        self.first_seq, self.first_ts, self.last_seq, self.last_ts, self.count, self.size, n = mark
        del self.idx_seq[n:], self.idx_off[n:], self.idx_ts[n:]


@dataclass(frozen=True, slots=True)
class SegmentScan:
    """A segment file checked frame by frame (see :func:`scan_segment_file`)."""

    frames: list[FrameInfo]
    valid_end: int
    size: int
    error: ScanError | None


def scan_segment_file(path: str, after_seq: int = 0) -> SegmentScan:
    """Index a segment file, reading it in chunks; stop at the first bad frame.

    Besides torn and corrupt frames, a record whose seq is not above ``after_seq`` (the previous
    segment's last) or not exactly one above its predecessor counts as corrupt. Read-only.
    """
    frames: list[FrameInfo] = []
    prev = after_seq
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        base = 0  # file offset of buf[0]
        buf = b""
        while True:
            chunk = fh.read(SCAN_CHUNK)
            buf = buf + chunk if buf else chunk
            got, end, err = scan_index(buf)
            for info in got:
                if info.seq <= prev or (frames and info.seq != prev + 1):
                    bad = ScanError("corrupt", base + info.offset, f"seq {info.seq} out of order after {prev}")
                    return SegmentScan(frames, base + info.offset, size, bad)
                frames.append(FrameInfo(info.seq, info.ts_ns, base + info.offset, info.size))
                prev = info.seq
            if err is not None and (err.kind == "corrupt" or not chunk):
                return SegmentScan(frames, base + end, size, err._replace(offset=base + err.offset))
            if not chunk:
                return SegmentScan(frames, base + end, size, None)
            base += end
            buf = buf[end:]


class Outbox:
    """The store-and-forward log of one directory. See the module docstring for the contract."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        options: OutboxOptions | None = None,
        on_durable: Callable[[int], None] | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        io: files.SegmentIO | None = None,
    ) -> None:
        """Open (creating if needed) and recover the directory, then start the writer thread.

        ``io`` performs the writer's file operations (a test injects failures through it). A disk that
        cannot take the state file at open does not fail the open: the outbox starts in the disk-error state.

        Blocking. Raises:
            OutboxLockedError: the directory is open elsewhere.
            OSError: the directory cannot be created or read.
        """
        self.directory = os.fspath(directory)
        self.options = opts = options or OutboxOptions()
        self._on_durable = on_durable
        self._clock = clock
        self._io = io or files.SegmentIO()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # writer waits on it
        self._cycle_done = threading.Condition(self._lock)  # flush() waits on it
        self._age_roll_ns = int(opts.max_age * 1e9 / AGE_ROLL_DIVISOR) if opts.max_age else 0
        self._max_age_ns = int(opts.max_age * 1e9)
        self._busy_mark = max(1, opts.max_pending_bytes // 2)

        self._pending: list[bytes] = []
        self._pending_bytes = 0  # pending + the batch being written
        self._pending_since: float | None = None
        self._dirty_since: float | None = None
        self._flush_target = 0
        self._cycles = 0
        self._in_cycle = False
        # The disk-error state (see the module docstring): why, since when, the next probe (monotonic).
        self._disk_error = ""
        self._disk_error_since = 0.0
        self._disk_error_left = -1e9
        self._probe_wait = DISK_PROBE_MIN
        self._probe_at = 0.0
        self._rejected_at_entry = 0
        self._rejected_through = 0  # highest seq ever rejected; unwritten records lie above it
        self._rejections: list[tuple[int, int, str]] = []  # (first, last, why) not yet taken
        self._closing = False
        self._killed = False
        self._window: list[Record] = []
        self._win_head = 0
        self._win_bytes = 0
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None  # writer thread only (fields published under the lock)
        self._fd = -1
        self._synced = (0, 0, 0, 0, 0, 0, 0)  # the active segment's mark at its last fsync
        # counters
        self._appended = self._confirmed_count = 0
        self._dropped_full = self._dropped_age = self._dropped_corrupt = 0
        self._rejected_full = self._rejected_busy = self._rejected_disk_full = self._dropped_disk_full = 0
        self._fsyncs = self._bytes_written = self._write_errors = 0

        os.makedirs(self.directory, exist_ok=True)
        self._lock_fd = os.open(os.path.join(self.directory, files.LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxLockedError(f"{self.directory}: outbox already open by another process") from None
        try:
            self.report = self._recover()
        except BaseException:
            os.close(self._lock_fd)
            raise
        self._thread = threading.Thread(target=self._run, name=f"outbox-writer:{self.directory}", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------- recovery (constructor only)

    def _recover(self) -> RecoveryReport:
        d = self.directory
        temp_removed = 0
        for name in os.listdir(d):
            if name.endswith(files.TMP_SUFFIX):
                os.unlink(os.path.join(d, name))
                temp_removed += 1
        state, problem = files.read_state(d)
        if problem:
            log.error("outbox %s: %s; resending everything stored", d, problem)
        state = state or files.StoreState()
        floor = max(state.confirmed, state.dropped_through)
        torn = corrupt = regions = removed = records = 0
        prev_last = 0
        to_remove: list[str] = []
        found = files.list_segments(d)
        for _first, path in found:
            scan = scan_segment_file(path, prev_last)
            if scan.error is not None:
                # A truncated frame in the newest segment is a torn write; anywhere else it is damage.
                # Either way cut the file at the last good frame so that appends never follow garbage.
                lost = scan.size - scan.valid_end
                if scan.error.kind == "truncated" and path == found[-1][1]:
                    torn += lost
                else:
                    corrupt += lost
                    regions += 1
                log.warning("outbox %s: %s at offset %d: %s (%d bytes cut)",
                            path, scan.error.kind, scan.error.offset, scan.error.reason, lost)
                if scan.frames:
                    os.truncate(path, scan.valid_end)
                    _fsync_path(path)
            if scan.frames:
                prev_last = scan.frames[-1].seq
            if not scan.frames or scan.frames[-1].seq <= floor:
                to_remove.append(path)
                continue
            seg = _Segment(scan.frames[0].seq, path, closed=True)
            for info in scan.frames:
                _index_frame(seg, info.seq, info.ts_ns, info.offset, info.size)
            self._segments.append(seg)
            records += seg.count
        for path in to_remove:
            os.unlink(path)
            removed += 1
        if to_remove:
            files.fsync_dir(d)
        last = max(prev_last, state.seq_ceiling, floor)
        if problem:
            # The ceiling is unknown: skip far enough that no seq the crashed run exposed comes back.
            last = prev_last + 2 * SEQ_RESERVE
        self._next_seq = self._run_first = last + 1
        self._written_seq = self._durable_seq = last
        self._disk_through = prev_last  # records above it are in the window (none yet)
        self._confirmed = state.confirmed
        self._dropped_through = state.dropped_through
        self._ceiling = last + SEQ_RESERVE
        try:
            self._io.write_state(d, self._state())
        except OSError as exc:
            self._disk_error = _describe(exc)
            self._disk_error_since = time.monotonic()
            self._probe_at = self._disk_error_since + DISK_PROBE_MIN
            self._dirty_since = self._disk_error_since
            log.error("outbox %s: cannot write (%s); rejecting new records until it can", d, self._disk_error)
        self._stored_bytes = sum(s.size for s in self._segments)
        self._live = self._count_live()
        self._dropped_corrupt = regions
        return RecoveryReport(
            segments=len(self._segments), records=records, bytes=self._stored_bytes, torn_bytes=torn,
            corrupt_bytes=corrupt, corrupt_regions=regions, segments_removed=removed,
            temp_files_removed=temp_removed, state_problem=problem, confirmed=state.confirmed,
            dropped_through=state.dropped_through, next_seq=self._next_seq,
        )

    # ----------------------------------------------------------------- loop-facing, non-blocking

    def append(
        self, subject: bytes, payload: bytes, reply: bytes = b"", headers: bytes = b"", ts_ns: int | None = None
    ) -> int:
        """Store one message. Never blocks on I/O.

        Returns:
            The record's seq (>= 1), or :data:`BUSY` (writer behind), :data:`FULL` (caps reached under
            reject_new), :data:`DISK_FULL` (the disk-error state) or :data:`CLOSED`. Rejections are
            counted in :meth:`stats`. A seq is not yet a promise: the record may still be rejected by a
            failed write (:meth:`take_rejections`) until ``on_durable`` reports it.
        Raises:
            RecordTooLargeError: the record cannot be framed (subject > 64 KiB, payload > 64 MiB).
        """
        ts = self._clock() if ts_ns is None else ts_ns
        with self._lock:
            if self._closing:
                return CLOSED
            if self._disk_error:
                self._rejected_disk_full += 1
                return DISK_FULL
            seq = self._next_seq
            frame = encode_record(seq, ts, subject, reply, headers, payload)
            n = len(frame)
            if self._pending_bytes and self._pending_bytes + n > self.options.max_pending_bytes:
                self._rejected_busy += 1
                return BUSY
            opts = self.options
            if (self._live >= opts.max_msgs or self._stored_bytes + n > opts.max_bytes) and (
                opts.full_policy == "reject_new" or not self._make_room(n)
            ):
                self._rejected_full += 1
                return FULL
            self._next_seq = seq + 1
            pending = self._pending
            pending.append(frame)
            self._pending_bytes += n
            self._stored_bytes += n
            self._live += 1
            self._appended += 1
            self._window.append(Record(seq, ts, subject, reply, headers, payload))
            self._win_bytes += n
            if len(pending) == 1:
                self._pending_since = time.monotonic()
                self._wake.notify()  # arm the writer's fsync_interval timer
            elif len(pending) >= opts.fsync_every or self._pending_bytes >= self._busy_mark:
                self._wake.notify()
            return seq

    def confirm(self, up_to_seq: int) -> None:
        """Every record with seq <= ``up_to_seq`` reached the hub. Persisted by the writer, batched."""
        with self._lock:
            up_to = min(up_to_seq, self._next_seq - 1)
            if up_to <= self._confirmed:
                return
            before = self._live
            self._confirmed = up_to
            self._floor_moved()
            self._confirmed_count += before - self._live

    def take_rejections(self) -> list[tuple[int, int, str]]:
        """Seq ranges ``(first, last, why)`` rejected by failed writes since the last call, oldest first.

        Every appended seq in such a range is never written and never read; ``why`` is like
        ``"ENOSPC: No space left on device"``. ``on_durable`` is called after each new range.
        """
        with self._lock:
            out, self._rejections = self._rejections, []
            return out

    @property
    def has_rejections(self) -> bool:
        """True while :meth:`take_rejections` would return something (no lock: a hint)."""
        return bool(self._rejections)

    @property
    def disk_error(self) -> str:
        """Why the outbox is in the disk-error state, or "" (not in it)."""
        return self._disk_error

    def read_memory(self, after_seq: int, max_records: int, max_bytes: int) -> list[Record] | None:
        """Records above ``after_seq`` from the memory window, or ``None`` if the disk is needed.

        At least one record is returned when any exists, even if it alone exceeds ``max_bytes``.
        """
        with self._lock:
            start = max(after_seq, self._confirmed, self._dropped_through) + 1
            if start <= self._disk_through:
                return None
            stop = min(self._next_seq - 1, self._ceiling, self._durable_seq)
            win = self._window
            if start > stop or self._win_head >= len(win):
                return []
            # Rejected ranges leave gaps in the window's seqs: search rather than index by seq.
            i = bisect.bisect_left(win, start, self._win_head, key=_seq_of)
            out: list[Record] = []
            total = 0
            end = len(win)
            while i < end and len(out) < max_records:
                rec = win[i]
                if rec.seq > stop:
                    break
                total += record_size(rec)
                if out and total > max_bytes:
                    break
                out.append(rec)
                i += 1
            return out

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    @property
    def floor(self) -> int:
        """``max(confirmed, dropped_through)``: records at or below it are gone for readers (no lock)."""
        return max(self._confirmed, self._dropped_through)

    @property
    def durable_seq(self) -> int:
        return self._durable_seq

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes

    def stats(self) -> OutboxStats:
        with self._lock:
            return OutboxStats(
                depth_msgs=self._live, stored_bytes=self._stored_bytes, oldest_age=self._oldest_age(),
                appended=self._appended, last_seq=self._next_seq - 1, durable_seq=self._durable_seq,
                confirmed_seq=self._confirmed, confirmed=self._confirmed_count,
                dropped_through=self._dropped_through, dropped_full=self._dropped_full,
                dropped_age=self._dropped_age, dropped_corrupt=self._dropped_corrupt,
                rejected_full=self._rejected_full, rejected_busy=self._rejected_busy, fsyncs=self._fsyncs,
                bytes_written=self._bytes_written, write_errors=self._write_errors,
                segments=sum(1 for s in self._segments if not s.deleted),
                pending_bytes=self._pending_bytes, window_msgs=len(self._window) - self._win_head,
                dropped_disk_full=self._dropped_disk_full, rejected_disk_full=self._rejected_disk_full,
                disk_full=bool(self._disk_error), disk_error=self._disk_error,
            )

    # ----------------------------------------------------------------- blocking

    def read_batch(self, after_seq: int, max_records: int, max_bytes: int) -> list[Record]:
        """Records above ``after_seq`` (and above the floor), in seq order. May read files: off-loop.

        Returns at most ``max_records`` records and about ``max_bytes`` bytes of frames (at least one
        record when any exists). An empty list means nothing is stored above ``after_seq`` yet.
        """
        got = self.read_memory(after_seq, max_records, max_bytes)
        if got is not None:
            return got
        with self._lock:
            start = max(after_seq, self._confirmed, self._dropped_through) + 1
            stop = min(self._disk_through, self._ceiling, self._durable_seq)
            segs = [(s, len(s.idx_seq), s.size) for s in self._segments if not s.deleted and s.last_seq >= start]
        out: list[Record] = []
        budget = max_bytes
        for seg, nidx, size in segs:
            if seg.first_seq > stop or len(out) >= max_records:
                break
            got_seg, used, limited = self._read_segment(
                seg, nidx, size, start, stop, max_records - len(out), budget, bool(out)
            )
            budget -= used
            out.extend(got_seg)
            if limited:
                return out
        # Nothing more on disk up to `stop`: continue with the window (it holds everything above).
        if len(out) < max_records and budget > 0:
            more = self.read_memory(max(after_seq, stop), max_records - len(out), budget if out else max_bytes)
            if more:
                if out and more[0].seq <= out[-1].seq:  # cannot happen; keep order strict regardless
                    more = [r for r in more if r.seq > out[-1].seq]
                out.extend(more)
        return out

    def _read_segment(
        self, seg: _Segment, nidx: int, size: int, start: int, stop: int, max_records: int, budget: int,
        have_some: bool,
    ) -> tuple[list[Record], int, bool]:
        """Records of one segment in [start, stop]: (records, their bytes, a limit was reached)."""
        k = max(bisect.bisect_right(seg.idx_seq, start, 0, nidx) - 1, 0)
        offset = seg.idx_off[k]
        # Seqs are consecutive within a segment: the checkpoint's seq tells how many frames precede
        # `start`, so only those and the ones wanted are decoded (not the whole chunk).
        skip = max(0, start - seg.idx_seq[k]) if nidx else 0
        out: list[Record] = []
        used = 0
        chunk = READ_CHUNK
        try:
            with open(seg.path, "rb") as fh:
                while offset < size and len(out) < max_records:
                    fh.seek(offset)
                    buf = fh.read(min(chunk, size - offset))
                    recs, end, err = scan_records(buf, 0, skip + max_records - len(out))
                    skip = 0
                    for rec in recs:
                        if rec.seq < start:
                            continue
                        if rec.seq > stop:
                            return out, used, False
                        n = record_size(rec)
                        if len(out) >= max_records or ((out or have_some) and used + n > budget):
                            return out, used, True
                        used += n
                        out.append(rec)
                    offset += end
                    if err is not None and err.kind == "corrupt":
                        self._note_corrupt(seg, err, offset)
                        return out, used, False
                    if end == 0 and err is not None:
                        if chunk >= MAX_RECORD_LENGTH + HEADER_SIZE:
                            self._note_corrupt(seg, err, offset)
                            return out, used, False
                        chunk *= 2  # one frame larger than the chunk
        except FileNotFoundError:
            pass  # dropped or confirmed meanwhile: its records are below the floor now
        return out, used, len(out) >= max_records

    def _note_corrupt(self, seg: _Segment, err: ScanError, offset: int) -> None:
        with self._lock:
            if not seg.corrupt_seen:
                seg.corrupt_seen = True
                self._dropped_corrupt += 1
        log.error("outbox %s: %s at offset %d while reading; rest of segment skipped", seg.path, err.reason, offset)

    def flush(self, timeout: float | None = None) -> bool:
        """Run one full writer cycle (write, fsync, persist, expire, delete) and wait for it.

        Returns False on timeout or if the writer has stopped.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            # A cycle already under way took its frames before this call: wait for the next one too.
            target = self._cycles + (2 if self._in_cycle else 1)
            self._flush_target = max(self._flush_target, target)
            self._wake.notify()
            while self._cycles < target and self._thread.is_alive():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cycle_done.wait(remaining)
            return self._cycles >= target

    def close(self, timeout: float | None = None) -> None:
        """Write and fsync everything pending, persist the positions, stop the writer. Idempotent."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive() and self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _kill(self) -> None:
        """Testing aid: stop like a SIGKILL would. Pending frames are lost, nothing more is written."""
        with self._lock:
            self._killed = True
            self._closing = True
            self._wake.notify()
        self._thread.join()
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # ----------------------------------------------------------------- bookkeeping (lock held)

    def _state(self) -> files.StoreState:
        return files.StoreState(self._confirmed, self._dropped_through, self._ceiling)

    def _count_live(self) -> int:
        floor = max(self._confirmed, self._dropped_through)
        live = sum(s.live(floor) for s in self._segments)
        # Unwritten records of this run are consecutive: (written_seq, next_seq), above any rejected one.
        lo = max(floor, self._written_seq, self._run_first - 1, self._rejected_through)
        return live + max(0, self._next_seq - 1 - lo)

    def _floor_moved(self) -> None:
        floor = max(self._confirmed, self._dropped_through)
        for seg in self._segments:
            if seg.closed and not seg.deleted and seg.last_seq <= floor:
                seg.deleted = True
                self._stored_bytes -= seg.size
        self._live = self._count_live()
        win = self._window
        head = self._win_head
        while head < len(win) and win[head].seq <= floor:
            self._win_bytes -= record_size(win[head])
            self._disk_through = max(self._disk_through, win[head].seq)
            head += 1
        self._set_win_head(head)
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
            self._wake.notify()

    def _set_win_head(self, head: int) -> None:
        if head > 1024 and head * 2 > len(self._window):
            del self._window[:head]
            head = 0
        self._win_head = head

    def _oldest_live_seq(self) -> int | None:
        floor = max(self._confirmed, self._dropped_through)
        for seg in self._segments:
            if seg.live(floor):
                return max(seg.first_seq, floor + 1)
        lo = max(floor, self._written_seq, self._run_first - 1, self._rejected_through) + 1
        return lo if lo < self._next_seq else None

    def _make_room(self, n: int) -> bool:
        """drop_oldest: advance dropped_through until one more record of ``n`` bytes fits."""
        opts = self.options
        moved = False
        while self._live >= opts.max_msgs:
            seq = self._oldest_live_seq()
            if seq is None:
                break
            self._dropped_through = seq
            self._live -= 1
            self._dropped_full += 1
            moved = True
            for seg in self._segments:  # a closed segment may now lie wholly below the floor
                if seg.closed and not seg.deleted and seg.last_seq <= seq:
                    seg.deleted = True
                    self._stored_bytes -= seg.size
        while self._stored_bytes + n > opts.max_bytes:
            floor = max(self._confirmed, self._dropped_through)
            oldest = next((s for s in self._segments if s.closed and not s.deleted), None)
            if oldest is None:
                break
            lost = oldest.live(floor)
            self._dropped_full += lost
            self._dropped_through = max(self._dropped_through, oldest.last_seq)
            oldest.deleted = True
            self._stored_bytes -= oldest.size
            moved = True
        if moved:
            self._floor_moved()  # recounts exactly, evicts the window, wakes the writer
        return self._live < opts.max_msgs and self._stored_bytes + n <= opts.max_bytes

    def _oldest_age(self) -> float | None:
        floor = max(self._confirmed, self._dropped_through)
        ts = None
        for seg in self._segments:
            if seg.live(floor):
                if seg.first_seq > floor:
                    ts = seg.first_ts
                else:  # the checkpoint at or before floor + 1: an upper bound on the age
                    k = max(0, bisect.bisect_right(seg.idx_seq, floor + 1) - 1)
                    ts = seg.idx_ts[k]
                break
        if ts is None:
            win = self._window
            for i in range(self._win_head, len(win)):
                if win[i].seq > floor:
                    ts = win[i].ts_ns
                    break
        return None if ts is None else max(0.0, (self._clock() - ts) / 1e9)

    # ----------------------------------------------------------------- writer thread

    def _due(self, now: float) -> tuple[bool, float | None]:
        """(a cycle is due now, else how long to wait). Lock held."""
        if self._closing or self._cycles < self._flush_target:
            return True, None
        opts = self.options
        deadlines = [now + opts.maintenance_interval]
        if self._disk_error:  # nothing is pending (appends are refused); only the probe is due
            deadlines.append(self._probe_at)
        else:
            if self._pending:
                if len(self._pending) >= opts.fsync_every or self._pending_bytes >= self._busy_mark:
                    return True, None
                assert self._pending_since is not None
                deadlines.append(self._pending_since + opts.fsync_interval)
            if self._dirty_since is not None:
                deadlines.append(self._dirty_since + opts.fsync_interval)
        wait = min(deadlines) - now
        return wait <= 0, wait

    def _run(self) -> None:
        next_maintenance = time.monotonic() + self.options.maintenance_interval
        try:
            while True:
                with self._lock:
                    while True:
                        if self._killed:
                            return
                        now = time.monotonic()
                        ready, wait = self._due(now)
                        if ready or now >= next_maintenance:
                            break
                        self._wake.wait(None if wait is None else min(wait, next_maintenance - now))
                    frames, self._pending = self._pending, []
                    self._pending_since = None
                    closing = self._closing
                    self._in_cycle = True
                next_maintenance = time.monotonic() + self.options.maintenance_interval
                self._cycle(frames)
                with self._lock:
                    self._cycles += 1
                    self._in_cycle = False
                    self._cycle_done.notify_all()
                    if closing and not self._pending:  # a disk error rejects what was pending: done too
                        break
        except Exception:
            log.exception("outbox %s: writer thread failed; appends will report BUSY", self.directory)
            with self._lock:
                self._closing = True
                self._cycle_done.notify_all()
        finally:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1

    def _cycle(self, frames: list[bytes]) -> None:
        durable_before = self._durable_seq
        rejections_before = self._rejected_through
        in_error = bool(self._disk_error)  # probe only an error state older than this cycle
        if frames:
            self._write_batch(frames)
        if in_error:
            self._probe()
        self._expire()
        self._retire_active()
        with self._lock:
            if self._killed:
                return
            state, new_ceiling = self._next_state()
            dirty = not self._disk_error and (
                self._dirty_since is not None or new_ceiling != self._ceiling or self._closing)
            self._dirty_since = None
            doomed = [s for s in self._segments if s.deleted]  # below the floor that `state` persists
        if dirty:
            try:
                self._io.write_state(self.directory, state)
            except OSError as exc:
                # Segments already below the floor go first (space); then one more try.
                try:
                    if not self._unlink_doomed():
                        raise
                    self._io.write_state(self.directory, state)
                except OSError:
                    self._enter_disk_error(exc, [])
                else:
                    with self._lock:
                        self._ceiling = new_ceiling
            else:
                with self._lock:
                    self._ceiling = new_ceiling
        if self._disk_error:  # the state file waits for the probe; freeing space does not
            self._unlink_doomed()
        elif dirty:
            self._unlink_doomed(doomed)
        if self._on_durable is not None and (
                self._durable_seq > durable_before or self._rejected_through > rejections_before):
            try:
                self._on_durable(self._durable_seq)
            except Exception:
                log.exception("outbox %s: on_durable callback failed", self.directory)

    def _next_state(self) -> tuple[files.StoreState, int]:
        """The state to persist now and the seq ceiling it carries. Lock held."""
        last = self._next_seq - 1
        new_ceiling = last + SEQ_RESERVE if last + SEQ_RESERVE // 2 > self._ceiling else self._ceiling
        return files.StoreState(self._confirmed, self._dropped_through, new_ceiling), new_ceiling

    def _unlink_doomed(self, doomed: list[_Segment] | None = None) -> bool:
        """Unlink ``doomed`` (default: every segment wholly below the floor now); True if any file went."""
        if doomed is None:
            with self._lock:
                doomed = [s for s in self._segments if s.deleted]
        if not doomed:
            return False
        gone = set()
        for seg in doomed:
            try:
                os.unlink(seg.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.error("outbox %s: cannot delete %s: %s", self.directory, seg.path, exc)
                continue
            gone.add(id(seg))
        try:
            files.fsync_dir(self.directory)
        except OSError as exc:
            log.error("outbox %s: cannot fsync the directory: %s", self.directory, exc)
        with self._lock:
            self._segments = [s for s in self._segments if id(s) not in gone]
        return bool(gone)

    def _write_batch(self, frames: list[bytes]) -> None:
        """Write and fsync ``frames``; on a disk error free space and retry, else reject (module docstring)."""
        while True:
            exc = self._write_frames(frames)
            if exc is None:
                return
            frames = frames[bisect.bisect_right(frames, self._durable_seq, key=_frame_seq):]  # not on disk
            if not frames:
                return
            if exc.errno not in SPACE_ERRNOS or not self._free_space():
                self._enter_disk_error(exc, frames)
                return

    def _free_space(self) -> bool:
        """After ENOSPC: unlink segments below the floor, else (drop_oldest) drop the oldest closed one."""
        if self._unlink_doomed():
            return True
        if self.options.full_policy != "drop_oldest":
            return False
        with self._lock:
            seg = next((s for s in self._segments if s.closed and not s.deleted), None)
            if seg is None:
                return False
            floor = max(self._confirmed, self._dropped_through)
            self._dropped_disk_full += seg.live(floor)
            self._dropped_through = max(self._dropped_through, seg.last_seq)
            seg.deleted = True
            self._stored_bytes -= seg.size
            self._floor_moved()
        return self._unlink_doomed()

    def _enter_disk_error(self, exc: OSError, unwritten: list[bytes]) -> None:
        """Reject every record that is not durable (``unwritten`` + pending) and refuse appends until a probe."""
        why = _describe(exc)
        now = time.monotonic()
        with self._lock:
            first, last = self._durable_seq + 1, self._next_seq - 1
            floor = max(self._confirmed, self._dropped_through)
            lost = max(0, last - max(first - 1, floor, self._rejected_through))  # dropped ones are counted already
            self._pending = []
            self._pending_since = None
            self._pending_bytes = 0
            self._stored_bytes = sum(s.size for s in self._segments if not s.deleted)
            self._rejected_disk_full += lost
            if last >= first:
                self._rejections.append((first, last, why))
                del self._rejections[:-MAX_REJECTIONS]
                self._rejected_through = last
            win = self._window
            while len(win) > self._win_head and win[-1].seq >= first:
                self._win_bytes -= record_size(win.pop())
            self._live = self._count_live()
            entering = not self._disk_error
            self._disk_error = why
            if now - self._disk_error_left > 2 * DISK_PROBE_MAX:  # a disk that fails again at once keeps its backoff
                self._probe_wait = DISK_PROBE_MIN
            self._probe_at = now + self._probe_wait
            if entering:
                self._disk_error_since = now
                self._rejected_at_entry = self._rejected_disk_full - lost
        if entering:
            log.error("outbox %s: cannot write (%s); %d unwritten records rejected, rejecting new records "
                      "until it can", self.directory, why, lost)

    def _probe(self) -> None:
        """In the disk-error state: resume if there is room and the state file can be written (backoff)."""
        with self._lock:
            if time.monotonic() < self._probe_at and self._cycles >= self._flush_target and not self._closing:
                return
        self._unlink_doomed()
        try:
            free = self._io.free_bytes(self.directory)
            if free < RESUME_FREE_BYTES:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            with self._lock:
                state, new_ceiling = self._next_state()
            self._io.write_state(self.directory, state)
        except OSError:
            with self._lock:
                self._probe_wait = min(self._probe_wait * 2, DISK_PROBE_MAX)
                self._probe_at = time.monotonic() + self._probe_wait
            return
        with self._lock:
            self._ceiling = new_ceiling
            self._dirty_since = None
            why, self._disk_error = self._disk_error, ""
            rejected = self._rejected_disk_full - self._rejected_at_entry
            self._disk_error_left = time.monotonic()
            lasted = self._disk_error_left - self._disk_error_since
        log.warning("outbox %s: writable again after %.1fs (%s); %d records were rejected meanwhile",
                    self.directory, lasted, why, rejected)

    def _write_frames(self, frames: list[bytes]) -> OSError | None:
        """Append frames to segments (rolling as needed) and fsync them all; None on success.

        On an OSError the active segment is rolled back to its last fsync (file and index) and closed,
        so every frame above ``durable_seq`` is off the disk again; the error is returned.
        """
        opts = self.options
        io = self._io
        pos = 0
        total = len(frames)
        try:
            while pos < total:
                first = frames[pos]
                seq0 = int.from_bytes(first[8:16], "little")
                ts0 = int.from_bytes(first[16:24], "little")
                seg = self._active
                if seg is None or (seg.size and (
                    seg.size + len(first) > opts.segment_bytes
                    or (self._age_roll_ns and ts0 - seg.first_ts > self._age_roll_ns)
                )):
                    seg = self._roll(seq0)
                # Frames that fit in this segment (at least one, even if larger than the segment size).
                room = opts.segment_bytes - seg.size
                j = pos
                size = 0
                while j < total and (j == pos or size + len(frames[j]) <= room):
                    size += len(frames[j])
                    j += 1
                chunk = frames[pos:j]
                io.write_at(self._fd, b"".join(chunk), seg.size)
                update = _index_update(seg, chunk)  # computed outside the lock: appends keep going
                with self._lock:
                    update.apply(seg)
                    self._written_seq = seg.last_seq
                    self._pending_bytes -= size
                    self._bytes_written += size
                    self._evict_window()
                pos = j
            if self._active is not None:
                io.datasync(self._fd)
                self._synced = self._active.mark()
            with self._lock:
                self._fsyncs += 1
                self._durable_seq = self._written_seq
        except OSError as exc:
            with self._lock:
                self._write_errors += 1
            self._rollback_active()
            return exc
        return None

    def _rollback_active(self) -> None:
        """Cut the active segment back to its last fsync and close it; its unsynced frames are pending again."""
        seg = self._active
        if seg is not None:
            if self._fd >= 0:
                try:
                    self._io.truncate(self._fd, self._synced[5])
                except OSError:
                    pass  # the frames past the mark stay in the file but not in the index; recovery cuts them
                os.close(self._fd)
            self._fd = -1
            self._active = None
        with self._lock:
            if seg is not None:
                cut = seg.size - self._synced[5]
                seg.restore(self._synced)
                seg.closed = True
                self._pending_bytes += cut  # back to unwritten, still counted in stored_bytes
                if seg.count == 0:  # nothing durable in it: gone now (not "space freed" for a retry)
                    self._segments.remove(seg)
            self._written_seq = self._durable_seq
            self._disk_through = min(self._disk_through, self._durable_seq)
        if seg is not None and seg.count == 0:
            try:
                os.unlink(seg.path)
            except OSError:
                pass  # recovery removes an empty segment file

    def _roll(self, first_seq: int) -> _Segment:
        """Close the active segment (fsynced) and create the next one, making its name durable."""
        old = self._active
        if old is not None:
            self._io.datasync(self._fd)
            self._synced = old.mark()
            os.close(self._fd)
            self._fd = -1
            self._active = None  # if creating the next file fails, the retry must not use this one
            with self._lock:
                self._fsyncs += 1
                self._durable_seq = self._written_seq
                old.closed = True
                floor = max(self._confirmed, self._dropped_through)
                if old.last_seq <= floor:
                    old.deleted = True
                    self._stored_bytes -= old.size
        path = os.path.join(self.directory, files.segment_name(first_seq))
        self._fd = self._io.open_segment(path)
        seg = _Segment(first_seq, path)
        with self._lock:
            self._segments.append(seg)
        self._active = seg
        self._synced = seg.mark()
        files.fsync_dir(self.directory)
        return seg

    def _retire_active(self) -> None:
        """Close the active segment once everything in it is confirmed or dropped and nothing waits."""
        seg = self._active
        if seg is None:
            return
        with self._lock:
            floor = max(self._confirmed, self._dropped_through)
            if self._pending or seg.count == 0 or seg.last_seq > floor:
                return
            seg.closed = True
            seg.deleted = True
            self._stored_bytes -= seg.size
        os.close(self._fd)
        self._fd = -1
        self._active = None

    def _expire(self) -> None:
        if not self._max_age_ns:
            return
        cutoff = self._clock() - self._max_age_ns
        with self._lock:
            floor = max(self._confirmed, self._dropped_through)
            moved = False
            for seg in self._segments:
                if seg.deleted or seg.count == 0 or seg.last_seq <= floor:
                    continue
                if seg.last_ts >= cutoff:
                    break
                self._dropped_age += seg.live(floor)
                self._dropped_through = floor = seg.last_seq
                moved = True
            if moved:
                self._floor_moved()

    def _evict_window(self) -> None:
        """Drop written records from the window's front while it is over its byte bound. Lock held."""
        win = self._window
        head = self._win_head
        limit = self.options.window_bytes
        written = self._written_seq
        while self._win_bytes > limit and head < len(win) and win[head].seq <= written:
            self._win_bytes -= record_size(win[head])
            self._disk_through = win[head].seq
            head += 1
        self._set_win_head(head)


@dataclass(slots=True)
class _IndexUpdate:
    first_seq: int
    first_ts: int
    last_seq: int
    last_ts: int
    count: int
    size: int
    idx_seq: list[int]
    idx_off: list[int]
    idx_ts: list[int]

    def apply(self, seg: _Segment) -> None:
        if seg.count == 0:
            seg.first_seq, seg.first_ts = self.first_seq, self.first_ts
        seg.idx_seq.extend(self.idx_seq)
        seg.idx_off.extend(self.idx_off)
        seg.idx_ts.extend(self.idx_ts)
        seg.last_seq, seg.last_ts = self.last_seq, self.last_ts
        seg.count += self.count
        seg.size = self.size


def _index_update(seg: _Segment, frames: list[bytes]) -> _IndexUpdate:
    """Index entries for ``frames`` appended at ``seg.size`` (same rule as :func:`_index_frame`)."""
    off = seg.size
    last_block = seg.idx_off[-1] // INDEX_STRIDE if seg.idx_off else -1
    u = _IndexUpdate(0, 0, 0, 0, len(frames), 0, [], [], [])
    from_bytes = int.from_bytes
    for frame in frames:
        seq = from_bytes(frame[8:16], "little")
        ts = from_bytes(frame[16:24], "little")
        if off // INDEX_STRIDE != last_block:
            last_block = off // INDEX_STRIDE
            u.idx_seq.append(seq)
            u.idx_off.append(off)
            u.idx_ts.append(ts)
        off += len(frame)
    u.first_seq = from_bytes(frames[0][8:16], "little")
    u.first_ts = from_bytes(frames[0][16:24], "little")
    u.last_seq = seq
    u.last_ts = ts
    u.size = off
    return u


def _index_frame(seg: _Segment, seq: int, ts: int, offset: int, size: int) -> None:
    if seg.count == 0:
        seg.first_seq = seq
        seg.first_ts = ts
    # A checkpoint at the segment start and whenever a frame starts in a new INDEX_STRIDE block.
    if not seg.idx_off or offset // INDEX_STRIDE != seg.idx_off[-1] // INDEX_STRIDE:
        seg.idx_seq.append(seq)
        seg.idx_off.append(offset)
        seg.idx_ts.append(ts)
    seg.last_seq = seq
    seg.last_ts = ts
    seg.count += 1
    seg.size = offset + size


def _seq_of(rec: Record) -> int:
    return rec.seq


def _frame_seq(frame: bytes) -> int:
    return int.from_bytes(frame[8:16], "little")


def _describe(exc: OSError) -> str:
    """``"ENOSPC: No space left on device"``: the errno's name, for logs, stats and publishers' replies."""
    name = errno.errorcode.get(exc.errno or 0, "error")
    return f"{name}: {exc.strerror or exc}"


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
