"""Crash safety: kill, truncate, flip bytes, copy the directory mid-write; then reopen and check."""

from __future__ import annotations

import os
import random
import shutil
import threading
from pathlib import Path

from edge.store import _files as files
from edge.store.log import SEQ_RESERVE, Outbox, OutboxOptions
from edge.store.record import Record, encode_record

SUBJ = b"telemetry.gw1.temp"


def opts(**kw: object) -> OutboxOptions:
    base: dict[str, object] = {"fsync_interval": 60.0, "fsync_every": 10**6, "segment_bytes": 4096,
                               "max_bytes": 1 << 22}
    base.update(kw)
    return OutboxOptions(**base)  # type: ignore[arg-type]


def payload(i: int) -> bytes:
    return b"%06d" % i + bytes(random.Random(i).randbytes(i % 50))


def read_all(box: Outbox, after: int = 0) -> list[Record]:
    out: list[Record] = []
    for _ in range(100_000):
        got = box.read_batch(after, 50, 1 << 20)
        if not got:
            return out
        out.extend(got)
        after = got[-1].seq
    raise AssertionError("unbounded read")


def check_prefix(recs: list[Record], upto: int) -> None:
    """Records 1..n in order with intact payloads, n >= upto."""
    assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
    assert len(recs) >= upto
    for r in recs:
        assert r.payload == payload(r.seq - 1)


def write(box: Outbox, n: int, start: int = 0) -> list[int]:
    seqs = [box.append(SUBJ, payload(start + i)) for i in range(n)]
    assert all(s > 0 for s in seqs)
    return seqs


def test_kill_keeps_durable_and_never_reuses_seqs(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    write(box, 80)
    assert box.flush(10)
    durable = box.durable_seq
    exposed = write(box, 20, 80)  # appended, maybe forwarded, never written
    box._kill()
    box = Outbox(tmp_path, opts())
    try:
        recs = read_all(box)
        check_prefix(recs, durable)
        assert len(recs) == 80
        assert box.append(SUBJ, b"new") > max(exposed)
    finally:
        box.close()


def test_no_duplicates_after_confirm_and_kill(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    write(box, 100)
    assert box.flush(10)
    box.confirm(60)
    assert box.flush(10)  # the confirmed position is persisted by the writer's next cycle
    box._kill()
    box = Outbox(tmp_path, opts())
    try:
        assert [r.seq for r in read_all(box)] == list(range(61, 101))
    finally:
        box.close()


def test_torn_tail_at_every_offset(tmp_path: Path) -> None:
    src = tmp_path / "src"
    box = Outbox(src, opts(segment_bytes=1 << 20))
    write(box, 30)
    box.close()
    seg = src / files.segment_name(1)
    data = seg.read_bytes()
    ends = []
    pos = 0
    for i in range(30):
        pos += len(encode_record(i + 1, 0, SUBJ, b"", b"", payload(i)))
        ends.append(pos)
    assert ends[-1] == len(data)
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(1, len(data)), 40)):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(src, d)
        os.truncate(d / files.segment_name(1), cut)
        box = Outbox(d, opts())
        try:
            complete = sum(1 for e in ends if e <= cut)
            good = max([0, *[e for e in ends if e <= cut]])
            rep = box.report
            assert (rep.records, rep.torn_bytes, rep.corrupt_regions) == (complete, cut - good, 0)
            check_prefix(read_all(box), complete)
            assert len(read_all(box)) == complete
        finally:
            box.close()
        if complete:
            assert (d / files.segment_name(1)).stat().st_size == good  # the torn frame was cut off
        shutil.rmtree(d)


def test_flipped_byte_in_last_segment(tmp_path: Path) -> None:
    src = tmp_path / "src"
    box = Outbox(src, opts(segment_bytes=1 << 20))
    write(box, 30)
    box.close()
    name = files.segment_name(1)
    data = (src / name).read_bytes()
    rng = random.Random(3)
    for pos in rng.sample(range(len(data)), 25):
        d = tmp_path / f"flip{pos}"
        shutil.copytree(src, d)
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        (d / name).write_bytes(bytes(bad))
        box = Outbox(d, opts())
        try:
            recs = read_all(box)
            hit = next(i for i in range(30) if pos < sum(len(encode_record(1, 0, SUBJ, b"", b"", payload(j)))
                                                         for j in range(i + 1)))
            assert len(recs) == hit
            check_prefix(recs, hit)
            rep = box.report
            assert rep.corrupt_regions + (rep.torn_bytes > 0) == 1
            assert rep.corrupt_bytes + rep.torn_bytes == len(data) - (hit and sum(
                len(encode_record(1, 0, SUBJ, b"", b"", payload(j))) for j in range(hit)))
        finally:
            box.close()
        shutil.rmtree(d)


def test_corrupt_middle_segment_skips_to_next(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    write(box, 200)
    box.close()
    names = sorted(p.name for p in tmp_path.glob("*.seg"))
    assert len(names) >= 4
    second = tmp_path / names[1]
    first_seq2 = int(names[1][:20])
    next_seq = int(names[2][:20])
    data = bytearray(second.read_bytes())
    data[len(data) // 2] ^= 0xFF
    second.write_bytes(bytes(data))
    box = Outbox(tmp_path, opts())
    try:
        rep = box.report
        assert rep.corrupt_regions == 1 and rep.corrupt_bytes > 0 and box.stats().dropped_corrupt == 1
        seqs = [r.seq for r in read_all(box)]
        lost = set(range(1, 201)) - set(seqs)
        assert seqs == sorted(seqs)
        # only a tail of the damaged segment is missing; everything from the next segment on is there
        assert lost and min(lost) > first_seq2 and max(lost) == next_seq - 1
        assert seqs[-1] == 200
    finally:
        box.close()


def test_unreadable_state_resends_and_skips_ahead(tmp_path: Path) -> None:
    box = Outbox(tmp_path, opts())
    write(box, 10)
    box.confirm(5)
    box.close()
    (tmp_path / files.STATE_NAME).write_bytes(b"{garbage")
    box = Outbox(tmp_path, opts())
    try:
        assert box.report.state_problem is not None
        assert [r.seq for r in read_all(box)] == list(range(1, 11))  # at-least-once: resend
        assert box.append(SUBJ, b"x") == 10 + 2 * SEQ_RESERVE + 1
    finally:
        box.close()


def test_snapshot_while_writing(tmp_path: Path) -> None:
    """Copy the directory while the writer is busy (a power cut at an arbitrary moment)."""
    live = tmp_path / "live"
    durable_seen = threading.Event()
    box = Outbox(live, opts(fsync_interval=0.0, fsync_every=5), lambda seq: durable_seen.set())
    snaps: list[tuple[Path, int]] = []
    try:
        n = 0
        for k in range(6):
            write(box, 150, n)
            n += 150
            assert durable_seen.wait(10)
            durable_seen.clear()
            reported = box.durable_seq  # every record up to here must survive the "crash"
            snap = tmp_path / f"snap{k}"
            shutil.copytree(live, snap, ignore=shutil.ignore_patterns(files.LOCK_NAME))
            snaps.append((snap, reported))
    finally:
        box.close()
    for snap, reported in snaps:
        b = Outbox(snap, opts())
        try:
            check_prefix(read_all(b), reported)
        finally:
            b.close()
