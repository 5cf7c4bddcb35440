"""The sans-IO parser on its own: every input split at every point, garbage never escapes as a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.protocol.errors import ProtocolError
from edge.protocol.parser import Parser


class Recorder:
    """Records every op the parser dispatches, as plain tuples."""

    def __init__(self) -> None:
        self.ops: list[tuple[Any, ...]] = []

    def on_connect(self, o: dict[str, Any], raw: bytes = b"") -> None:
        assert json.loads(raw) == o  # the JSON as sent, for the trace
        self.ops.append(("CONNECT", o))

    def on_info(self, o: dict[str, Any]) -> None:
        self.ops.append(("INFO", o))

    def on_pub(self, s: bytes, r: bytes | None, p: bytes) -> None:
        self.ops.append(("PUB", s, r, p))

    def on_hpub(self, s: bytes, r: bytes | None, h: int, d: bytes) -> None:
        self.ops.append(("HPUB", s, r, h, d))

    def on_sub(self, s: bytes, q: bytes | None, sid: bytes) -> None:
        self.ops.append(("SUB", s, q, sid))

    def on_unsub(self, sid: bytes, m: int | None) -> None:
        self.ops.append(("UNSUB", sid, m))

    def on_ping(self) -> None:
        self.ops.append(("PING",))

    def on_pong(self) -> None:
        self.ops.append(("PONG",))

    def on_ok(self) -> None:
        self.ops.append(("+OK",))

    def on_err(self, t: str) -> None:
        self.ops.append(("-ERR", t))

    def on_ls_plus(self, s: bytes, q: bytes | None, w: int) -> None:
        self.ops.append(("LS+", s, q, w))

    def on_ls_minus(self, s: bytes, q: bytes | None) -> None:
        self.ops.append(("LS-", s, q))

    def on_lmsg(self, s: bytes, r: bytes | None, qs: list[bytes], p: bytes) -> None:
        self.ops.append(("LMSG", s, r, tuple(qs), p))

    def on_lhmsg(self, s: bytes, r: bytes | None, qs: list[bytes], h: int, d: bytes) -> None:
        self.ops.append(("LHMSG", s, r, tuple(qs), h, d))


CLIENT_STREAM = (
    b'CONNECT {"verbose":false,"headers":true}\r\n'
    b"PUB a.b 5\r\nhello\r\n"
    b"pub\ta.b  rep.x\t3\r\nx\r\n\r\n"
    b"HPUB h.x 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"
    b"SUB a.* 1\r\nsub a.> q 2\r\nUNSUB 1\r\nUNSUB 2 10\r\n"
    b"PING\r\nPONG\nPUB z 0\r\n\r\n+OK\r\n"
)
CLIENT_OPS = [
    ("CONNECT", {"verbose": False, "headers": True}),
    ("PUB", b"a.b", None, b"hello"),
    ("PUB", b"a.b", b"rep.x", b"x\r\n"),
    ("HPUB", b"h.x", None, 12, b"NATS/1.0\r\n\r\nhi"),
    ("SUB", b"a.*", None, b"1"),
    ("SUB", b"a.>", b"q", b"2"),
    ("UNSUB", b"1", None),
    ("UNSUB", b"2", 10),
    ("PING",),
    ("PONG",),
    ("PUB", b"z", None, b""),
    ("+OK",),
]

LEAF_STREAM = (
    b'INFO {"server_id":"N","leafnode_urls":["h:1"]} \r\n'
    b"LS+ foo.bar\r\nLS+ work.> workers 2\r\nLS- work.> workers\r\nLS- foo.bar\r\n"
    b"LMSG foo.bar 5\r\nhello\r\nLMSG foo.baz rep.2 0\r\n\r\n"
    b"LMSG work.1 + rep.1 workers 2\r\nw1\r\nLMSG qq.y | grp other 1\r\nm\r\n"
    b"HMSG py.q + rr.py.q grp 20 22\r\nNATS/1.0\r\nH1: v1\r\n\r\nx2\r\n"
    b"HMSG hub.sub 12 14\r\nNATS/1.0\r\n\r\nup\r\n"
    b"-ERR 'Stale Connection'\r\nPING\r\n"
)
LEAF_OPS = [
    ("INFO", {"server_id": "N", "leafnode_urls": ["h:1"]}),
    ("LS+", b"foo.bar", None, 1),
    ("LS+", b"work.>", b"workers", 2),
    ("LS-", b"work.>", b"workers"),
    ("LS-", b"foo.bar", None),
    ("LMSG", b"foo.bar", None, (), b"hello"),
    ("LMSG", b"foo.baz", b"rep.2", (), b""),
    ("LMSG", b"work.1", b"rep.1", (b"workers",), b"w1"),
    ("LMSG", b"qq.y", None, (b"grp", b"other"), b"m"),
    ("LHMSG", b"py.q", b"rr.py.q", (b"grp",), 20, b"NATS/1.0\r\nH1: v1\r\n\r\nx2"),
    ("LHMSG", b"hub.sub", None, (), 12, b"NATS/1.0\r\n\r\nup"),
    ("-ERR", "Stale Connection"),
    ("PING",),
]


def parse_chunks(chunks: list[bytes], kind: str = "client", **kw: Any) -> list[tuple[Any, ...]]:
    rec = Recorder()
    p = Parser(rec, kind=kind, **kw)  # type: ignore[arg-type]
    for c in chunks:
        p.feed(c)
    assert p.buffered == 0
    return rec.ops


@pytest.mark.parametrize(("stream", "ops", "kind"), [(CLIENT_STREAM, CLIENT_OPS, "client"),
                                                      (LEAF_STREAM, LEAF_OPS, "leaf")])
def test_every_split_point_gives_the_same_ops(stream: bytes, ops: list[Any], kind: str) -> None:
    assert parse_chunks([stream], kind) == ops
    assert parse_chunks([stream[i : i + 1] for i in range(len(stream))], kind) == ops
    for i in range(len(stream) + 1):
        assert parse_chunks([stream[:i], stream[i:]], kind) == ops, i


@given(st.lists(st.integers(min_value=0, max_value=len(CLIENT_STREAM)), max_size=12))
@settings(max_examples=300, deadline=None)
def test_random_splits(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    chunks = [CLIENT_STREAM[a:b] for a, b in zip([0, *points], [*points, len(CLIENT_STREAM)], strict=True)]
    assert parse_chunks(chunks) == CLIENT_OPS


@given(st.binary(max_size=600), st.sampled_from(["client", "leaf"]))
@settings(max_examples=1500, deadline=None)
def test_random_bytes_raise_only_protocol_error(data: bytes, kind: str) -> None:
    rec = Recorder()
    p = Parser(rec, kind=kind, max_control_line=64, max_payload=128)  # type: ignore[arg-type]
    try:
        p.feed(data)
    except ProtocolError:
        return
    assert p.buffered <= 64 * 16 + 128 + 2 + 16


@given(st.lists(st.sampled_from([
    b"PUB a 1\r\nx\r\n", b"SUB a 1\r\n", b"PING\r\n", b"PUB a.b r 2\r\nxy\r\n", b"UNSUB 1\r\n",
    b"\x00\xff", b"PUB", b" 9\r\n", b"\r\n", b"HPUB a 12 12\r\nNATS/1.0\r\n\r\n\r\n", b"CONNECT {}\r\n",
]), max_size=30), st.integers(min_value=1, max_value=7))
@settings(max_examples=500, deadline=None)
def test_mutated_streams_same_result_whole_or_split(parts: list[bytes], step: int) -> None:
    data = b"".join(parts)

    def run(chunks: list[bytes]) -> tuple[list[Any], bool]:
        rec = Recorder()
        p = Parser(rec, kind="client")
        try:
            for c in chunks:
                p.feed(c)
        except ProtocolError:
            return rec.ops, True
        return rec.ops, False

    whole = run([data])
    split = run([data[i : i + step] for i in range(0, len(data), step)])
    assert whole == split


def test_control_line_limit_is_on_arguments() -> None:
    ok = b"SUB " + b"a" * 60 + b" 1\r\n"  # 63 bytes of arguments
    assert parse_chunks([ok], max_control_line=64) == [("SUB", b"a" * 60, None, b"1")]
    with pytest.raises(ProtocolError) as exc:
        parse_chunks([b"SUB " + b"a" * 70 + b" 1\r\n"], max_control_line=64)
    assert exc.value.text == "maximum control line exceeded"


def test_control_line_limit_checked_before_newline() -> None:
    p = Parser(Recorder(), max_control_line=64)
    with pytest.raises(ProtocolError) as exc:
        p.feed(b"PUB " + b"a" * 100)
    assert exc.value.text == "maximum control line exceeded"


def test_leaf_links_get_sixteen_times_the_control_line() -> None:
    line = b"LS+ " + b"a" * 1000 + b"\r\n"
    assert parse_chunks([line], kind="leaf", max_control_line=64) == [("LS+", b"a" * 1000, None, 1)]


def test_payload_limit_checked_on_the_control_line() -> None:
    p = Parser(Recorder(), max_payload=10)
    with pytest.raises(ProtocolError) as exc:
        p.feed(b"PUB a 11\r\n")
    assert exc.value.text == "Maximum Payload Violation"
    assert p.buffered == 0


def test_repeated_pub_lines_and_a_lowered_payload_limit() -> None:
    rec = Recorder()
    p = Parser(rec, max_payload=10)
    line = b"PUB a.b r 5\r\nhello\r\n"
    p.feed(line * 3 + b"PUB a.b r 5\nworld\r\n" + line)  # the repeated line and an LF-only twin
    assert rec.ops == [("PUB", b"a.b", b"r", b"hello")] * 3 + [("PUB", b"a.b", b"r", b"world"),
                                                                ("PUB", b"a.b", b"r", b"hello")]
    p.max_payload = 4  # a config reload: lines validated against the old limit are checked again
    with pytest.raises(ProtocolError) as exc:
        p.feed(line)
    assert exc.value.text == "Maximum Payload Violation"


@pytest.mark.parametrize("data", [b"PUB a\r\n", b"PUB a b\r\n", b"PUB a +1\r\n", b"PUB a 1234567890\r\n",
                                  b"SUB a\r\n", b"UNSUB 1 x\r\n", b"CONNECT [1]\r\n", b"HPUB a 5 3\r\n"])
def test_argument_errors_close_without_err_text(data: bytes) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_chunks([data])
    assert exc.value.text is None


@pytest.mark.parametrize("data", [b"LMSG a x q 1\r\nx\r\n", b"LS+ a q\r\n", b"LS+ a q 1 2\r\n"])
def test_leaf_argument_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_chunks([data], kind="leaf")


def test_client_ops_are_not_leaf_ops_and_vice_versa() -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_chunks([b"LS+ foo\r\n"], kind="client")
    assert exc.value.text == "Unknown Protocol Operation"
    with pytest.raises(ProtocolError):
        parse_chunks([b"PUB foo 1\r\nx\r\n"], kind="leaf")


def test_large_payload_in_small_reads_is_linear() -> None:
    payload = b"x" * (1 << 20)
    data = b"PUB big %d\r\n%b\r\n" % (len(payload), payload)
    ops = parse_chunks([data[i : i + 4096] for i in range(0, len(data), 4096)], max_payload=1 << 20)
    assert ops == [("PUB", b"big", None, payload)]
