"""Go's formatting of the values nats-server writes in its ``-V`` trace lines, so ours read the same.
Sans-IO: text only."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["go_duration", "go_quote", "redact_connect", "server_frames"]

_GO_ESCAPES: Final = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
                      '"': '\\"', "\\": "\\\\"}


def go_quote(data: bytes) -> str:
    """``data`` as Go's ``%q`` prints a byte slice (strconv.Quote): printable UTF-8 as is, the C escapes,
    ``\\xNN`` for invalid bytes and ASCII controls, ``\\uXXXX``/``\\UXXXXXXXX`` for other unprintables."""
    out = ['"']
    for ch in data.decode("utf-8", errors="surrogateescape"):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an invalid byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration prints it (``45s``, ``1m30s``, ``7.5s``, ``1h0m0s``, ``0s``)."""
    if seconds <= 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    sec_text = f"{secs:.9f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{sec_text}"
    if minutes:
        return f"{int(minutes)}m{sec_text}"
    return sec_text


# nats-server's removeSecretsFromTrace: the values of these CONNECT fields never reach a trace line.
_SECRET_VALUE: Final = re.compile(rb'("(?:pass|auth_token|sig|jwt)"\s*:\s*)"(?:[^"\\]|\\.)*"')


def redact_connect(raw: bytes) -> str:
    """A CONNECT's JSON as the client sent it, secrets replaced by ``"[REDACTED]"``."""
    return _SECRET_VALUE.sub(rb'\1"[REDACTED]"', raw).decode(errors="replace")


def server_frames(data: bytes) -> list[str]:
    """Trace text for what a NATS server writes to a client, as nats-server traces it when it queues
    it (client.go traceOutOp/traceMsg): ``[MSG foo 1 2]`` (or HMSG) then ``MSG_PAYLOAD: ["hi"]``,
    ``[PONG]``, ``[PING]``, ``[OK]``, ``[-ERR <text>]``. INFO is not traced (nats-server does not trace
    it either). ``data`` holds whole frames (an outbound buffer's contents)."""
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
            size = int(line.rsplit(b" ", 1)[1])
            out.append(f"[{line.decode(errors='replace')}]")
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
