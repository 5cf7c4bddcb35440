"""The NATS ``-V`` trace as nats-server writes it: a CONNECT's JSON with its secrets redacted, and the
trace lines of what a server writes to a client. Sans-IO: text only."""

from __future__ import annotations

import re
from typing import Final

from edge.protocol.gofmt import go_quote

__all__ = ["redact_connect", "server_frames"]

# nats-server's removeSecretsFromTrace: the values of these CONNECT fields never reach a trace line.
_SECRET_VALUE: Final = re.compile(rb'("(?:pass|auth_token|sig|jwt)"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact_connect(raw: bytes) -> str:
    """A CONNECT's JSON as the client sent it, secrets replaced by ``"[REDACTED]"``."""
    return _SECRET_VALUE.sub(rb'\1"[REDACTED]"', raw).decode(errors="replace")


def server_frames(data: bytes) -> list[str]:
    """Trace text for what a NATS server writes to a client, as nats-server traces it when it queues
    it (client.go traceOutOp/traceMsg): ``[MSG foo 1 2]`` (or HMSG) then ``MSG_PAYLOAD: ["hi"]``,
    ``[PONG]``, ``[PING]``, ``[OK]``, ``[-ERR <text>]``. INFO is not traced (nats-server does not trace
    it either). ``data`` holds whole frames (an outbound buffer's contents); anything else ends the
    trace of this chunk with the line as it is, never an exception (a trace must not stop delivery)."""
    out: list[str] = []
    pos, end = 0, len(data)
    while pos < end:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line = data[pos:nl].rstrip(b"\r")
        pos = nl + 1
        op = line[:5]
        if op.startswith((b"MSG ", b"HMSG ")):
            out.append(f"[{line.decode(errors='replace')}]")
            size_token = line.rsplit(b" ", 1)[1]
            if not size_token.isdigit():
                break
            size = int(size_token)
            out.append(f"MSG_PAYLOAD: [{go_quote(data[pos:pos + size])}]")
            pos += size + 2
        elif line == b"+OK":
            out.append("[OK]")
        elif line.startswith(b"-ERR "):
            text = line[5:].strip()
            if len(text) >= 2 and text[:1] == text[-1:] == b"'":
                text = text[1:-1]
            out.append(f"[-ERR {text.decode(errors='replace')}]")
        elif line in (b"PING", b"PONG"):
            out.append(f"[{line.decode()}]")
    return out
