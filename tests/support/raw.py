"""A raw-socket NATS peer for exact-bytes protocol tests (blocking sockets, bounded waits)."""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

_INFO_RE = re.compile(rb"INFO \{.*?\} \r\n")


class RawClient:
    """Connects, reads the INFO line, then lets a test send bytes and read exactly what comes back."""

    def __init__(self, port: int, *, read_info: bool = True, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.info: dict[str, Any] = {}
        if read_info:
            line = self.read_line()
            assert line.startswith(b"INFO "), line
            assert line.endswith(b" \r\n"), line
            self.info = json.loads(line[5:-3])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk
        return True

    def read_line(self, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise TimeoutError(f"no line within {timeout}s; have {self.buf!r}")
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def read_exact(self, n: int, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            if not self._fill(deadline):
                raise TimeoutError(f"wanted {n} bytes within {timeout}s; have {self.buf!r}")
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until_pong(self, timeout: float = 5.0, *, strip_info: bool = True) -> bytes:
        """Everything up to and including the next PONG (async INFO lines removed)."""
        deadline = time.monotonic() + timeout
        while b"PONG\r\n" not in self.buf:
            if not self._fill(deadline):
                raise TimeoutError(f"no PONG within {timeout}s; have {self.buf!r}")
        idx = self.buf.index(b"PONG\r\n") + 6
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return _INFO_RE.sub(b"", out) if strip_info else out

    def read_until_closed(self, timeout: float = 5.0) -> bytes:
        """Everything until the server closes the connection (TimeoutError if it does not)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                if not self._fill(deadline):
                    raise TimeoutError(f"connection not closed within {timeout}s; have {self.buf!r}")
        except EOFError:
            out, self.buf = self.buf, b""
            return _INFO_RE.sub(b"", out)

    def drain_available(self, quiet: float = 0.2, timeout: float = 5.0) -> bytes:
        """What arrives until ``quiet`` seconds pass with nothing new (for asserting 'nothing more');
        TimeoutError if data keeps coming for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._fill(time.monotonic() + quiet):
            if time.monotonic() > deadline:
                raise TimeoutError(f"data still arriving after {timeout}s; have {len(self.buf)} bytes")
        out, self.buf = self.buf, b""
        return _INFO_RE.sub(b"", out)
