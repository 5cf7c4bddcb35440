"""The outbox log: append, durability, reads from memory and disk, confirm, caps, age, inspect."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from edge.store import _files as files
from edge.store.inspect import inspect_store
from edge.store.log import BUSY, CLOSED, FULL, Outbox, OutboxLockedError, OutboxOptions
from edge.store.record import Record, encode_record

SUBJ = b"telemetry.gw1.temp"
FRAME = len(encode_record(1, 0, SUBJ, b"", b"", b"p" * 100))  # 150 bytes
T0 = 1_700_000_000 * 10**9


def opts(**kw: object) -> OutboxOptions:
    base: dict[str, object] = {"fsync_interval": 60.0, "fsync_every": 10**6, "segment_bytes": 4096,
                               "max_bytes": 1 << 20, "max_msgs": 10**6}
    base.update(kw)
    return OutboxOptions(**base)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def fill(box: Outbox, n: int, start: int = 0) -> list[int]:
    seqs = [box.append(SUBJ, b"p" * 96 + b"%04d" % (start + i)) for i in range(n)]
    assert all(s > 0 for s in seqs)
    return seqs


def seg_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.seg"))


def read_all(box: Outbox, after: int = 0, batch: int = 7) -> list[Record]:
    out: list[Record] = []
    for _ in range(10_000):
        got = box.read_batch(after, batch, 1 << 20)
        if not got:
            return out
        out.extend(got)
        after = got[-1].seq
    raise AssertionError("read_all did not finish")


def test_append_durable_and_read(tmp_path: Path) -> None:
    durable: list[int] = []
    box = Outbox(tmp_path, opts(), durable.append)
    try:
        seqs = fill(box, 50)
        assert seqs == list(range(1, 51))
        assert box.durable_seq == 0 and box.stats().depth_msgs == 50
        assert box.flush(10)
        assert durable == [50] and box.durable_seq == 50
        recs = box.read_batch(0, 1000, 1 << 20)
        assert [r.seq for r in recs] == seqs
        assert recs[3].subject == SUBJ and recs[3].payload == b"p" * 96 + b"0003"
        # limits: count, bytes (at least one record even when it alone is too big)
        assert [r.seq for r in box.read_batch(10, 5, 1 << 20)] == [11, 12, 13, 14, 15]
        assert [r.seq for r in box.read_batch(10, 100, 2 * FRAME)] == [11, 12]
        assert [r.seq for r in box.read_batch(10, 100, 1)] == [11]
        assert box.read_batch(50, 10, 1 << 20) == []
        st = box.stats()
        assert (st.appended, st.bytes_written, st.fsyncs >= 1) == (50, 50 * FRAME, True)
    finally:
        box.close()
    assert box.append(SUBJ, b"x") == CLOSED


def test_segments_roll_and_reopen_reads_disk(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts(window_bytes=0))
    fill(box, 100)
    assert box.flush(10)
    per_seg = 4096 // FRAME  # 27 frames fit in a 4096-byte segment
    names = seg_files(tmp_path)
    assert names == [files.segment_name(1 + k * per_seg) for k in range(4)]
    # window_bytes=0: everything written was evicted from memory, so this reads the files
    assert box.read_memory(0, 10, 1 << 20) is None
    assert [r.seq for r in read_all(box)] == list(range(1, 101))
    box.close()
    box = Outbox(tmp_path, opts())
    try:
        rep = box.report
        assert (rep.segments, rep.records, rep.torn_bytes, rep.corrupt_bytes) == (4, 100, 0, 0)
        got = read_all(box, batch=13)
        assert [r.seq for r in got] == list(range(1, 101))
        assert got[42].payload.endswith(b"0042")
        # reads that start in the middle of a segment use the sparse index and skip earlier records
        assert [r.seq for r in box.read_batch(60, 3, 1 << 20)] == [61, 62, 63]
        new = box.append(SUBJ, b"after")
        assert new > 100 + (1 << 19)  # continues above the reserved ceiling
        assert read_all(box, 100) == []  # readers get durable records only
        assert box.flush(10)
        # disk records, then the memory window, in one ordered stream
        assert [r.seq for r in read_all(box, 95)] == [96, 97, 98, 99, 100, new]
    finally:
        box.close()


def test_confirm_deletes_whole_segments_and_survives_reopen(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    fill(box, 100)
    assert box.flush(10)
    box.confirm(30)  # 1..27 is the first segment; 28..30 are in the second
    assert box.stats().depth_msgs == 70 and box.stats().confirmed == 30
    assert box.flush(10)
    assert seg_files(tmp_path) == [files.segment_name(s) for s in (28, 55, 82)]
    assert box.read_batch(0, 2, 1 << 20)[0].seq == 31
    box.close()
    box = Outbox(tmp_path, opts())
    try:
        assert box.report.confirmed == 30
        assert [r.seq for r in read_all(box)] == list(range(31, 101))
        box.confirm(100)
        assert box.flush(10)
        assert seg_files(tmp_path) == [] and box.stats().depth_msgs == 0
    finally:
        box.close()
    box = Outbox(tmp_path, opts())
    try:
        assert read_all(box) == []
        assert box.append(SUBJ, b"x") > 100  # the next seq survives even with every segment deleted
    finally:
        box.close()


def test_active_segment_retired_when_confirmed(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    try:
        fill(box, 5)
        assert box.flush(10)
        box.confirm(5)
        assert box.flush(10)
        assert seg_files(tmp_path) == []
        s = box.append(SUBJ, b"x")
        assert box.flush(10)
        assert seg_files(tmp_path) == [files.segment_name(s)]
        assert [r.seq for r in read_all(box)] == [s]
    finally:
        box.close()


def test_max_msgs_drop_oldest(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts(max_msgs=10))
    try:
        fill(box, 25)
        st = box.stats()
        assert (st.depth_msgs, st.dropped_full, st.dropped_through) == (10, 15, 15)
        assert box.flush(10)
        assert [r.seq for r in read_all(box)] == list(range(16, 26))
    finally:
        box.close()
    box = Outbox(tmp_path, opts(max_msgs=10))
    try:
        assert [r.seq for r in read_all(box)] == list(range(16, 26))
    finally:
        box.close()


def test_max_msgs_reject_new(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts(max_msgs=10, full_policy="reject_new"))
    try:
        fill(box, 10)
        assert [box.append(SUBJ, b"x") for _ in range(3)] == [FULL] * 3
        box.confirm(4)
        assert fill(box, 4) == [11, 12, 13, 14]
        assert box.append(SUBJ, b"x") == FULL
        st = box.stats()
        assert (st.rejected_full, st.depth_msgs, st.dropped_full) == (4, 10, 0)
    finally:
        box.close()


def test_max_bytes_drops_whole_oldest_segments(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts(max_bytes=8192))
    try:
        per_seg = 4096 // FRAME  # 27
        fill(box, 2 * per_seg)
        assert box.flush(10)  # two closed-or-full segments: 2 * 27 * 150 = 8100 bytes
        assert box.stats().stored_bytes == 2 * per_seg * FRAME
        fill(box, 1)  # 8250 > 8192: the oldest segment (27 records) goes
        st = box.stats()
        assert (st.dropped_full, st.depth_msgs, st.stored_bytes) == (per_seg, per_seg + 1, (per_seg + 1) * FRAME)
        assert box.flush(10)
        assert seg_files(tmp_path)[0] == files.segment_name(per_seg + 1)
        assert read_all(box)[0].seq == per_seg + 1
    finally:
        box.close()


def test_busy_when_writer_is_behind(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts(max_pending_bytes=10 * FRAME))
    gate = threading.Event()
    real = box._write_frames

    def stalled(frames: list[bytes]) -> int:
        assert gate.wait(10)
        return real(frames)

    box._write_frames = stalled  # type: ignore[method-assign]
    try:
        fill(box, 10)
        assert [box.append(SUBJ, b"p" * 100) for _ in range(3)] == [BUSY] * 3
        assert box.stats().rejected_busy == 3 and box.stats().appended == 10
        assert box.pending_bytes >= 10 * FRAME  # the bound is what made them BUSY
        gate.set()
        assert box.flush(10)
        assert box.append(SUBJ, b"p" * 100) == 11
    finally:
        gate.set()
        box.close()


def test_age_expiry_by_segment(tmp_path: Path) -> None:
    clock = Clock()
    # max_age 160 s: segments roll once their first record is 10 s old, so expiry is precise to 10 s.
    box = Outbox(tmp_path, opts(max_age=160.0), clock=clock)
    try:
        fill(box, 5)
        assert box.flush(10)
        clock.now += 20 * 10**9
        fill(box, 3)
        assert box.flush(10)
        assert len(seg_files(tmp_path)) == 2
        assert box.stats().oldest_age == pytest.approx(20.0)
        clock.now += 150 * 10**9  # first batch is 170 s old, second 150 s
        assert box.flush(10)
        st = box.stats()
        assert (st.dropped_age, st.depth_msgs, st.dropped_through) == (5, 3, 5)
        assert [r.seq for r in read_all(box)] == [6, 7, 8]
        assert len(seg_files(tmp_path)) == 1
    finally:
        box.close()


def test_lock_and_inspect(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    try:
        with pytest.raises(OutboxLockedError):
            Outbox(tmp_path, opts())
        fill(box, 40)
        box.confirm(10)
        assert box.flush(10)
    finally:
        box.close()
    info = inspect_store(tmp_path)
    assert (info.exists, info.confirmed, info.records, info.pending) == (True, 10, 40, 30)
    assert [s.records for s in info.segments] == [27, 13]
    assert info.oldest_pending_ts_ns is not None
    text = info.format()
    assert "pending 30 records" in text and files.segment_name(1) in text
    assert info.as_dict()["segments"][1]["first_seq"] == 28
    assert inspect_store(tmp_path / "missing").exists is False
