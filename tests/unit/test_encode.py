"""The frame encoders (edge.protocol.encode), the outbound buffer's rules and ConnectOptions, without sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.core.outbound import OutboundBuffer
from edge.protocol.connect import ConnectOptions
from edge.protocol.encode import (
    encode_connect,
    encode_err,
    encode_hmsg,
    encode_info,
    encode_lmsg,
    encode_ls_minus,
    encode_ls_plus,
    encode_msg,
    hmsg_head,
    hmsg_tail,
    msg_head,
    msg_tail,
)
from edge.protocol.errors import ProtocolError
from edge.protocol.parser import Parser

# -- exact bytes (docs/nats-protocol.md 1.5, 1.6, 3.4, 3.5) --------------------------------------------


@pytest.mark.parametrize(("args", "wire"), [
    ((b"a.b", b"1", None, b"hello"), b"MSG a.b 1 5\r\nhello\r\n"),
    ((b"a.b", b"22", b"_INBOX.x", b"hi"), b"MSG a.b 22 _INBOX.x 2\r\nhi\r\n"),
    ((b"a", b"9", None, b""), b"MSG a 9 0\r\n\r\n"),
    ((b"a", b"9", b"", b"x"), b"MSG a 9 1\r\nx\r\n"),  # an empty reply is no reply
])
def test_msg(args: tuple[bytes, bytes, bytes | None, bytes], wire: bytes) -> None:
    assert encode_msg(*args) == wire


@pytest.mark.parametrize(("args", "wire"), [
    ((b"a.b", b"1", None, 12, b"NATS/1.0\r\n\r\nhi"), b"HMSG a.b 1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
    ((b"a.b", b"1", b"r.1", 12, b"NATS/1.0\r\n\r\n"), b"HMSG a.b 1 r.1 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
])
def test_hmsg(args: tuple[bytes, bytes, bytes | None, int, bytes], wire: bytes) -> None:
    assert encode_hmsg(*args) == wire


@pytest.mark.parametrize(("args", "wire"), [
    ((b"a.b", None, [], 0, b"hello"), b"LMSG a.b 5\r\nhello\r\n"),
    ((b"a.b", b"_INBOX.x", [], 0, b"hi"), b"LMSG a.b _INBOX.x 2\r\nhi\r\n"),
    ((b"q.s", b"_INBOX.y", [b"g1", b"g2"], 0, b"x"), b"LMSG q.s + _INBOX.y g1 g2 1\r\nx\r\n"),
    ((b"q.s", None, [b"g1"], 0, b"x"), b"LMSG q.s | g1 1\r\nx\r\n"),
    ((b"a.c", b"r", [], 12, b"NATS/1.0\r\n\r\nhi"), b"HMSG a.c r 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
    ((b"q.t", None, [b"g1"], 12, b"NATS/1.0\r\n\r\n"), b"HMSG q.t | g1 12 12\r\nNATS/1.0\r\n\r\n\r\n"),
])
def test_lmsg(args: tuple[bytes, bytes | None, list[bytes], int, bytes], wire: bytes) -> None:
    assert encode_lmsg(*args) == wire


def test_interest_lines() -> None:
    assert encode_ls_plus(b"a.*", None, 1) == b"LS+ a.*\r\n"
    assert encode_ls_plus(b"w.>", b"q", 3) == b"LS+ w.> q 3\r\n"
    assert encode_ls_minus(b"a.*", None) == b"LS- a.*\r\n"
    assert encode_ls_minus(b"w.>", b"q") == b"LS- w.> q\r\n"


def test_json_and_text_frames() -> None:
    assert encode_info({"server_id": "N1", "max_payload": 1024}) == b'INFO {"server_id":"N1","max_payload":1024} \r\n'
    assert encode_connect({"verbose": False}) == b'CONNECT {"verbose":false}\r\n'
    assert encode_err("Stale Connection") == b"-ERR 'Stale Connection'\r\n"


_tokens = st.text(alphabet="abcxyz_-0123", min_size=1, max_size=8).map(str.encode)
_subjects = st.lists(_tokens, min_size=1, max_size=4).map(b".".join)
_replies = st.none() | _subjects


@given(_subjects, st.integers(1, 10**6).map(lambda n: b"%d" % n), _replies, st.binary(max_size=300))
def test_router_parts_are_the_frame(subject: bytes, sid: bytes, reply: bytes | None, payload: bytes) -> None:
    """The router's shared head + sid + tail is byte for byte the whole frame."""
    assert msg_head(subject) + sid + msg_tail(reply, payload) == encode_msg(subject, sid, reply, payload)
    data = b"NATS/1.0\r\n\r\n" + payload
    assert hmsg_head(subject) + sid + hmsg_tail(reply, 12, data) == encode_hmsg(subject, sid, reply, 12, data)


class _Collect:
    """A leaf handler that records LMSG/HMSG as the hub's parser sees them."""

    def __init__(self) -> None:
        self.msgs: list[tuple[bytes, bytes | None, list[bytes], int, bytes]] = []

    def on_lmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], payload: bytes) -> None:
        self.msgs.append((subject, reply, queues, 0, payload))

    def on_lhmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], hdr_len: int, data: bytes) -> None:
        self.msgs.append((subject, reply, queues, hdr_len, data))


@given(_subjects, _replies, st.lists(_tokens, max_size=3), st.booleans(), st.binary(max_size=300))
def test_lmsg_parses_back(subject: bytes, reply: bytes | None, queues: list[bytes], headers: bool,
                          payload: bytes) -> None:
    """What we send a hub is what a leaf parser reads (ours follows nats-server's, docs 3.5)."""
    data = b"NATS/1.0\r\n\r\n" + payload if headers else payload
    hdr_len = 12 if headers else 0
    h = _Collect()
    Parser(h, kind="leaf").feed(encode_lmsg(subject, reply, queues, hdr_len, data))
    assert h.msgs == [(subject, reply or None, queues, hdr_len, data)]


# -- OutboundBuffer --------------------------------------------------------------------------------------


class _Owner:
    def __init__(self) -> None:
        self.dirty = 0
        self.overflows = 0

    def mark_dirty(self, owner: object) -> None:
        assert owner is self
        self.dirty += 1

    def on_overflow(self) -> None:
        self.overflows += 1


def test_buffer_marks_dirty_once_per_turn_and_counts_messages_only() -> None:
    o = _Owner()
    b = OutboundBuffer(o, o.mark_dirty, 100, o.on_overflow)
    b.append(b"PONG\r\n")
    b.add_msg(b"MSG a 1 2\r\nhi\r\n", 2)
    b.add_parts(b"MSG a ", b"1", b" 2\r\nhi\r\n", 2)
    assert (o.dirty, b.size, b.msgs, b.bytes) == (1, 6 + 15 + 15, 2, 4)
    assert b.take() == b"PONG\r\nMSG a 1 2\r\nhi\r\nMSG a 1 2\r\nhi\r\n" and b.size == 0
    b.add_batch(b"xyz", 3, 30)
    assert (o.dirty, b.size, b.msgs, b.bytes) == (2, 3, 5, 34)


def test_buffer_past_its_limit_tells_the_owner_once_per_message() -> None:
    o = _Owner()
    b = OutboundBuffer(o, o.mark_dirty, 20, o.on_overflow)
    assert b.add_msg(b"x" * 20, 20) and o.overflows == 0  # at the limit is not past it
    assert b.add_msg(b"y", 1) and o.overflows == 1  # queued, then reported (the owner closes)
    assert b.take() == b"x" * 20 + b"y"  # the owner's flush writes it ...
    b.written(backlog=15)  # ... and the transport holds 15 of the 20: 5 left for the next turn
    assert (b.limit, b.room, o.overflows) == (5, 5, 1)
    b.written(backlog=21)
    assert o.overflows == 2


def test_buffer_without_overflow_policy_refuses_when_full() -> None:
    o = _Owner()
    b = OutboundBuffer(o, o.mark_dirty, 10)
    assert b.add_msg(b"x" * 12, 12)  # room was left when offered
    assert not b.add_msg(b"y", 1) and not b.add_parts(b"a", b"b", b"c", 1)
    b.append(b"PING\r\n")  # protocol lines are never refused
    assert (b.msgs, b.size, o.overflows) == (1, 18, 0)


def test_closed_buffer_drops_everything() -> None:
    o = _Owner()
    b = OutboundBuffer(o, o.mark_dirty, 100, o.on_overflow)
    b.append(b"INFO {} \r\n")
    b.close()
    b.append(b"PONG\r\n")
    assert not b.add_msg(b"m", 1) and not b.add_parts(b"a", b"b", b"c", 1)
    b.add_batch(b"z", 1, 1)
    assert (b.size, b.chunks, b.msgs, o.dirty) == (0, [], 0, 1)


def test_reload_sets_a_new_bound() -> None:
    o = _Owner()
    b = OutboundBuffer(o, o.mark_dirty, 100, o.on_overflow)
    b.set_max_pending(50, backlog=10)
    assert (b.max_pending, b.limit) == (50, 40)


# -- ConnectOptions --------------------------------------------------------------------------------------


def test_connect_options_merge_keeps_what_a_repeated_connect_omits() -> None:
    first = ConnectOptions().merged({"verbose": False, "headers": True, "name": "dev", "lang": 3})
    assert first == ConnectOptions(verbose=False, headers=True, name="dev", lang="")
    again = first.merged({"echo": False})
    assert again == ConnectOptions(verbose=False, echo=False, headers=True, name="dev")
    assert ConnectOptions().merged(again.as_connect()) == again


@pytest.mark.parametrize(("options", "text"), [
    ({"protocol": 2}, "invalid client protocol"),
    ({"protocol": True}, "invalid client protocol"),
    ({"protocol": "1"}, "invalid client protocol"),
    ({"no_responders": True}, "no responders requires headers support"),
])
def test_connect_options_refused_with_nats_server_texts(options: dict[str, object], text: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        ConnectOptions().merged(options)
    assert exc.value.text == text


def test_connect_options_json_round_trip() -> None:
    opts = ConnectOptions(pedantic=False, protocol=1, version="1.2")
    assert json.loads(encode_connect(opts.as_connect())[len(b"CONNECT "):]) == opts.as_connect()
