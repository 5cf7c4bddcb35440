"""The forwarder's pure parts: pacing, pong and PubAck windows, the Nats-Msg-Id header, the batch encoder."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config.store_forward import StoreForwardSettings
from edge.store.forwarder import AckWindow, Forwarder, PongWindow, TokenBucket, with_msg_id
from edge.store.log import Outbox, OutboxOptions
from edge.store.record import Record


def test_with_msg_id_adds_or_keeps() -> None:
    assert with_msg_id(b"", b"gw-1") == b"NATS/1.0\r\nNats-Msg-Id: gw-1\r\n\r\n"
    assert with_msg_id(b"NATS/1.0\r\nA: b\r\n\r\n", b"gw-2") == b"NATS/1.0\r\nA: b\r\nNats-Msg-Id: gw-2\r\n\r\n"
    own = b"NATS/1.0\r\nnats-msg-id: mine\r\n\r\n"
    assert with_msg_id(own, b"gw-3") == own
    assert with_msg_id(b"garbage", b"gw-4") == b"NATS/1.0\r\nNats-Msg-Id: gw-4\r\n\r\n"


def test_token_bucket_paces_to_rate() -> None:
    b = TokenBucket(1000, 100)
    assert b.delay(100, 10.0) == 0.0
    assert abs(b.delay(100, 10.0) - 0.1) < 1e-9  # 100 records over the burst at 1000/s
    assert b.delay(50, 10.25) == 0.0  # refilled 250, capped at 100... minus the debt of 100
    assert TokenBucket(0, 10).delay(10**9, 0.0) == 0.0


def test_pong_window_confirms_in_ping_order_and_resets() -> None:
    w = PongWindow(confirmed=10, max_batches=2)
    w.batch_sent(20, ping=3)  # a keepalive PING was #1 and #2
    w.batch_sent(30, ping=4)
    assert not w.can_send()
    assert w.pong(2) is None  # PONGs to the keepalive PINGs confirm nothing
    assert w.pong(3) == 20 and w.confirmed == 20 and w.can_send()
    w.batch_sent(40, ping=5)
    assert w.reset() == 20  # 21..40 go again
    assert (w.sent, w.confirmed, list(w.inflight)) == (20, 20, [])
    assert w.pong(9) is None


def test_ack_window_confirms_the_acknowledged_prefix() -> None:
    w = AckWindow(confirmed=0, max_outstanding=3)
    for s in (1, 2, 5):  # seqs need not be consecutive (drops, restarts)
        w.record_sent(s, 0.0)
    assert not w.can_send()
    assert w.ack(2, 1.0) is None
    assert w.ack(2, 1.0) is None  # a duplicate PubAck is harmless
    assert w.ack(1, 1.0) == 2
    assert w.ack(7, 1.0) is None  # never sent
    assert w.expired(7.0, 5.0) and not w.expired(2.0, 5.0)
    assert w.reset() == 1 and w.sent == 2
    assert w.ack(5, 8.0) is None  # from before the reset: ignored, it is sent again


@given(st.permutations(list(range(1, 41))))
def test_ack_window_any_ack_order_confirms_everything(order: list[int]) -> None:
    w = AckWindow(confirmed=0, max_outstanding=100)
    for s in range(1, 41):
        w.record_sent(s, 0.0)
    best = 0
    for s in order:
        new = w.ack(s, 0.0)
        if new is not None:
            assert new > best
            best = new
        assert w.confirmed == best
        assert all(x in set(order[: order.index(s) + 1]) for x in range(1, best + 1))
    assert best == 40 and not w.order and not w.acked


# -- the batch encoder ------------------------------------------------------------------------------


def _forwarder(confirm: str = "pong", prefix: str = "") -> Forwarder:
    settings = StoreForwardSettings(subjects=("t.>",), confirm=confirm,  # type: ignore[arg-type]
                                    jetstream_subject_prefix=prefix)
    fw = Forwarder(None, settings, "", None)  # type: ignore[arg-type]
    fw.gateway = b"gw1"
    fw._inbox = b"_SF.abc."
    if confirm == "jetstream":
        fw._ackw = AckWindow(0, 1000)
    return fw


RECS = [
    Record(1, 0, b"t.a", b"", b"", b"hello"),
    Record(2, 0, b"t.b", b"", b"NATS/1.0\r\nX: y\r\n\r\n", b""),
    Record(7, 0, b"t.c", b"_INBOX.r", b"NATS/1.0\r\nNats-Msg-Id: mine\r\n\r\n", b"x" * 300),
    Record(123456, 0, b"t.d", b"", b"", b"\r\nPUB t.x 1\r\n"),
]
# Each record's headers on the wire: its Nats-Msg-Id added (gateway-seq), a publisher's own id kept.
HDRS = [
    b"NATS/1.0\r\nNats-Msg-Id: gw1-1\r\n\r\n",  # 32 bytes
    b"NATS/1.0\r\nX: y\r\nNats-Msg-Id: gw1-2\r\n\r\n",  # 38
    b"NATS/1.0\r\nNats-Msg-Id: mine\r\n\r\n",  # 31
    b"NATS/1.0\r\nNats-Msg-Id: gw1-123456\r\n\r\n",  # 37
]


@pytest.mark.parametrize(("confirm", "prefix"), [("pong", ""), ("jetstream", ""), ("jetstream", "up")])
def test_encode_frames_each_record_exactly(confirm: str, prefix: str) -> None:
    fw = _forwarder(confirm, prefix)
    left = collections.deque(RECS)
    data, count, last, nbytes = fw._encode(left, 100, 1 << 20, confirm == "jetstream", 1.0)
    assert [len(h) for h in HDRS] == [32, 38, 31, 37]
    if confirm == "pong":  # plain leaf HMSGs, no reply (docs 3.5)
        heads = [b"HMSG t.a 32 37", b"HMSG t.b 38 38", b"HMSG t.c 31 331", b"HMSG t.d 37 50"]
    else:  # requests to the (prefixed) stream subject, the reply on the forwarder's inbox
        p = b"up." if prefix else b""
        heads = [b"HMSG " + p + b"t.a _SF.abc.1 32 37", b"HMSG " + p + b"t.b _SF.abc.2 38 38",
                 b"HMSG " + p + b"t.c _SF.abc.7 31 331", b"HMSG " + p + b"t.d _SF.abc.123456 37 50"]
    payloads = [b"hello", b"", b"x" * 300, b"\r\nPUB t.x 1\r\n"]
    assert data == b"".join(h + b"\r\n" + hd + pl + b"\r\n" for h, hd, pl in zip(heads, HDRS, payloads, strict=True))
    assert (count, last, nbytes, not left) == (4, 123456, 37 + 38 + 331 + 50, True)
    if confirm == "jetstream":
        assert fw._ackw is not None and list(fw._ackw.order) == [1, 2, 7, 123456]


def test_encode_for_a_hub_without_headers_sends_lmsg_without_them() -> None:
    """As LeafLink.send_msg strips headers for such a hub; the counted bytes still include them."""
    fw = _forwarder()
    data, count, last, nbytes = fw._encode(collections.deque(RECS), 100, 1 << 20, False, 1.0, headers=False)
    assert data == (b"LMSG t.a 5\r\nhello\r\nLMSG t.b 0\r\n\r\nLMSG t.c 300\r\n" + b"x" * 300
                    + b"\r\nLMSG t.d 13\r\n\r\nPUB t.x 1\r\n\r\n")
    assert (count, last, nbytes) == (4, 123456, 37 + 38 + 331 + 50)


def test_encode_stops_at_count_and_byte_budget() -> None:
    fw = _forwarder()
    ahead = collections.deque(RECS)
    _, count, last, _ = fw._encode(ahead, 2, 1 << 20, False, 0.0)
    assert (count, last, [r.seq for r in ahead]) == (2, 2, [7, 123456])
    _, count, last, _ = fw._encode(ahead, 100, 1, False, 0.0)  # at least one record, even over budget
    assert (count, last, [r.seq for r in ahead]) == (1, 7, [123456])


def test_large_reads_from_disk_across_index_checkpoints(tmp_path: Path) -> None:
    """The forwarder reads ahead in large reads; from disk they start at a checkpoint and decode only
    what is asked for. Every start position and size must give exactly the next records in order."""
    box = Outbox(tmp_path, OutboxOptions(fsync_interval=60.0, fsync_every=10**6, window_bytes=0,
                                         segment_bytes=256 * 1024, max_bytes=1 << 24))
    try:
        n = 5000  # ~150 B frames: ~3 segments of ~1700 records, ~4 checkpoints each
        for i in range(n):
            assert box.append(b"t.x", b"%0100d" % i) == i + 1
        assert box.flush(10)
        assert box.read_memory(0, 10, 1 << 20) is None  # from the files
        for after in (0, 1, 436, 437, 438, 1700, 1747, 3000, 4990):
            for want in (1, 500, 2000):
                got = box.read_batch(after, want, 2 << 20)
                expect = list(range(after + 1, min(n, after + want) + 1))
                assert [r.seq for r in got] == expect, (after, want)
                assert all(int(r.payload) == r.seq - 1 for r in got)
        box.confirm(2500)
        assert [r.seq for r in box.read_batch(100, 3, 1 << 20)] == [2501, 2502, 2503]  # above the floor
        assert box.floor == 2500
    finally:
        box.close()
