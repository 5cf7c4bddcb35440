"""The monitoring HTTP server: asyncio Protocol + h11 (sans-IO HTTP/1.1), GET/HEAD only.

Bounds: at most ``MAX_CONNECTIONS`` concurrent HTTP connections (further ones are closed at once and
counted), a request head of at most ``MAX_REQUEST_HEAD`` bytes (h11's ``max_incomplete_event_size``; a
longer one is a 431), no request bodies (a 413 when one is announced), and an idle timeout per
connection. Responses are built synchronously on the loop from in-memory counters, so a request
never waits on I/O. A malformed request gets a 400, an unknown path 404, another method 405; a bug in
an endpoint is a 500 and a logged traceback, never a dead listener.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import h11

from edge.monitoring import endpoints as ep
from edge.monitoring.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edge.monitoring.metrics import render_metrics

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST_HEAD", "MonitoringServer"]

log = logging.getLogger("edge.monitoring")

MAX_CONNECTIONS: Final = 32
MAX_REQUEST_HEAD: Final = 8 * 1024
IDLE_TIMEOUT: Final = 10.0
_JSON: Final = "application/json"

Response = tuple[int, str, bytes]


class MonitoringServer:
    """Serves /varz /connz /subsz /leafz /routez /healthz /metrics /devicez for one broker."""

    def __init__(self, broker: ep.MonitoredBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self.http_req_stats: dict[str, int] = {}
        self.connections: set[_HttpConnection] = set()
        self.rejected = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._routes: dict[str, Callable[[dict[str, str]], Response]] = {
            "/": self._index,
            "/varz": lambda q: _json(200, ep.varz(self.broker, self.http_req_stats)),
            "/connz": lambda q: _json(200, ep.connz(self.broker, q)),
            "/subsz": lambda q: _json(200, ep.subsz(self.broker, q)),
            "/subscriptionsz": lambda q: _json(200, ep.subsz(self.broker, q)),
            "/leafz": lambda q: _json(200, ep.leafz(self.broker, q)),
            "/routez": lambda q: _json(200, ep.routez(self.broker)),
            "/healthz": lambda q: _json(*ep.healthz(self.broker)),
            "/devicez": lambda q: _json(200, ep.devicez(self.broker, q)),
            "/metrics": lambda q: (200, METRICS_CONTENT_TYPE, render_metrics(self.broker).encode()),
        }

    async def start(self, host: str, port: int) -> int:
        """Bind and return the port (``port`` 0 or -1 picks a free one)."""
        self._server = await self.loop.create_server(
            lambda: _HttpConnection(self), host=host, port=max(port, 0), reuse_address=True, backlog=64
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("Starting http monitor on http://%s:%d", host, self.port)
        return self.port

    async def stop(self, timeout: float = 1.0) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._server.wait_closed()
            except TimeoutError:
                log.warning("monitoring listener did not close within %.1fs", timeout)
            self._server = None

    def handle(self, method: str, target: str) -> Response:
        """Route one request; never raises."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/") or "/"
        route = self._routes.get(path)
        if route is None:
            return _json(404, {"error": f"not found: {path}"})
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"method {method} not allowed"})
        # Only known paths are counted, so the stats map stays bounded by the route table.
        self.http_req_stats[path] = self.http_req_stats.get(path, 0) + 1
        query = dict(parse_qsl(parts.query, keep_blank_values=True, max_num_fields=32))
        try:
            return route(query)
        except ep.QueryError as exc:
            return _json(400, {"error": str(exc)})
        except Exception:  # an endpoint bug must not take the monitor down; the traceback says where
            log.exception("monitoring endpoint %s failed", path)
            return _json(500, {"error": "internal error"})

    def _index(self, query: dict[str, str]) -> Response:
        links = "".join(f'<a href="{p}">{p}</a><br>\n' for p in sorted(self._routes) if p != "/")
        return 200, "text/html; charset=utf-8", f"<html><body>\n{links}</body></html>\n".encode()


def _json(status: int, body: dict[str, Any]) -> Response:
    # nats-server indents its monitoring JSON with two spaces.
    return status, _JSON, json.dumps(body, indent=2).encode() + b"\n"


class _HttpConnection(asyncio.Protocol):
    def __init__(self, server: MonitoringServer) -> None:
        self.server = server
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_HEAD)
        self.transport: asyncio.Transport | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._request: h11.Request | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.server.connections) >= MAX_CONNECTIONS:
            self.server.rejected += 1
            transport.close()
            return
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self.server.loop.call_later(IDLE_TIMEOUT, self.close)

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        self.h11.receive_data(data)
        # h11 bounds only *incomplete* events; a complete but huge head (or a pile of pipelined
        # requests) arriving in one read is bounded here, before it is parsed.
        if len(self.h11.trailing_data[0]) > MAX_REQUEST_HEAD:
            self._fail(431, "request header too large")
            return
        self._drain()

    def eof_received(self) -> bool | None:
        self.h11.receive_data(b"")
        self._drain()
        return None

    def _drain(self) -> None:
        while self.transport is not None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                self._fail(status, f"bad request: {exc}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                length = dict(event.headers).get(b"content-length", b"0")
                if length not in (b"0", b"") or dict(event.headers).get(b"transfer-encoding"):
                    self._fail(413, "request bodies are not accepted")
                    return
            elif isinstance(event, h11.EndOfMessage):
                self._respond()
            elif isinstance(event, h11.ConnectionClosed):
                self.close()
                return

    def _respond(self) -> None:
        request = self._request
        assert request is not None
        method = request.method.decode("ascii", errors="replace")
        target = request.target.decode("ascii", errors="replace")
        status, content_type, body = self.server.handle(method, target)
        self._send(status, content_type, body, head_only=method == "HEAD")
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
            self.close()
            return
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()

    def _send(self, status: int, content_type: str, body: bytes, *, head_only: bool = False) -> None:
        assert self.transport is not None
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
        ]
        out = self.h11.send(h11.Response(status_code=status, headers=headers))
        if not head_only:
            out = (out or b"") + (self.h11.send(h11.Data(data=body)) or b"")
        out = (out or b"") + (self.h11.send(h11.EndOfMessage()) or b"")
        self.transport.write(out)

    def _fail(self, status: int, message: str) -> None:
        """Answer a request we cannot parse or accept, then close (h11 lets us send an error response)."""
        if self.transport is None:
            return
        if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            body = json.dumps({"error": message}).encode()
            try:
                self._send(status, _JSON, body)
            except h11.LocalProtocolError:
                pass
        self.close()
