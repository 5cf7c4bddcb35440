"""A TCP proxy the tests control, between a gateway and its hub: pass, cut (RST), blackhole (no RST), slow.

Runs on the test's event loop. ``cut()`` resets every connection and answers new ones with an RST
until ``restore()``. ``blackhole()`` keeps connections open but silently discards what either side
sends (like a dead route: no FIN, no RST), new connections are accepted and get nothing; ``restore()``
then resets the blackholed connections (their byte streams have holes). ``slow(delay)`` delays every
chunk by ``delay`` seconds in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Literal

Mode = Literal["pass", "cut", "blackhole"]


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Proxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.delay = 0.0
        self.port = 0
        self.connections = 0  # accepted in pass mode and connected upstream
        self.bytes_up = 0
        self.bytes_down = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # connection handlers: end on their own
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"nats-leaf://127.0.0.1:{self.port}"

    @property
    def active(self) -> int:
        return len(self._pairs)

    def cut(self) -> None:
        self.mode = "cut"
        self._reset_all()

    def blackhole(self) -> None:
        self.mode = "blackhole"

    def slow(self, delay: float) -> None:
        self.delay = delay

    def restore(self) -> None:
        if self.mode == "blackhole":
            self._reset_all()
        self.mode = "pass"
        self.delay = 0.0

    def _reset_all(self) -> None:
        for a, b in list(self._pairs):
            _rst(a)
            _rst(b)
        self._pairs.clear()

    async def stop(self) -> None:
        self.mode = "cut"
        if self._server is not None:
            self._server.close()
        self._reset_all()
        for t in list(self._pipes):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.mode == "cut":
                _rst(writer)
                return
            try:
                up_r, up_w = await asyncio.open_connection(*self.target)
            except OSError:
                _rst(writer)
                return
            except BaseException:
                writer.transport.abort()
                raise
            if self.mode == "cut":  # cut while we were dialling
                _rst(writer)
                _rst(up_w)
                return
            pair = (writer, up_w)
            self._pairs.add(pair)
            self.connections += 1
            a = asyncio.create_task(self._pipe(reader, up_w, up=True))
            b = asyncio.create_task(self._pipe(up_r, writer, up=False))
            self._pipes.update((a, b))
            try:
                await asyncio.wait({a, b}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (a, b):
                    t.cancel()
                    self._pipes.discard(t)
                if pair in self._pairs:
                    self._pairs.discard(pair)
                    writer.transport.abort()
                    up_w.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                if self.mode == "blackhole":
                    continue
                if self.delay:
                    await asyncio.sleep(self.delay)  # the simulated slow link
                if up:
                    self.bytes_up += len(data)
                else:
                    self.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
