"""Read-only inspection of an outbox directory, for ``nats-edge outbox`` with the broker stopped.

:func:`inspect_store` is a function of the directory's contents only: it takes no lock, writes
nothing and repairs nothing (opening an :class:`~edge.store.log.Outbox` does the repairs).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from edge.store import _files as files
from edge.store.log import scan_segment_file

__all__ = ["SegmentInfo", "StoreInspection", "inspect_store"]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    name: str
    bytes: int
    records: int
    first_seq: int | None
    last_seq: int | None
    first_ts_ns: int | None
    last_ts_ns: int | None
    bad_bytes: int  # after the last valid frame (torn tail or corruption)
    problem: str | None  # "truncated at 123: ..." / "corrupt at 456: CRC mismatch"


@dataclass(frozen=True, slots=True)
class StoreInspection:
    directory: str
    exists: bool
    confirmed: int
    dropped_through: int
    seq_ceiling: int
    state_problem: str | None
    segments: tuple[SegmentInfo, ...]
    records: int  # valid records in all segments
    pending: int  # valid records above max(confirmed, dropped_through): still to forward
    bytes: int
    oldest_pending_ts_ns: int | None
    temp_files: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, now_ns: int | None = None) -> str:
        """A few lines for a terminal."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        if not self.exists:
            return f"{self.directory}: no outbox here"
        age = "-"
        if self.oldest_pending_ts_ns is not None:
            age = f"{max(0.0, (now_ns - self.oldest_pending_ts_ns) / 1e9):.1f}s"
        lines = [
            f"outbox {self.directory}",
            f"  pending {self.pending} records (oldest {age}), stored {self.records} records in "
            f"{len(self.segments)} segments, {self.bytes} bytes",
            f"  confirmed through {self.confirmed}, dropped through {self.dropped_through}, "
            f"seq ceiling {self.seq_ceiling}",
        ]
        if self.state_problem:
            lines.append(f"  state: {self.state_problem}")
        for seg in self.segments:
            rng = "empty" if seg.first_seq is None else f"seq {seg.first_seq}..{seg.last_seq}"
            extra = f"  !! {seg.problem} ({seg.bad_bytes} bytes unreadable)" if seg.problem else ""
            lines.append(f"  {seg.name}  {seg.bytes:>10} B  {seg.records:>8} records  {rng}{extra}")
        return "\n".join(lines)


def inspect_store(directory: str | os.PathLike[str]) -> StoreInspection:
    """Describe the outbox in ``directory`` without modifying it."""
    d = os.fspath(directory)
    if not os.path.isdir(d):
        return StoreInspection(d, False, 0, 0, 0, None, (), 0, 0, 0, None, 0)
    state, problem = files.read_state(d)
    state = state or files.StoreState()
    floor = max(state.confirmed, state.dropped_through)
    segs: list[SegmentInfo] = []
    records = pending = total = 0
    oldest: int | None = None
    prev = 0
    for _first, path in files.list_segments(d):
        scan = scan_segment_file(path, prev)
        frames = scan.frames
        why = None
        if scan.error is not None:
            why = f"{scan.error.kind} at {scan.error.offset}: {scan.error.reason}"
        segs.append(SegmentInfo(
            name=os.path.basename(path), bytes=scan.size, records=len(frames),
            first_seq=frames[0].seq if frames else None, last_seq=frames[-1].seq if frames else None,
            first_ts_ns=frames[0].ts_ns if frames else None, last_ts_ns=frames[-1].ts_ns if frames else None,
            bad_bytes=scan.size - scan.valid_end, problem=why,
        ))
        records += len(frames)
        total += scan.size
        live = [f for f in frames if f.seq > floor]
        pending += len(live)
        if live and oldest is None:
            oldest = live[0].ts_ns
        if frames:
            prev = frames[-1].seq
    temps = sum(1 for n in os.listdir(d) if n.endswith(files.TMP_SUFFIX))
    return StoreInspection(
        directory=d, exists=True, confirmed=state.confirmed, dropped_through=state.dropped_through,
        seq_ceiling=state.seq_ceiling, state_problem=problem, segments=tuple(segs), records=records,
        pending=pending, bytes=total, oldest_pending_ts_ns=oldest, temp_files=temps,
    )
