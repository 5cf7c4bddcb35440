"""The outbox record format: exact framing, and scans that never raise on any input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.store.record import (
    HEADER_SIZE,
    Record,
    RecordTooLargeError,
    encode_record,
    record_size,
    scan_index,
    scan_records,
)

records_st = st.lists(
    st.builds(
        Record,
        seq=st.integers(1, 2**64 - 1),
        ts_ns=st.integers(0, 2**64 - 1),
        subject=st.binary(min_size=1, max_size=40),
        reply=st.binary(max_size=20),
        headers=st.binary(max_size=30),
        payload=st.binary(max_size=200),
    ),
    min_size=1,
    max_size=8,
)


def _frames(recs: list[Record]) -> tuple[bytes, list[int]]:
    """The concatenated frames and the offset where each frame ends."""
    out = []
    ends = []
    pos = 0
    for r in recs:
        f = encode_record(*r)
        out.append(f)
        pos += len(f)
        ends.append(pos)
    return b"".join(out), ends


def test_frame_layout_and_size() -> None:
    rec = Record(7, 123, b"telemetry.gw1.temp", b"_INBOX.x", b"NATS/1.0\r\n\r\n", b"x" * 128)
    frame = encode_record(*rec)
    assert len(frame) == HEADER_SIZE + 18 + 8 + 12 + 128 == record_size(rec)
    assert scan_records(frame) == ([rec], len(frame), None)
    # 128 B payload on a 20 B subject: 180 B on disk, 1.22x the content (the budget is 1.5x).
    assert len(encode_record(1, 0, b"s" * 20, b"", b"", b"p" * 128)) == 180


def test_limits() -> None:
    with pytest.raises(RecordTooLargeError):
        encode_record(1, 0, b"s" * 65536, b"", b"", b"")
    with pytest.raises(RecordTooLargeError):
        encode_record(1, 0, b"s", b"r" * 65536, b"", b"")
    assert scan_records(encode_record(1, 0, b"s" * 65535, b"", b"", b""))[0][0].subject == b"s" * 65535


def test_max_records_and_offset() -> None:
    recs = [Record(i, i, b"a", b"", b"", bytes([i])) for i in range(1, 6)]
    buf, ends = _frames(recs)
    assert scan_records(buf, 0, max_records=2) == (recs[:2], ends[1], None)
    assert scan_records(buf, ends[1]) == (recs[2:], len(buf), None)
    idx, end, err = scan_index(buf)
    assert [(i.seq, i.offset, i.size) for i in idx] == [
        (r.seq, e - record_size(r), record_size(r)) for r, e in zip(recs, ends, strict=True)
    ]
    assert (end, err) == (len(buf), None)


@given(recs=records_st, data=st.data())
def test_split_anywhere_resumes(recs: list[Record], data: st.DataObject) -> None:
    buf, ends = _frames(recs)
    cut = data.draw(st.integers(0, len(buf)))
    first, end, err = scan_records(buf[:cut])
    assert end == max([0, *[e for e in ends if e <= cut]])
    assert first == recs[: len(first)]
    assert (err is None) == (end == cut)
    if err is not None:
        assert err.kind == "truncated" and err.offset == end
    rest, end2, err2 = scan_records(buf, end)
    assert first + rest == recs and (end2, err2) == (len(buf), None)


@given(recs=records_st, data=st.data())
def test_truncated_anywhere(recs: list[Record], data: st.DataObject) -> None:
    buf, ends = _frames(recs)
    cut = data.draw(st.integers(0, len(buf) - 1))
    got, end, err = scan_records(buf[:cut])
    complete = sum(1 for e in ends if e <= cut)
    assert got == recs[:complete]
    assert err is not None or cut in (0, *ends)
    idx, iend, ierr = scan_index(buf[:cut])
    assert [i.seq for i in idx] == [r.seq for r in recs[:complete]] and (iend, ierr) == (end, err)


@given(recs=records_st, data=st.data())
def test_flipped_byte_anywhere(recs: list[Record], data: st.DataObject) -> None:
    buf, ends = _frames(recs)
    pos = data.draw(st.integers(0, len(buf) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(buf)
    bad[pos] ^= flip
    got, end, err = scan_records(bytes(bad))
    hit = next(i for i, e in enumerate(ends) if pos < e)  # the frame holding the flipped byte
    assert got == recs[:hit]
    assert end == (ends[hit - 1] if hit else 0)
    assert err is not None and err.offset == end  # corrupt, or a length that now runs past the end


@settings(max_examples=300)
@given(st.binary(max_size=400), st.integers(0, 50))
def test_garbage_never_raises(buf: bytes, offset: int) -> None:
    _got, end, err = scan_records(buf, min(offset, len(buf)))
    assert end <= len(buf)
    assert err is not None or end == len(buf)
    scan_index(buf, min(offset, len(buf)))


def test_zero_fill_is_corrupt() -> None:
    # ext4 can leave a zero-filled tail after a crash; zeros must read as corruption, not records.
    frame = encode_record(1, 0, b"a", b"", b"", b"x")
    got, end, err = scan_records(frame + bytes(64))
    assert got == [Record(1, 0, b"a", b"", b"", b"x")]
    assert end == len(frame) and err is not None and err.kind == "corrupt"
