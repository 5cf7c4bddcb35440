"""Unit tests for edge.bench.wire: frame building, bulk counting under every split, verification."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bench.wire import (
    MAX_WINDOW_FRAMES,
    Control,
    FrameBatch,
    Msg,
    SeqTracker,
    StreamVerifier,
    WireError,
    check_exactly_once,
    msg_header,
    parse_op,
    payload,
    percentile,
    pub_frame,
    pub_header,
    seq_columns,
)

SUBJ = "bench.t"
SIZE = 16
HEADER = msg_header(SUBJ, "1", SIZE)


def msg_frame(seq: int, size: int = SIZE, subject: str = SUBJ) -> bytes:
    return msg_header(subject, "1", size) + payload(seq, size) + b"\r\n"


def stream(seqs: list[int], size: int = SIZE) -> bytes:
    return b"".join(msg_frame(s, size) for s in seqs)


def parse_all(data: bytes) -> list[Msg | Control]:
    ops: list[Msg | Control] = []
    pos = 0
    while (parsed := parse_op(data, pos)) is not None:
        op, pos = parsed
        ops.append(op)
    assert pos == len(data)
    return ops


# ------------------------------------------------------------------------------------------------ frames


def test_frames_have_the_nats_layout() -> None:
    assert pub_header("a.b", 16) == b"PUB a.b 16\r\n"
    assert pub_header("a.b", 16, "r.1") == b"PUB a.b r.1 16\r\n"
    assert msg_header("a.b", "7", 3) == b"MSG a.b 7 3\r\n"
    frame = pub_frame("a.b", 258, 16)
    assert frame.startswith(b"PUB a.b 16\r\n\x02\x01\x00\x00\x00\x00\x00\x00")
    assert frame.endswith(b"\r\n") and len(frame) == len(b"PUB a.b 16\r\n") + 16 + 2


def test_payload_rejects_sizes_below_the_sequence_field() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        payload(0, 7)


@pytest.mark.parametrize(
    "first",
    [0, 1, 250, 255, 65530, 65536 * 3 - 7, 2**24 - 3, 2**32 - 100, 2**40 - 1, 2**56 - 5],
)
@pytest.mark.parametrize("count", [1, 7, 300, MAX_WINDOW_FRAMES])
def test_seq_columns_match_the_little_endian_bytes(first: int, count: int) -> None:
    cols = seq_columns(first, count)
    expected = [bytes((s >> (8 * j)) & 0xFF for s in range(first, first + count)) for j in range(8)]
    assert cols == expected


def test_seq_columns_bounds() -> None:
    with pytest.raises(ValueError):
        seq_columns(0, 0)
    with pytest.raises(ValueError):
        seq_columns(0, MAX_WINDOW_FRAMES + 1)


@pytest.mark.parametrize("size", [8, 16, 128, 1024])
def test_frame_batch_numbers_every_frame(size: int) -> None:
    batch = FrameBatch(pub_header(SUBJ, size), size)
    assert batch.count * batch.frame_len <= 256 * 1024 + batch.frame_len
    for first in (0, 123_456_789):
        data = bytes(batch.set_first(first))
        # PUB frames are client ops: check them through their MSG twins' parser by rewriting the op.
        as_msgs = data.replace(f"PUB {SUBJ} {size}\r\n".encode(), msg_header(SUBJ, "1", size))
        ops = parse_all(as_msgs)
        assert len(ops) == batch.count
        seqs = [int.from_bytes(op.payload[:8], "little") for op in ops if isinstance(op, Msg)]
        assert seqs == list(range(first, first + batch.count))
        assert all(isinstance(op, Msg) and op.payload[8:] == payload(0, size)[8:] for op in ops)


# ------------------------------------------------------------------------------------------------ parser


def test_parse_op_messages_and_controls() -> None:
    data = (
        b"INFO {\"a\":1} \r\nMSG s 1 r.x 2\r\nhi\r\nping\r\nPONG\n+OK\r\n-ERR 'Stale Connection'\r\n"
        b"HMSG s 2 12 14\r\nNATS/1.0\r\n\r\nyo\r\n"
    )
    ops = parse_all(data)
    assert ops[0] == Control("INFO", b'{"a":1}')
    assert ops[1] == Msg(b"s", b"1", b"r.x", b"hi", b"")
    assert [o.kind for o in ops[2:5] if isinstance(o, Control)] == ["PING", "PONG", "+OK"]
    assert ops[5] == Control("-ERR", b"'Stale Connection'")
    assert ops[6] == Msg(b"s", b"2", None, b"yo", b"NATS/1.0\r\n\r\n")


def test_parse_op_incomplete_returns_none_at_every_cut() -> None:
    data = b"MSG s 1 5\r\nhello\r\n"
    for cut in range(len(data)):
        assert parse_op(data[:cut], 0) is None
    assert parse_op(data, 0) == (Msg(b"s", b"1", None, b"hello"), len(data))


@pytest.mark.parametrize(
    "bad",
    [b"MSG s 1 2\r\nhiX\r\n", b"MSG s 1 x\r\n", b"MSG s\r\n", b"FOO bar\r\n", b"\r\n", b"HMSG s 1 9 3\r\n"],
)
def test_parse_op_rejects_garbage_with_wire_error(bad: bytes) -> None:
    with pytest.raises(WireError):
        parse_op(bad, 0)


def test_parse_op_bounds_an_endless_control_line() -> None:
    with pytest.raises(WireError, match="too long"):
        parse_op(b"MSG " + b"x" * 5000, 0)


# ------------------------------------------------------------------------------------------ verification


def feed_chunks(v: StreamVerifier, data: bytes, cuts: list[int]) -> int:
    pings = 0
    prev = 0
    for cut in [*sorted(cuts), len(data)]:
        pings += v.feed(data[prev:cut])
        prev = cut
    return pings


def assert_clean(v: StreamVerifier, total: int) -> None:
    t = v.tracker
    assert (v.frames, t.unique, t.duplicates, t.reordered, t.missing(total), v.errors) == (
        total, total, 0, 0, 0, []
    )


def test_split_at_every_position_counts_and_verifies() -> None:
    data = stream(list(range(6)))
    for cut in range(len(data) + 1):
        v = StreamVerifier(HEADER, SIZE)
        feed_chunks(v, data, [cut])
        assert_clean(v, 6)


def test_two_splits_at_every_pair_of_positions() -> None:
    data = stream(list(range(3)))
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1):
            v = StreamVerifier(HEADER, SIZE)
            feed_chunks(v, data, [a, b])
            assert_clean(v, 3)


def test_byte_at_a_time_with_pings_info_and_errors() -> None:
    data = (
        b"INFO {} \r\n" + stream([0, 1]) + b"PING\r\n" + stream([2]) + b"+OK\r\n" + b"-ERR 'boom'\r\n"
        + stream([3, 4])
    )
    v = StreamVerifier(HEADER, SIZE)
    pings = feed_chunks(v, data, list(range(1, len(data))))
    assert pings == 1
    assert v.errors == ["-ERR 'boom'"]
    assert v.frames == 5 and v.tracker.unique == 5 and v.tracker.missing(5) == 0


def test_large_windows_take_the_bulk_path() -> None:
    n = 50_000
    v = StreamVerifier(HEADER, SIZE)
    data = stream(list(range(n)))
    feed_chunks(v, data, list(range(0, len(data), 1_000_003)))
    assert_clean(v, n)
    assert v.slow_ops <= 100  # only frames split by the chunk boundaries go through the parser


@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@settings(max_examples=60, deadline=None)
def test_random_splits(cuts: list[int]) -> None:
    data = b"PING\r\n" + stream(list(range(200)), 24) + b"PING\r\n"
    v = StreamVerifier(msg_header(SUBJ, "1", 24), 24)
    pings = feed_chunks(v, data, [c % (len(data) + 1) for c in cuts])
    assert pings == 2
    assert_clean(v, 200)


@pytest.mark.parametrize(
    ("seqs", "missing", "dups", "reordered"),
    [
        ([0, 1, 2, 4, 5], 1, 0, 0),  # loss
        ([0, 1, 2, 2, 3, 4, 5], 0, 1, 0),  # duplicate
        ([0, 1, 3, 2, 4, 5], 0, 0, 1),  # reordering
        ([0, 1, 2, 3, 4], 1, 0, 0),  # the tail never arrived
        ([5, 4, 3, 2, 1, 0], 0, 0, 5),
        ([0, 3, 3, 1, 5], 2, 1, 1),
    ],
)
def test_loss_duplicates_and_reordering_are_found(seqs: list[int], missing: int, dups: int, reordered: int) -> None:
    for split in (False, True):
        v = StreamVerifier(HEADER, SIZE)
        data = stream(seqs)
        feed_chunks(v, data, list(range(1, len(data))) if split else [])
        t = v.tracker
        assert (t.missing(6), t.duplicates, t.reordered) == (missing, dups, reordered)
        assert v.frames == len(seqs)


def test_an_anomaly_inside_a_large_window_is_located_exactly() -> None:
    seqs = list(range(20_000))
    seqs.insert(12_345, 777)  # a duplicate deep inside one bulk window
    del seqs[15_000]  # and a loss further on
    v = StreamVerifier(HEADER, SIZE)
    v.feed(stream(seqs))
    t = v.tracker
    assert (t.duplicates, t.missing(20_000), t.reordered, v.frames) == (1, 1, 0, 20_000)


def test_a_foreign_message_is_an_error_not_a_count() -> None:
    v = StreamVerifier(HEADER, SIZE)
    v.feed(stream([0]) + msg_frame(1, 32) + stream([1]))
    assert v.frames == 2 and v.tracker.unique == 2
    assert v.errors and "32 bytes" in v.errors[0]


def test_seq_tracker_run_after_gap() -> None:
    t = SeqTracker()
    t.add_run(0, 10)
    t.add_run(20, 5)
    t.add_run(10, 10)
    assert (t.unique, t.reordered, t.duplicates, t.missing(25)) == (25, 10, 0, 0)


# ------------------------------------------------------------------------------------------- queue groups


def collect(seqs: list[int], split: bool = False) -> bytes:
    v = StreamVerifier(HEADER, SIZE, collect=True)
    data = stream(seqs)
    feed_chunks(v, data, list(range(1, len(data), 7)) if split else [])
    assert v.frames == len(seqs)
    return v.collected_bytes()


def test_queue_members_exactly_once() -> None:
    members = [collect([s for s in range(3000) if s % 3 == k], split=k == 1) for k in range(3)]
    check = check_exactly_once(members, 3000)
    assert check.ok and check.unique == 3000


@pytest.mark.parametrize(
    ("parts", "missing", "dups", "reordered"),
    [
        ([[0, 2, 4], [1, 3]], 1, 0, 0),
        ([[0, 2, 4, 5], [1, 3, 5]], 0, 1, 0),  # delivered to two members
        ([[0, 4, 2, 5], [1, 3]], 0, 0, 1),  # a member saw its messages out of order
    ],
)
def test_queue_check_finds_loss_duplicates_and_reordering(
    parts: list[list[int]], missing: int, dups: int, reordered: int
) -> None:
    check = check_exactly_once([collect(p) for p in parts], 6)
    assert not check.ok
    assert (check.missing, check.duplicates, check.reordered) == (missing, dups, reordered)


def test_queue_check_counts_numbers_never_sent() -> None:
    check = check_exactly_once([array("Q", [0, 1, 9]).tobytes()], 2)
    assert check.out_of_range == 1 and not check.ok


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 50) == 3.0
    assert percentile([], 50) != percentile([], 50)  # NaN
