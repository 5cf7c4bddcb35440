"""The monitoring HTTP server: asyncio Protocol + h11 (sans-IO HTTP/1.1), GET/HEAD only.

Bounds: at most ``MAX_CONNECTIONS`` concurrent HTTP connections (further ones are closed at once and
counted), a request head of at most ``MAX_REQUEST_HEAD`` bytes (h11's ``max_incomplete_event_size``; a
longer one is a 431), no request bodies (a 413 when one is announced), and an idle timeout per
connection. Responses are built synchronously on the loop from in-memory counters, so a request
never waits on I/O. A malformed request gets a 400, an unknown path 404, another method 405; a bug in
an endpoint is a 500 and a logged traceback, never a dead listener.

``/`` is the status page (edge.monitoring.statuspage: its assets and ``/statusz``, the JSON it polls).
With ``[monitoring] auth = true`` every path needs HTTP basic auth over the broker's users, checked by
the client port's authenticator (same users, bcrypt, per-address backoff; a bcrypt check runs in a
worker thread while the connection waits); with ``tls = true`` the port speaks HTTPS.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gzip
import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import h11

from edge.errors import ListenError
from edge.monitoring import endpoints as ep
from edge.monitoring import statuspage
from edge.monitoring.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edge.monitoring.metrics import render_metrics

__all__ = ["MAX_CONNECTIONS", "MAX_REQUEST_HEAD", "MonitoringServer"]

log = logging.getLogger("edge.monitoring")

MAX_CONNECTIONS: Final = 32
MAX_REQUEST_HEAD: Final = 8 * 1024
IDLE_TIMEOUT: Final = 10.0
_JSON: Final = "application/json"
_COMPRESSED: Final = frozenset({"/", "/app.js", "/style.css", "/statusz"})

Response = tuple[int, str, bytes]


class MonitoringServer:
    """Serves the status page (/) and /varz /connz /subsz /leafz /routez /healthz /metrics /devicez /statusz."""

    def __init__(self, broker: ep.MonitoredBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker = broker
        self.loop = loop
        self.http_req_stats: dict[str, int] = {}
        self.connections: set[_HttpConnection] = set()
        self.rejected = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        mon = broker.settings.sections.get("monitoring")
        self.auth_required = bool(mon is not None and mon.auth)
        self.history = statuspage.StatusHistory(mon.history_step if mon is not None else 30.0)
        self.recent_log = statuspage.RecentLog()
        self._sampler: asyncio.TimerHandle | None = None
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # bcrypt checks and disk probes in worker threads
        self._routes: dict[str, Callable[[dict[str, str]], Response]] = {
            "/": lambda q: (200, *statuspage.asset("index.html")),
            "/app.js": lambda q: (200, *statuspage.asset("app.js")),
            "/style.css": lambda q: (200, *statuspage.asset("style.css")),
            "/statusz": lambda q: _compact(statuspage.statusz(self.broker, self.history, self.recent_log, q)),
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
        """Bind and return the port (``port`` 0 or -1 picks a free one); ListenError if it cannot."""
        await asyncio.to_thread(statuspage.load_assets)  # package files: read once, off the loop
        tls_kw: dict[str, Any] = {}
        mon = self.broker.settings.sections.get("monitoring")
        if mon is not None and mon.tls:
            from edge.security.tls import build_server_context

            tls = self.broker.settings.sections["tls"]
            # The broker's certificate; a browser has no client certificate, so none is asked for.
            ctx = build_server_context(dataclasses.replace(tls, verify=False, map_users=False))
            tls_kw = {"ssl": ctx, "ssl_handshake_timeout": tls.timeout}
        try:
            self._server = await self.loop.create_server(
                lambda: _HttpConnection(self), host=host, port=max(port, 0), reuse_address=True, backlog=64, **tls_kw
            )
        except OSError as exc:
            raise ListenError.monitoring(host, port, exc) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.recent_log.install()
        self._sample()
        scheme = "https" if tls_kw else "http"
        log.info("Starting http monitor on %s://%s:%d%s", scheme, host, self.port,
                 " (basic auth)" if self.auth_required else "")
        return self.port

    def _sample(self) -> None:
        """Every history step: the outbox depth and CPU go into the status page's history."""
        try:
            self.history.sample(self.broker)
        except Exception:  # a sampling bug must not stop the timer
            log.exception("status page history sample failed")
        directory = getattr(self.broker.outbox, "directory", None)
        if directory and (self._probe is None or self._probe.done()):  # one at a time: a stuck card must not pile
            self._probe = self.spawn(self.history.probe_disk(directory))  # them up
        self._sampler = self.loop.call_later(self.history.step, self._sample)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        """Run ``coro`` as a task owned by the server (cancelled by stop())."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def stop(self, timeout: float = 1.0) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        self.recent_log.remove()
        for task in list(self._tasks):
            task.cancel()
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

    def authorize(self, headers: Iterable[tuple[bytes, bytes]], peer: Any) -> bool | Any:
        """True when no auth is configured or the request's basic credentials are a broker user's; False
        otherwise; or a BcryptCheck to run off the loop (then ``record`` it and ask again)."""
        if not self.auth_required:
            return True
        authenticator = self.broker.server.authenticator  # the current one: a reload replaces it
        value = next((v for k, v in headers if k == b"authorization"), b"")
        scheme, _, encoded = value.partition(b" ")
        if authenticator is None or scheme.lower() != b"basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if not sep:
            return False
        host, port = (peer[0], peer[1]) if isinstance(peer, tuple) else ("?", 0)
        options = {"auth_token": password} if authenticator.auth.token is not None else {"user": user, "pass": password}
        return authenticator.authenticate(_Peer(host, port), options, may_defer=True)


@dataclasses.dataclass
class _Peer:
    """The HTTP client as the authenticator sees a connection (address for the backoff, cid 0)."""

    host: str
    port: int
    cid: int = 0
    user: str | None = None
    permissions: Any = None


def _json(status: int, body: dict[str, Any]) -> Response:
    # nats-server indents its monitoring JSON with two spaces.
    return status, _JSON, json.dumps(body, indent=2).encode() + b"\n"


def _compact(body: dict[str, Any]) -> Response:
    # The status page's poll: compact, since it may cross a slow link every few seconds.
    return 200, _JSON, json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str).encode()


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
        assert request is not None and self.transport is not None
        verdict = self.server.authorize(request.headers, self.transport.get_extra_info("peername"))
        if not isinstance(verdict, bool):  # a bcrypt check: h11 holds further requests (PAUSED) meanwhile
            self.server.spawn(self._check_then_respond(verdict))
            return
        self._finish(verdict)

    async def _check_then_respond(self, check: Any) -> None:
        ok = await asyncio.to_thread(check.run)
        authenticator = self.server.broker.server.authenticator
        if self.transport is None or authenticator is None:
            return
        authenticator.record(check, ok)
        request = self._request
        assert request is not None
        verdict = self.server.authorize(request.headers, self.transport.get_extra_info("peername"))
        self._finish(verdict is True)
        self._drain()  # requests pipelined behind this one

    def _finish(self, authorized: bool) -> None:
        request = self._request
        assert request is not None
        method = request.method.decode("ascii", errors="replace")
        target = request.target.decode("ascii", errors="replace")
        if authorized:
            status, content_type, body = self.server.handle(method, target)
            extra: list[tuple[str, str]] = []
            if urlsplit(target).path in _COMPRESSED and len(body) > 1024:
                # The status page's files and poll, which may cross a slow link: gzip when accepted (~8x on
                # its JSON). The nats-server-shaped endpoints stay byte-exact and uncompressed.
                extra.append(("Vary", "Accept-Encoding"))
                accepted = b"".join(v for k, v in request.headers if k == b"accept-encoding")
                if b"gzip" in accepted.lower():
                    body = gzip.compress(body, compresslevel=1, mtime=0)
                    extra.append(("Content-Encoding", "gzip"))
            self._send(status, content_type, body, head_only=method == "HEAD", extra=extra)
        else:
            body = json.dumps({"error": "authentication required"}).encode()
            self._send(401, _JSON, body, head_only=method == "HEAD",
                       extra=[("WWW-Authenticate", 'Basic realm="nats-edge", charset="UTF-8"')])
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
            self.close()
            return
        try:
            self.h11.start_next_cycle()
        except h11.LocalProtocolError:
            self.close()

    def _send(
        self, status: int, content_type: str, body: bytes, *, head_only: bool = False,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        assert self.transport is not None
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            *(extra or ()),
        ]
        # h11 sends an empty reason phrase unless given one; curl and browsers show it, so give the standard one.
        out = self.h11.send(h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase))
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
