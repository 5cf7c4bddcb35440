"""Pseudo-terminals standing in for serial devices: the test holds the master side, the broker's serial
adapter opens the slave path through a symlink (like /dev/serial/by-id/...), which a test can re-point.
"""

from __future__ import annotations

import os
import select
import time
import tty
from pathlib import Path


class PtyDevice:
    """One end of a pty pair in raw mode; ``write`` and ``read`` are bounded by deadlines."""

    def __init__(self, link: Path | None = None) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.closed = False
        if link is not None:
            point(link, self.path)

    def write(self, data: bytes, timeout: float = 10.0) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = os.write(self.master, view)
                view = view[n:]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("pty write did not drain") from None
                select.select([], [self.master], [], 0.05)

    def try_write(self, data: bytes) -> int:
        """Non-blocking write; returns bytes written (0 when the tty buffer is full)."""
        try:
            return os.write(self.master, data)
        except BlockingIOError:
            return 0

    def wait_readable(self, timeout: float) -> bool:
        """Wait, without reading, until the other side has written (e.g. the adapter's first INFO)."""
        return bool(select.select([self.master], [], [], timeout)[0])

    def read(self, timeout: float = 0.0) -> bytes:
        r = select.select([self.master], [], [], timeout)[0]
        if not r:
            return b""
        try:
            return os.read(self.master, 65536)
        except (BlockingIOError, OSError):
            return b""

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self.slave)


class PtyUart:
    """A stream object for firmware_bridge.micropython.nats_serial (write/read/any) on a PtyDevice."""

    def __init__(self, dev: PtyDevice) -> None:
        self.dev = dev

    def write(self, data: bytes) -> int:
        self.dev.write(bytes(data))
        return len(data)

    def read(self, n: int) -> bytes | None:
        return self.dev.read(0.01) or None


def point(link: Path, target: str) -> None:
    """Atomically (re)point ``link`` at ``target``."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
