"""A real headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools protocol, for page tests.

:class:`Chromium` starts the browser with a fresh profile and ``--remote-debugging-port=0``, reads the
port it bound from ``DevToolsActivePort`` in the profile, opens one page target and talks to it over a
WebSocket (a minimal RFC 6455 client on asyncio streams: text frames out, masked; frames in, unmasked,
possibly fragmented). :meth:`Page.evaluate` runs JavaScript and returns its JSON value;
:meth:`Page.wait` polls an expression until it is truthy. :func:`png_info` decodes a PNG's size and
counts its distinct colours (zlib + the PNG filters), to tell a real screenshot from a blank one.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import struct
import subprocess
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any

from tests.support.waiting import wait_for

FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars", "--mute-audio", "--remote-allow-origins=*",
)


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Chromium:
    """One headless browser process; ``await start()``, ``await new_page()``, ``stop()``."""

    def __init__(self, workdir: Path) -> None:
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium not found: apt-get install chromium (.ci/run installs it)")
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromium.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        self.port = 0
        self.pages: list[Page] = []

    def wait_ready(self, timeout: float = 30.0) -> None:
        active = self.profile / "DevToolsActivePort"

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            lines = active.read_text().splitlines() if active.exists() else []
            if len(lines) >= 2 and lines[0].isdigit():
                self.port = int(lines[0])
                return True
            return False

        wait_for(ready, timeout, "chromium to write DevToolsActivePort")

    async def new_page(self, width: int = 1280, height: int = 900, mobile: bool = False) -> Page:
        def create() -> dict[str, Any]:
            req = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank", method="PUT")
            with urllib.request.urlopen(req, timeout=10) as r:
                return dict(json.loads(r.read()))

        target = await asyncio.to_thread(create)
        page = Page(target["webSocketDebuggerUrl"])
        await page.connect()
        self.pages.append(page)
        await page.call("Page.enable")
        await page.call("Runtime.enable")
        await page.viewport(width, height, mobile)
        return page

    async def close_pages(self) -> None:
        for page in self.pages:
            await page.close()
        self.pages.clear()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Page:
    """A page target's DevTools session over one WebSocket."""

    def __init__(self, ws_url: str) -> None:
        self.ws_url = ws_url
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []

    async def connect(self) -> None:
        rest = self.ws_url.removeprefix("ws://")
        hostport, _, path = rest.partition("/")
        host, _, port = hostport.rpartition(":")
        self._reader, self._writer = await asyncio.open_connection(host, int(port))
        key = base64.b64encode(os.urandom(16)).decode()
        self._writer.write(
            f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        self._task = asyncio.get_running_loop().create_task(self._read_loop())

    async def _read_frame(self) -> tuple[int, bytes]:
        assert self._reader is not None
        b0, b1 = await self._reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self._reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self._reader.readexactly(8))[0]
        mask = await self._reader.readexactly(4) if b1 & 0x80 else b""
        data = await self._reader.readexactly(n)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return b0, data

    async def _read_loop(self) -> None:
        message = b""
        try:
            while True:
                b0, data = await self._read_frame()
                opcode = b0 & 0x0F
                if opcode == 8:  # close
                    break
                if opcode in (0, 1, 2):
                    message += data
                    if b0 & 0x80:  # FIN
                        doc = json.loads(message)
                        message = b""
                        fut = self._waiting.pop(doc.get("id", -1), None)
                        if fut is not None and not fut.done():
                            fut.set_result(doc)
                        elif "method" in doc:
                            self.events.append(doc)
                            del self.events[:-200]  # bounded: tests look at recent events only
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("devtools connection closed"))

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        assert self._writer is not None
        msg_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[msg_id] = fut
        payload = json.dumps({"id": msg_id, "method": method, "params": params}).encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x81]) + (
            bytes([0x80 | n]) if n < 126 else
            bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n)
        )
        self._writer.write(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
        async with asyncio.timeout(timeout):
            doc = await fut
        if "error" in doc:
            raise AssertionError(f"{method}: {doc['error']}")
        return dict(doc.get("result", {}))

    async def viewport(self, width: int, height: int, mobile: bool = False) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                        deviceScaleFactor=1, mobile=mobile)

    async def navigate(self, url: str, headers: dict[str, str] | None = None) -> None:
        if headers is not None:
            await self.call("Network.enable")
            await self.call("Network.setExtraHTTPHeaders", headers=headers)
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, timeout: float, what: str) -> Any:
        """Evaluate ``expression`` until it is truthy (then return it); AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            try:
                last = await self.evaluate(expression)
            except AssertionError as exc:  # e.g. the page is still loading and has no such element
                last = str(exc)
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> bytes:
        result = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(path.write_bytes, data)
        return data

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


def png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct colours) of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % 4 == 0:  # every fourth row is plenty to count colours, and 4x faster in pure Python
            colours.update(bytes(line[x : x + 3]) for x in range(0, stride, bpp))
        prev = line
    return width, height, len(colours)
