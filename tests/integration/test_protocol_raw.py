"""Raw-socket protocol tests: exact bytes, run against nats-edge *and* a real nats-server.

Every test here runs twice through the ``any_server`` fixture. The expectations are nats-server's
observable behaviour (docs/nats-protocol.md sections 1-2): if a case passes against nats-server and
fails against nats-edge, we have a fidelity bug; if it fails against nats-server, the test is wrong.
"""

from __future__ import annotations

import pytest

from tests.support.processes import ServerProcess
from tests.support.raw import RawClient

QUIET = b'CONNECT {"verbose":false,"pedantic":false}\r\n'
QUIET_HDRS = b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n'


def exchange(server: ServerProcess, data: bytes, *, one_byte_at_a_time: bool = False) -> bytes:
    with RawClient(server.port) as c:
        if one_byte_at_a_time:
            for i in range(len(data)):
                c.send(data[i : i + 1])
        else:
            c.send(data)
        c.send(b"PING\r\n")
        return c.read_until_pong()


def closed_with(server: ServerProcess, data: bytes) -> bytes:
    with RawClient(server.port) as c:
        c.send(data)
        return c.read_until_closed()


def test_info_line_shape(any_server: ServerProcess) -> None:
    with RawClient(any_server.port) as c:
        info = c.info
    assert info["proto"] == 1
    assert info["headers"] is True
    assert info["max_payload"] == 1048576
    assert isinstance(info["client_id"], int) and info["client_id"] > 0
    assert info["port"] == any_server.port
    assert info["client_ip"] == "127.0.0.1"
    assert isinstance(info["server_id"], str) and len(info["server_id"]) == 56
    assert "auth_required" not in info


def test_verbose_defaults_to_true_without_connect(any_server: ServerProcess) -> None:
    got = exchange(any_server, b"SUB ok.a 1\r\nPUB ok.a 2\r\nhi\r\n")
    assert got == b"+OK\r\n+OK\r\nMSG ok.a 1 2\r\nhi\r\nPONG\r\n"


def test_verbose_connect_gets_ok(any_server: ServerProcess) -> None:
    out = exchange(any_server, b'CONNECT {"verbose":true}\r\nSUB x 1\r\nUNSUB 1\r\nUNSUB 99\r\n')
    assert out == b"+OK\r\n+OK\r\n+OK\r\n+OK\r\nPONG\r\n"


@pytest.mark.parametrize("one_byte", [False, True], ids=["whole", "byte-by-byte"])
def test_pipelined_ops_and_splits(any_server: ServerProcess, one_byte: bool) -> None:
    data = (
        QUIET
        + b"SUB ok.a 1\r\nSUB ok.* 2\r\nSUB ok.> 3\r\n"
        + b"PUB ok.a 5\r\nhello\r\n"
        + b"PUB ok.b.c rep.1 4\r\n\r\n\r\n\r\n"  # payload containing CRLFs
        + b"PUB ok.a 0\r\n\r\n"  # zero-length payload
    )
    out = exchange(any_server, data, one_byte_at_a_time=one_byte)
    msgs = out.split(b"PONG\r\n")[0]
    expected = [
        b"MSG ok.a 1 5\r\nhello\r\n",
        b"MSG ok.a 2 5\r\nhello\r\n",
        b"MSG ok.a 3 5\r\nhello\r\n",
        b"MSG ok.b.c 3 rep.1 4\r\n\r\n\r\n\r\n",
        b"MSG ok.a 1 0\r\n\r\n",
        b"MSG ok.a 2 0\r\n\r\n",
        b"MSG ok.a 3 0\r\n\r\n",
    ]
    # Within one message, the order across a connection's subscriptions is not specified; across
    # messages it is publish order.
    assert sorted(expected[:3]) == sorted(_frames(msgs)[:3])
    assert _frames(msgs)[3] == expected[3]
    assert sorted(expected[4:]) == sorted(_frames(msgs)[4:])


def _frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        line, _, rest = data.partition(b"\r\n")
        size = int(line.split()[-1])
        frames.append(line + b"\r\n" + rest[: size + 2])
        data = rest[size + 2 :]
    return frames


def test_case_insensitive_ops_tabs_and_bare_lf(any_server: ServerProcess) -> None:
    out = exchange(any_server, QUIET + b"sub\tok.a \t 1\r\npUb  ok.a\t2\r\nhi\r\nPUB ok.a 2\nhi\r\n")
    assert out == b"MSG ok.a 1 2\r\nhi\r\nMSG ok.a 1 2\r\nhi\r\nPONG\r\n"


def test_connect_without_space_and_ping_with_trailing_text(any_server: ServerProcess) -> None:
    out = exchange(any_server, b'CONNECT{"verbose":false}\r\nPING X\r\n')
    assert out == b"PONG\r\n"


def test_headers_round_trip_and_downgrade(any_server: ServerProcess) -> None:
    with RawClient(any_server.port) as plain_sub:
        plain_sub.send(QUIET + b"SUB h.x 7\r\nPING\r\n")
        assert plain_sub.read_until_pong() == b"PONG\r\n"
        data = QUIET_HDRS + b"SUB h.x 1\r\nHPUB h.x 22 24\r\nNATS/1.0\r\nFoo: bar\r\n\r\nhi\r\n"
        assert exchange(any_server, data) == b"HMSG h.x 1 22 24\r\nNATS/1.0\r\nFoo: bar\r\n\r\nhi\r\nPONG\r\n"
        # A subscriber that did not CONNECT with headers:true gets a MSG without the header block.
        plain_sub.send(b"PING\r\n")
        assert plain_sub.read_until_pong() == b"MSG h.x 7 2\r\nhi\r\nPONG\r\n"


def test_hpub_with_reply_and_minimal_header(any_server: ServerProcess) -> None:
    data = QUIET_HDRS + b"SUB h.y 1\r\nHPUB h.y r.1 12 12\r\nNATS/1.0\r\n\r\n\r\n"
    assert exchange(any_server, data) == b"HMSG h.y 1 r.1 12 12\r\nNATS/1.0\r\n\r\n\r\nPONG\r\n"


def test_hpub_without_headers_support_closes_silently(any_server: ServerProcess) -> None:
    assert closed_with(any_server, QUIET + b"HPUB h.z 12 14\r\nNATS/1.0\r\n\r\nhi\r\n") == b""


def test_queue_group_and_plain_subscriber_both_receive(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB q.a g 1\r\nSUB q.a g 2\r\nSUB q.a 3\r\n" + b"PUB q.a 1\r\nx\r\n" * 10
    frames = _frames(exchange(any_server, data).split(b"PONG\r\n")[0])
    sids = [f.split()[2] for f in frames]
    assert sids.count(b"3") == 10
    assert sids.count(b"1") + sids.count(b"2") == 10


def test_queue_members_across_subjects_form_one_group(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB w.a g 1\r\nSUB w.* g 2\r\n" + b"PUB w.a 1\r\nx\r\n" * 6
    frames = _frames(exchange(any_server, data).split(b"PONG\r\n")[0])
    assert len(frames) == 6


def test_wildcards(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB a.*.c 1\r\nSUB a.> 2\r\nSUB * 3\r\n"
    data += b"PUB a.b.c 1\r\n1\r\nPUB a 1\r\n2\r\nPUB a.b.c.d 1\r\n3\r\nPUB b 1\r\n4\r\n"
    frames = _frames(exchange(any_server, data).split(b"PONG\r\n")[0])
    got = sorted((f.split()[1], f.split()[2]) for f in frames)
    assert got == sorted(
        [(b"a.b.c", b"1"), (b"a.b.c", b"2"), (b"a", b"3"), (b"a.b.c.d", b"2"), (b"b", b"3")]
    )


def test_auto_unsubscribe(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB ok.u 10\r\nUNSUB 10 2\r\n" + b"PUB ok.u 1\r\nx\r\n" * 3
    assert exchange(any_server, data) == b"MSG ok.u 10 1\r\nx\r\n" * 2 + b"PONG\r\n"


def test_unsub_max_already_reached_removes_now(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB ok.v 4\r\nPUB ok.v 1\r\nx\r\nUNSUB 4 1\r\nPUB ok.v 1\r\ny\r\n"
    assert exchange(any_server, data) == b"MSG ok.v 4 1\r\nx\r\nPONG\r\n"


def test_duplicate_sid_is_ignored(any_server: ServerProcess) -> None:
    data = QUIET + b"SUB ok.d 11\r\nSUB ok.e 11\r\nPUB ok.d 1\r\nd\r\nPUB ok.e 1\r\ne\r\n"
    assert exchange(any_server, data) == b"MSG ok.d 11 1\r\nd\r\nPONG\r\n"


def test_echo_false_suppresses_own_messages(any_server: ServerProcess) -> None:
    data = b'CONNECT {"verbose":false,"echo":false,"protocol":1}\r\nSUB e.x 1\r\nPUB e.x 1\r\nx\r\n'
    assert exchange(any_server, data) == b"PONG\r\n"


def test_no_responders_status(any_server: ServerProcess) -> None:
    data = QUIET_HDRS + b"SUB _INBOX.x 9\r\nPUB ok.nobody _INBOX.x 0\r\n\r\n"
    out = exchange(any_server, data)
    assert out == b"HMSG _INBOX.x 9 41 41\r\nNATS/1.0 503\r\nNats-Subject: ok.nobody\r\n\r\n\r\nPONG\r\n"


def test_invalid_subject_is_not_fatal(any_server: ServerProcess) -> None:
    out = exchange(any_server, QUIET + b"SUB ok.>.b 3\r\nSUB a..b 4\r\nSUB ok.x 5\r\nPUB ok.x 1\r\nz\r\n")
    assert out == b"-ERR 'Invalid Subject'\r\n-ERR 'Invalid Subject'\r\nMSG ok.x 5 1\r\nz\r\nPONG\r\n"


def test_pedantic_invalid_publish_subject_still_delivers(any_server: ServerProcess) -> None:
    data = b'CONNECT {"verbose":true,"pedantic":true}\r\nSUB foo.* 1\r\nPUB foo.* 2\r\nhi\r\n'
    out = exchange(any_server, data)
    assert out == b"+OK\r\n+OK\r\n-ERR 'Invalid Publish Subject'\r\n+OK\r\nMSG foo.* 1 2\r\nhi\r\nPONG\r\n"


def test_repeated_connect_keeps_unnamed_options(any_server: ServerProcess) -> None:
    out = exchange(any_server, b'CONNECT {"verbose":false}\r\nCONNECT {"echo":true}\r\nSUB r.x 1\r\n')
    assert out == b"PONG\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"FOO bar\r\n", b"-ERR 'Unknown Protocol Operation'\r\n"),
        (b"MSG foo 1 2\r\nhi\r\n", b"-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PUB ok.a 2\r\nhiX\r\n", b"-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PUB ok.a 1048577\r\n", b"-ERR 'Maximum Payload Violation'\r\n"),
        (b"SUB " + b"a" * 5000 + b" 1\r\n", b"-ERR 'maximum control line exceeded'\r\n"),
        (b"PUB " + b"a" * 5000, b"-ERR 'maximum control line exceeded'\r\n"),
        (b"UNSUB\r\n", b"-ERR 'Unknown Protocol Operation'\r\n"),
        (b"PUB ok.a\r\n", b""),
        (b"PUB ok.a x\r\n", b""),
        (b"PUB ok.a -1\r\n", b""),
        (b"SUB foo\r\n", b""),
        (b"SUB foo q 1 2\r\n", b""),
        (b"CONNECT {bad json\r\n", b""),
        (b'CONNECT {"protocol":2}\r\n', b"-ERR 'invalid client protocol'\r\n"),
        (b'CONNECT {"no_responders":true}\r\n', b"-ERR 'no responders requires headers support'\r\n"),
        (b'CONNECT {"verbose":false}\r\n-ERR \'oops\'\r\n', b""),
    ],
    ids=[
        "unknown-op",
        "msg-from-client",
        "payload-not-crlf",
        "max-payload",
        "max-control-line",
        "max-control-line-partial",
        "unsub-no-args",
        "pub-missing-size",
        "pub-bad-size",
        "pub-negative-size",
        "sub-missing-sid",
        "sub-too-many-args",
        "bad-connect-json",
        "invalid-protocol",
        "no-responders-without-headers",
        "client-err",
    ],
)
def test_fatal_errors_close_the_connection(any_server: ServerProcess, data: bytes, expected: bytes) -> None:
    assert closed_with(any_server, data) == expected


@pytest.mark.parametrize("reply", [b"_R_.x", b"$JS.ACK.s.c.1", b"_GR_.g.r"])
def test_reserved_reply_subjects_are_refused(any_server: ServerProcess, reply: bytes) -> None:
    # Reserved for service imports, JetStream acks and gateways: a client may not use them as replies.
    # Each form (fast path, pipelined, headers) is refused; the message reaches no one; the connection stays.
    sent = (
        QUIET_HDRS + b"SUB r.> 1\r\nPUB r.a %s 1\r\na\r\nPUB r.a %s 1\r\na\r\n"
        b"HPUB r.b %s 12 13\r\nNATS/1.0\r\n\r\nb\r\nPUB r.c _R_ 1\r\nc\r\n" % (reply, reply, reply)
    )
    err = b"-ERR 'Permissions Violation for Publish with Reply of \"%s\"'\r\n" % reply
    assert exchange(any_server, sent) == err * 3 + b"MSG r.c 1 _R_ 1\r\nc\r\nPONG\r\n"


def test_gateway_reply_subjects_cannot_be_published(any_server: ServerProcess) -> None:
    # lower-case "pub" takes the general parser path, "PUB" the fast one: both are checked.
    sent = QUIET + (b"SUB _GR_.> 1\r\nSUB $GR.> 2\r\nSUB $GNR.> 3\r\n"
                    b"PUB _GR_.x 1\r\na\r\npub $GR.y 1\r\nb\r\nPUB $GNR.z 1\r\nc\r\n")
    assert exchange(any_server, sent) == (
        b"-ERR 'Permissions Violation for Publish to \"_GR_.x\"'\r\n"
        b"-ERR 'Permissions Violation for Publish to \"$GR.y\"'\r\nMSG $GNR.z 3 1\r\nc\r\nPONG\r\n"
    )
