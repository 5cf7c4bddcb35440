"""A minimal, bounded HTTP/1.1 GET for JSON device APIs, on asyncio streams (stdlib only).

Contract: :func:`get_json` returns the decoded JSON body of a ``200`` answer or raises
:class:`PollError` (with a short ``reason`` usable as a counter name); :func:`request_json` (commands:
any method, a body) returns ``(status, decoded JSON or None)`` for any status. The whole exchange is bounded by
``timeout`` seconds and the response by ``max_bytes``; ``Connection: close`` so no pooling is needed.
Response parsing (:func:`parse_response`) is pure and tested with bytes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from edge.errors import EdgeError

__all__ = ["DEFAULT_MAX_BYTES", "PollError", "get_json", "parse_response", "request_json", "split_response"]

DEFAULT_MAX_BYTES: Final = 256 * 1024
_MAX_HEADER: Final = 16 * 1024


class PollError(EdgeError):
    """A device answered badly or not at all; ``reason`` is one of a few fixed words."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise PollError("bad_http", "truncated chunk size")
        size_text = body[pos:eol].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise PollError("bad_http", "bad chunk size") from None
        if size < 0:
            raise PollError("bad_http", "bad chunk size")
        if size == 0:
            return bytes(out)
        start = eol + 2
        if len(body) < start + size:
            raise PollError("bad_http", "truncated chunk")
        out += body[start : start + size]
        pos = start + size + 2


def parse_response(data: bytes) -> bytes:
    """The body of a complete HTTP/1.x ``200`` response read until EOF; raises PollError otherwise."""
    status, body = split_response(data)
    if status != 200:
        raise PollError("http_status", str(status))
    return body


def split_response(data: bytes) -> tuple[int, bytes]:
    """``(status, body)`` of a complete HTTP/1.x response read until EOF; raises PollError if malformed."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise PollError("bad_http", "no end of headers")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise PollError("bad_http", "bad status line")
    status = int(parts[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            raise PollError("bad_http", "bad header line")
        headers[name.strip().lower()] = value.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        return status, _dechunk(body)
    if b"content-length" in headers:
        try:
            length = int(headers[b"content-length"])
        except ValueError:
            raise PollError("bad_http", "bad content-length") from None
        if length < 0 or len(body) < length:
            raise PollError("bad_http", "truncated body")
        return status, body[:length]
    return status, body


async def _exchange(host: str, port: int, path: str, max_bytes: int, method: str = "GET",
                    body: bytes | None = None) -> bytes:
    reader, writer = await asyncio.open_connection(host, port, limit=_MAX_HEADER)
    try:
        host_header = f"[{host}]" if ":" in host else host
        content = b"" if body is None else (
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode("ascii"))
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {host_header}:{port}\r\nAccept: application/json\r\n"
            "User-Agent: nats-edge\r\nConnection: close\r\n".encode("ascii") + content + b"\r\n" + (body or b"")
        )
        await writer.drain()
        buf = bytearray()
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > max_bytes + _MAX_HEADER:
                raise PollError("too_large", f"more than {max_bytes} bytes")
    finally:
        writer.close()


async def get_json(host: str, port: int, path: str, *, timeout: float, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """GET ``http://host:port/path`` and decode JSON; raises PollError (timeout, refused, garbage, ...)."""
    try:
        async with asyncio.timeout(timeout):
            data = await _exchange(host, port, path, max_bytes)
    except TimeoutError:
        raise PollError("timeout", f"no answer within {timeout:g}s") from None
    except OSError as exc:
        raise PollError("unreachable", str(exc)) from None
    body = parse_response(data)
    if len(body) > max_bytes:
        raise PollError("too_large", f"more than {max_bytes} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise PollError("bad_json") from None


async def request_json(
    host: str, port: int, path: str, *, method: str, body: bytes | None, timeout: float,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> tuple[int, Any]:
    """One bounded request; ``(status, decoded JSON body or None when empty or not JSON)``. Raises
    PollError for no answer in time (``timeout``), no connection (``unreachable``), a malformed or
    oversized response."""
    try:
        async with asyncio.timeout(timeout):
            data = await _exchange(host, port, path, max_bytes, method, body)
    except TimeoutError:
        raise PollError("timeout", f"no answer within {timeout:g}s") from None
    except OSError as exc:
        raise PollError("unreachable", str(exc)) from None
    status, raw = split_response(data)
    if len(raw) > max_bytes:
        raise PollError("too_large", f"more than {max_bytes} bytes")
    try:
        return status, json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        return status, None
