"""The outbox on a disk that refuses writes (ENOSPC, EIO), driven through the file seam (``SegmentIO``).

No small filesystem here: the failures are injected where the writer calls the OS, so every path (write,
fsync, state file, free-space probe) is reached deterministically. tests/integration/test_store_diskfull.py
does the same on a real full tmpfs.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from edge.store import _files as files
from edge.store.async_outbox import AsyncOutbox
from edge.store.log import DISK_FULL, DISK_PROBE_MIN, Outbox, OutboxOptions
from edge.store.record import Record, encode_record
from tests.support.waiting import wait_for

SUBJ = b"telemetry.gw1.temp"
FRAME = len(encode_record(1, 0, SUBJ, b"", b"", b"p" * 100))  # 150 bytes
PER_SEG = 4096 // FRAME  # 27 frames fit in a 4096-byte segment


def enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FaultyIO(files.SegmentIO):
    """Real files, with an OSError raised from the named operations while it is set in ``fail``."""

    def __init__(self) -> None:
        self.fail: dict[str, OSError] = {}
        self.free = 1 << 30
        self.probes: list[float] = []
        self.lock = threading.Lock()

    def _check(self, op: str) -> None:
        exc = self.fail.get(op)
        if exc is not None:
            raise exc

    def write_at(self, fd: int, data: bytes, offset: int) -> None:
        self._check("write")
        super().write_at(fd, data, offset)

    def datasync(self, fd: int) -> None:
        self._check("sync")
        super().datasync(fd)

    def write_state(self, directory: str, state: files.StoreState) -> None:
        self._check("state")
        super().write_state(directory, state)

    def free_bytes(self, directory: str) -> int:
        with self.lock:
            self.probes.append(time.monotonic())
        return self.free


class SmallDisk(files.SegmentIO):
    """Segment files may hold at most ``capacity`` bytes together: a write past it fails with ENOSPC."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.seg"))

    def write_at(self, fd: int, data: bytes, offset: int) -> None:
        grow = max(0, offset + len(data) - os.fstat(fd).st_size)
        if self.used() + grow > self.capacity:
            raise enospc()
        super().write_at(fd, data, offset)


def opts(**kw: object) -> OutboxOptions:
    base: dict[str, object] = {"fsync_interval": 60.0, "fsync_every": 10**6, "segment_bytes": 4096,
                               "max_bytes": 1 << 20, "max_msgs": 10**6, "full_policy": "reject_new"}
    base.update(kw)
    return OutboxOptions(**base)  # type: ignore[arg-type]


def fill(box: Outbox, n: int, start: int = 0) -> list[int]:
    return [box.append(SUBJ, b"p" * 96 + b"%04d" % (start + i)) for i in range(n)]


def read_all(box: Outbox, after: int = 0) -> list[Record]:
    out: list[Record] = []
    while got := box.read_batch(after, 50, 1 << 20):
        out.extend(got)
        after = got[-1].seq
    return out


def seg_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob("*.seg"))


def test_enospc_on_write_rejects_unwritten_records_and_never_writes_them(tmp_path: Path) -> None:
    io = FaultyIO()
    durable: list[int] = []
    box = Outbox(tmp_path, opts(), durable.append, io=io)
    try:
        assert fill(box, 10) == list(range(1, 11))
        assert box.flush(10)
        io.fail["write"] = enospc()
        assert fill(box, 20) == list(range(11, 31))
        assert box.flush(10)
        assert box.take_rejections() == [(11, 30, "ENOSPC: No space left on device")]
        assert box.take_rejections() == []
        assert durable == [10, 10]  # the rejection is signalled through on_durable too
        st = box.stats()
        assert (st.disk_full, st.disk_error) == (True, "ENOSPC: No space left on device")
        assert (st.rejected_disk_full, st.write_errors, st.depth_msgs, st.pending_bytes) == (20, 1, 10, 0)
        assert (st.durable_seq, st.stored_bytes, st.dropped_disk_full) == (10, 10 * FRAME, 0)
        assert box.append(SUBJ, b"x") == DISK_FULL
        assert box.stats().rejected_disk_full == 21
        assert [r.seq for r in read_all(box)] == list(range(1, 11))
        del io.fail["write"]
        assert box.flush(10)  # a forced cycle probes now: room again, the state file can be written
        assert box.stats().disk_full is False
        new = fill(box, 5, start=100)
        assert new == list(range(31, 36))  # rejected seqs are never reused
        assert box.flush(10)
        assert [r.seq for r in read_all(box)] == [*range(1, 11), *new]
    finally:
        box.close()
    assert seg_bytes(tmp_path) == 15 * FRAME
    box = Outbox(tmp_path, opts())
    try:
        got = read_all(box)
        assert [r.seq for r in got] == [*range(1, 11), *range(31, 36)]
        assert got[-1].payload.endswith(b"0104")
    finally:
        box.close()


def test_failed_fsync_cuts_the_unsynced_frames_off_the_file(tmp_path: Path) -> None:
    io = FaultyIO()
    box = Outbox(tmp_path, opts(), io=io)
    try:
        fill(box, 10)
        assert box.flush(10)
        io.fail["sync"] = OSError(errno.EIO, os.strerror(errno.EIO))
        fill(box, 10)  # written to the file, then fdatasync fails: not durable, so rejected
        assert box.flush(10)
        assert box.take_rejections() == [(11, 20, "EIO: Input/output error")]
        assert seg_bytes(tmp_path) == 10 * FRAME
        st = box.stats()
        assert (st.disk_full, st.rejected_disk_full, st.dropped_disk_full, st.depth_msgs) == (True, 10, 0, 10)
        del io.fail["sync"]
        assert box.flush(10)
        assert fill(box, 3) == [21, 22, 23]
        assert box.flush(10)
    finally:
        box.close()
    box = Outbox(tmp_path, opts())
    try:
        assert [r.seq for r in read_all(box)] == [*range(1, 11), 21, 22, 23]
        assert box.report.corrupt_regions == 0  # a new segment after the gap, not a break inside one
    finally:
        box.close()


def test_drop_oldest_frees_space_by_dropping_oldest_segments(tmp_path: Path) -> None:
    disk = SmallDisk(tmp_path, capacity=3 * PER_SEG * FRAME)
    box = Outbox(tmp_path, opts(full_policy="drop_oldest"), io=disk)
    total = 6 * PER_SEG
    try:
        for k in range(6):
            assert all(s > 0 for s in fill(box, PER_SEG, start=k * PER_SEG))
            assert box.flush(10)
        st = box.stats()
        assert (st.disk_full, st.rejected_disk_full, st.write_errors) == (False, 0, 3)
        assert st.dropped_disk_full == 3 * PER_SEG and st.dropped_disk_full + st.depth_msgs == total
        assert st.dropped_through == 3 * PER_SEG
        assert [r.seq for r in read_all(box)] == list(range(3 * PER_SEG + 1, total + 1))
        assert box.take_rejections() == []
        assert disk.used() <= disk.capacity
    finally:
        box.close()


def test_drop_oldest_with_nothing_left_to_drop_rejects(tmp_path: Path) -> None:
    io = FaultyIO()
    box = Outbox(tmp_path, opts(full_policy="drop_oldest"), io=io)
    try:
        fill(box, PER_SEG + 5)  # one closed segment, one active
        assert box.flush(10)
        io.fail["write"] = enospc()  # someone else filled the disk: dropping ours does not help
        fill(box, 4)
        assert box.flush(10)
        st = box.stats()
        assert (st.disk_full, st.dropped_disk_full, st.rejected_disk_full) == (True, PER_SEG + 5, 4)
        assert box.take_rejections() == [(PER_SEG + 6, PER_SEG + 9, "ENOSPC: No space left on device")]
        assert seg_bytes(tmp_path) == 0
    finally:
        box.close()


def test_state_file_enospc_unlinks_confirmed_segments_first(tmp_path: Path) -> None:
    io = FaultyIO()
    box = Outbox(tmp_path, opts(), io=io)
    try:
        fill(box, 3 * PER_SEG)
        assert box.flush(10)
        before = seg_bytes(tmp_path)
        box.confirm(2 * PER_SEG)
        io.fail["state"] = enospc()
        assert box.flush(10)  # the state file cannot be written: the confirmed segments go anyway
        assert seg_bytes(tmp_path) == before - 2 * PER_SEG * FRAME
        st = box.stats()
        assert (st.disk_full, st.rejected_disk_full, st.depth_msgs) == (True, 0, PER_SEG)
        del io.fail["state"]
        assert box.flush(10)
        assert box.stats().disk_full is False
        assert files.read_state(str(tmp_path))[0].confirmed == 2 * PER_SEG  # type: ignore[union-attr]
    finally:
        box.close()


def test_one_log_line_each_way_no_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    io = FaultyIO()
    box = Outbox(tmp_path, opts(), io=io)
    caplog.set_level(logging.INFO, logger="edge.store.log")
    try:
        io.fail["write"] = enospc()
        io.free = 0
        fill(box, 5)
        for _ in range(5):  # each forced cycle probes again and fails: no new lines
            assert box.flush(10)
        assert fill(box, 2) == [DISK_FULL, DISK_FULL]
        del io.fail["write"]
        assert box.flush(10)
        assert box.stats().disk_full is True  # the probe wants RESUME_FREE_BYTES free
        io.free = 1 << 30
        assert box.flush(10)
        assert box.stats().disk_full is False
    finally:
        box.close()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "outbox" in r.getMessage()]
    assert lines == [
        ("ERROR", f"outbox {tmp_path}: cannot write (ENOSPC: No space left on device); 5 unwritten records "
                  "rejected, rejecting new records until it can"),
        ("WARNING", lines[1][1]),
    ]
    assert lines[1][1].startswith(f"outbox {tmp_path}: writable again after ")
    assert lines[1][1].endswith("(ENOSPC: No space left on device); 7 records were rejected meanwhile")
    assert all(r.exc_info is None for r in caplog.records)


def test_probes_back_off_and_resume_by_themselves(tmp_path: Path) -> None:
    io = FaultyIO()
    box = Outbox(tmp_path, opts(), io=io)
    try:
        io.fail["write"] = enospc()
        io.free = 0
        fill(box, 1)
        assert box.flush(10)
        io.probes.clear()
        # the writer probes on its own schedule: 0.25 s, 0.5 s, 1 s, ...
        wait_for(lambda: len(io.probes) >= 3, 10, "the writer to probe three times by itself", interval=0.02)
        with io.lock:
            t = list(io.probes)
        gaps = [b - a for a, b in itertools.pairwise(t)]
        # Each wait is measured from the previous probe, so load can only lengthen the gaps.
        assert gaps[0] >= DISK_PROBE_MIN * 2 * 0.95 and gaps[1] >= DISK_PROBE_MIN * 4 * 0.95, gaps
        del io.fail["write"]
        io.free = 1 << 30
        wait_for(lambda: not box.stats().disk_full, 10, "the outbox to resume", interval=0.02)
        assert fill(box, 1) == [2]
    finally:
        box.close()


def test_open_on_a_full_disk_starts_in_the_error_state(tmp_path: Path) -> None:
    io = FaultyIO()
    io.fail["state"] = enospc()
    box = Outbox(tmp_path, opts(), io=io)
    try:
        assert box.stats().disk_full is True
        assert box.append(SUBJ, b"x") == DISK_FULL
        del io.fail["state"]
        assert box.flush(10)
        assert box.append(SUBJ, b"x") > 0
    finally:
        box.close()


async def test_async_outbox_signals_rejections_on_the_loop(tmp_path: Path) -> None:
    io = FaultyIO()
    calls: list[tuple[int, list[tuple[int, int, str]]]] = []
    got = asyncio.Event()
    box: AsyncOutbox | None = None

    def on_durable(seq: int) -> None:
        assert box is not None
        calls.append((seq, box.take_rejections()))
        got.set()

    box = await AsyncOutbox.async_open(tmp_path, opts(fsync_interval=0.005), on_durable)
    box.outbox._io = io  # the writer reads it per call
    try:
        io.fail["write"] = enospc()
        assert [box.append(SUBJ, b"%d" % i) for i in range(3)] == [1, 2, 3]
        async with asyncio.timeout(10):
            await got.wait()
        assert calls == [(0, [(1, 3, "ENOSPC: No space left on device")])]
        assert box.append(SUBJ, b"x") == DISK_FULL
        assert await box.async_read_batch(0, 10, 1 << 20) == []
    finally:
        await box.async_close()
