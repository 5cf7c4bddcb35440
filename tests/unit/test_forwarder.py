"""The forwarder's pure parts: pacing, pong and PubAck windows, the Nats-Msg-Id header."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge.store.forwarder import AckWindow, PongWindow, TokenBucket, with_msg_id


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
