"""Go's value formatting (edge.protocol.gofmt: monitoring JSON and trace lines) and the NATS -V trace's
CONNECT redaction and server-to-client frames (edge.protocol.trace), as exact strings (the side-by-side
comparison with a real nats-server is tests/integration/test_trace.py)."""

from __future__ import annotations

import pytest

from edge.protocol.gofmt import go_duration, go_quote
from edge.protocol.trace import redact_connect, server_frames


@pytest.mark.parametrize(("data", "quoted"), [
    (b"hello", '"hello"'),
    (b"", '""'),
    (b'say "hi"\\', '"say \\"hi\\"\\\\"'),
    (b"\n\r\t\a\b\f\v", '"\\n\\r\\t\\a\\b\\f\\v"'),
    (b"\x00\x1f\x7f", '"\\x00\\x1f\\x7f"'),  # ASCII controls: \x
    (b"\xff\xfe", '"\\xff\\xfe"'),  # invalid UTF-8: \x per byte
    ("dév €".encode(), '"dév €"'),  # printable UTF-8 as is
    ("\u200b\u0085".encode(), '"\\u200b\\u0085"'),  # unprintable runes: \u
    ("\U000e0001".encode(), '"\\U000e0001"'),
])
def test_go_quote_is_strconv_quote(data: bytes, quoted: str) -> None:
    assert go_quote(data) == quoted


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.0000005, "500ns"), (0.0015, "1.5ms"), (1.265954e-3, "1.265954ms"), (2.5, "2.5s"), (7.5, "7.5s"),
    (45, "45s"), (62, "1m2s"), (90, "1m30s"), (3605, "1h0m5s"), (640.1234567e-6, "640.123µs"), (512e-6, "512µs"),
    (1.000000001, "1.000000001s"), (3600, "1h0m0s"), (0.25, "250ms"),
])
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


@pytest.mark.parametrize(("raw", "shown"), [
    (b'{"user":"a","pass":"s3cret","name":"n"}', '{"user":"a","pass":"[REDACTED]","name":"n"}'),
    (b'{"auth_token": "t\\"ok", "verbose":false}', '{"auth_token": "[REDACTED]", "verbose":false}'),
    (b'{"jwt":"eyJ","sig":"c2ln","nkey":"UAB"}', '{"jwt":"[REDACTED]","sig":"[REDACTED]","nkey":"UAB"}'),
    (b'{"verbose":true}', '{"verbose":true}'),
])
def test_redact_connect_keeps_the_json_as_sent(raw: bytes, shown: str) -> None:
    assert redact_connect(raw) == shown


def test_server_frames() -> None:
    data = (b"MSG foo 1 5\r\nhello\r\nHMSG foo 2 r.1 12 14\r\nNATS/1.0\r\n\r\nhi\r\n+OK\r\nPING\r\nPONG\r\n"
            b'INFO {"x":1}\r\n-ERR \'Unknown Protocol Operation\'\r\nMSG bin 3 3\r\n\x00\r\n\r\n')
    assert server_frames(data) == [
        "[MSG foo 1 5]", 'MSG_PAYLOAD: ["hello"]',
        "[HMSG foo 2 r.1 12 14]", 'MSG_PAYLOAD: ["NATS/1.0\\r\\n\\r\\nhi"]',
        "[OK]", "[PING]", "[PONG]",  # INFO is not traced
        "[-ERR Unknown Protocol Operation]",
        "[MSG bin 3 3]", 'MSG_PAYLOAD: ["\\x00\\r\\n"]',  # a payload holding CRLF is read by its size
    ]


def test_server_frames_never_raises_on_what_it_cannot_read() -> None:
    assert server_frames(b"MSG foo 1 x\r\nPONG\r\n") == ["[MSG foo 1 x]"]
    assert server_frames(b"MSG foo 1 10\r\nshort") == ["[MSG foo 1 10]", 'MSG_PAYLOAD: ["short"]']
    assert server_frames(b"PONG") == []  # no newline yet
