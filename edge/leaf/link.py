"""One TCP (or TLS) connection to a hub's leafnode port: the thin I/O shell of the leaf protocol.

The :class:`LeafLink` protocol parses what the hub sends (``Parser(kind="leaf")``), keeps the hub's
interest (:class:`HubInterest`), routes hub messages into the local broker and frames local messages
as ``LMSG``/``HMSG`` (edge.protocol.encode). All output after the handshake goes through one ordered
:class:`~edge.core.outbound.OutboundBuffer` flushed once per loop turn by the server's flush cycle, so
an ``LS+`` queued before a message is on the wire first; a message offered while it holds the remote's
``outbound_limit`` is dropped (the uplink counts it).
The handshake itself (docs/nats-protocol.md section 3.1) is driven by :class:`edge.leaf.uplink.Uplink`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from edge.core.outbound import OutboundBuffer
from edge.core.router import KIND_LEAF
from edge.errors import EdgeError
from edge.leaf.interest import HubInterest
from edge.protocol.encode import PING, PONG, encode_err, encode_lmsg
from edge.protocol.errors import ERR_STALE, ERR_UNKNOWN_OP, ProtocolError
from edge.protocol.parser import Parser

if TYPE_CHECKING:
    from edge.leaf.uplink import Uplink

log = logging.getLogger("edge.leaf")

LinkState = Literal["info", "connect", "up", "closed"]

# nats-server: first PING of a soliciting leaf ~1 s after the link is up, + rand(0..20 %) (docs 3.9).
FIRST_PING: Final = 1.0
PING_JITTER: Final = 0.2


class LeafHandshakeError(EdgeError):
    """The hub refused or broke the handshake; ``text`` is its -ERR text or our reason."""


class LeafLink(asyncio.Protocol):
    """The connection to the hub. Create with ``loop.create_connection(lambda: LeafLink(uplink), ...)``."""

    kind: Final = KIND_LEAF
    echo: Final = False  # never send a message back over the link it came in on (docs 3.5)
    headers: Final = True

    def __init__(self, uplink: Uplink) -> None:
        self.uplink = uplink
        server = uplink.server
        self.server = server
        self.router = server.router
        settings = server.settings
        self.parser = Parser(self, kind="leaf", max_control_line=settings.max_control_line,
                             max_payload=max(settings.max_payload, 1024 * 1024))
        self.transport: asyncio.Transport | None = None
        self.state: LinkState = "info"
        self.hub = HubInterest()
        self.info: dict[str, Any] = {}
        self.hub_headers = True
        self.hub_max_payload = 1024 * 1024
        self.info_fut: asyncio.Future[dict[str, Any]] = server.loop.create_future()
        self.ready_fut: asyncio.Future[None] = server.loop.create_future()
        self.closed_fut: asyncio.Future[str] = server.loop.create_future()
        self.close_reason = ""
        # Messages beyond outbound_limit are refused, not a reason to close (no on_overflow).
        self.outbound = OutboundBuffer(self, self.router.mark_dirty, uplink.remote.outbound_limit)
        self.paused = False
        self.pings_out = 0
        self.pings_sent = 0  # every PING we queued after the handshake (keepalive and store-and-forward)
        self.pongs_in = 0  # PONGs received; PONG n answers PING n (the hub answers in order)
        self.rtt = 0.0
        self._ping_sent = 0.0
        self._ping_handle: asyncio.TimerHandle | None = None
        self.closed = False
        self.up_since = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            # A malformed op from the hub: answer like nats-server does and drop the link (docs 3.13).
            self.close(f"protocol error from hub: {exc}", err=ERR_UNKNOWN_OP)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cleanup(self.close_reason or (f"connection lost: {exc}" if exc else "connection closed by hub"))

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.outbound.chunks:
            self.flush()

    # -- output ---------------------------------------------------------------------------------

    def write_now(self, data: bytes) -> None:
        """Write directly (handshake; the buffer is empty then)."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def flush(self) -> None:
        if self.closed or self.paused or not self.outbound.chunks or self.transport is None:
            return
        self.transport.write(self.outbound.take())

    def send_msg(self, subject: bytes, reply: bytes | None, hdr_len: int, data: bytes, queues: list[bytes]) -> bool:
        """Queue one LMSG/HMSG (docs 3.5), counted in the link's outbound buffer; False when dropped
        because the hub is too slow (the buffer holds ``outbound_limit``)."""
        nbytes = len(data)
        if hdr_len and not self.hub_headers:
            data = data[hdr_len:]
            hdr_len = 0
        return self.outbound.add_msg(encode_lmsg(subject, reply, queues, hdr_len, data), nbytes)

    # -- lifecycle ------------------------------------------------------------------------------

    def go_up(self) -> None:
        """Handshake done: put the full interest set (with our $LDS) on the wire, start keepalive."""
        self.state = "up"
        self.up_since = time.monotonic()
        self.uplink.link_up(self)
        self.flush()
        if not self.ready_fut.done():
            self.ready_fut.set_result(None)
        first = min(FIRST_PING, self.uplink.remote.ping_interval) * (1 + random.random() * PING_JITTER)
        self._ping_handle = self.server.loop.call_later(first, self._ping_tick)

    def _ping_tick(self) -> None:
        if self.closed:
            return
        if self.pings_out >= self.uplink.remote.ping_max:
            # A hub that stopped answering may not read what is queued either: give it the write
            # deadline (nats-server's flush deadline) to take the -ERR, then drop the buffer rather
            # than hold it, possibly MBs, for a frozen peer that would get it late.
            self.close("stale connection (no PONG from hub)", err=ERR_STALE,
                       abort_after=self.server.settings.write_deadline)
            return
        self.pings_out += 1
        self._ping_sent = time.monotonic()
        self.send_ping()
        self._ping_handle = self.server.loop.call_later(self.uplink.remote.ping_interval, self._ping_tick)

    def send_ping(self) -> int:
        """Queue a PING behind everything already queued; returns its ordinal (``pongs_in`` reaching it = answered)."""
        self.pings_sent += 1
        self.outbound.append(PING)
        return self.pings_sent

    def close(self, reason: str, err: str | None = None, abort_after: float | None = None) -> None:
        """Close the link (sending ``-ERR 'err'`` first when given); idempotent. With ``abort_after``,
        what is still unwritten that many seconds later is dropped and the socket reset."""
        if self.closed:
            return
        if not self.close_reason:
            self.close_reason = reason
        if self.transport is not None:
            self.flush()
            if err:
                self.transport.write(encode_err(err))
            self.transport.close()
            if abort_after is not None:
                self.server.loop.call_later(abort_after, self.transport.abort)  # no-op once closed
        self._cleanup(reason)

    def abort(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason
        if self.transport is not None:
            self.transport.abort()
        self._cleanup(reason)

    def _cleanup(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.state = "closed"
        if self._ping_handle is not None:
            self._ping_handle.cancel()
        self.outbound.close()
        exc = LeafHandshakeError(reason)
        for fut in (self.info_fut, self.ready_fut):
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: whoever awaits sees it, nobody else warns
        if not self.closed_fut.done():
            self.closed_fut.set_result(reason)
        self.uplink.link_closed(self, reason)

    @property
    def identity(self) -> dict[str, Any]:
        """Who published what arrives over this link (edge.core.internal.source_identity): the hub."""
        hub = {"kind": "leaf", "hub": str(self.info.get("server_name") or self.info.get("server_id") or "")}
        return {k: v for k, v in hub.items() if v}

    # -- handler (what the hub sends) -----------------------------------------------------------

    def on_info(self, info: dict[str, Any]) -> None:
        urls = info.get("leafnode_urls")
        if isinstance(urls, list):
            self.uplink.reconnect.discovered(urls)
        if self.state == "info":
            self.info = info
            self.hub_headers = bool(info.get("headers", False))
            mp = info.get("max_payload")
            if isinstance(mp, int) and mp > 0:
                self.hub_max_payload = mp
            self.state = "connect"
            if not self.info_fut.done():
                self.info_fut.set_result(info)
            return
        if info.get("connect_info"):
            self.uplink.apply_permissions(info)
            if self.state == "connect":
                self.go_up()

    def on_connect(self, options: dict[str, Any], raw: bytes = b"") -> bool:
        self.close("the hub sent CONNECT", err=ERR_UNKNOWN_OP)
        return False

    def on_ls_plus(self, subject: bytes, queue: bytes | None, weight: int) -> None:
        if subject == self.uplink.lds:
            text = 'Loop detected for leafnode account="$G". Delaying attempt to reconnect for 30s'
            self.uplink.reconnect.special(self.uplink.remote.error_delay)
            self.close("loop detected (the hub advertised our own $LDS subject)", err=text)
            return
        self.hub.add(subject, queue, weight)

    def on_ls_minus(self, subject: bytes, queue: bytes | None) -> None:
        self.hub.remove(subject, queue)

    def on_lmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], payload: bytes) -> None:
        stats = self.uplink.stats
        stats.in_msgs += 1
        stats.in_bytes += len(payload)
        import_ok = self.uplink.import_ok
        if import_ok is not None and not import_ok(subject):
            stats.dropped_denied_in += 1
            return
        router = self.router
        router.in_msgs += 1  # the router leaves counting to its callers
        router.in_bytes += len(payload)
        router.route(self, subject, reply, 0, payload, queues)

    def on_lhmsg(self, subject: bytes, reply: bytes | None, queues: list[bytes], header_len: int, data: bytes) -> None:
        stats = self.uplink.stats
        stats.in_msgs += 1
        stats.in_bytes += len(data)
        import_ok = self.uplink.import_ok
        if import_ok is not None and not import_ok(subject):
            stats.dropped_denied_in += 1
            return
        router = self.router
        router.in_msgs += 1
        router.in_bytes += len(data)
        router.route(self, subject, reply, header_len, data, queues)

    def on_ping(self) -> None:
        if self.state == "up":
            self.outbound.append(PONG)
        else:
            self.write_now(PONG)

    def on_pong(self) -> None:
        if self.pings_out and self._ping_sent:
            self.rtt = time.monotonic() - self._ping_sent
        self.pings_out = 0
        self.pongs_in += 1
        hook = self.uplink.pong_hook
        if hook is not None:
            hook(self)

    def on_ok(self) -> None:
        pass

    def on_err(self, text: str) -> None:
        log.warning("Leafnode hub %s sent error: %s", self.uplink.current_url, text)
        self.uplink.stats.last_error = text
        delay = self.uplink.hub_error_delay(text)
        if delay is not None:
            self.uplink.reconnect.special(delay)
        self.close(f"hub error: {text}")
