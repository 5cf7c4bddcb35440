"""A client connection: the asyncio Protocol shell around the sans-IO parser.

Bytes from the socket go through :class:`~edge.protocol.parser.Parser` inside ``data_received``;
each op is handled synchronously (route, queue output), so per-publisher order holds and no task is
created per message. Output (MSG, PONG, +OK, -ERR, INFO; frames from edge.protocol.encode) goes into
:attr:`outbound`, an :class:`~edge.core.outbound.OutboundBuffer` flushed by the server once per loop
turn; its size plus what the transport still buffers is bounded by ``max_pending`` and a write stalled
past ``write_deadline`` closes the connection as a slow consumer, both as nats-server does
(docs/nats-protocol.md 4.1).

The behaviour of each op, and which errors close the connection, follows nats-server's client.go
(docs sections 1.3-1.8). The fast path for PUB skips every check that only matters for verbose,
pedantic, tracing or not-yet-authenticated connections (:attr:`slow_path`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from edge.core.outbound import OutboundBuffer
from edge.core.router import KIND_CLIENT
from edge.core.subscription import Subscription
from edge.protocol import errors as E
from edge.protocol.connect import ConnectOptions
from edge.protocol.encode import OK, PING, PONG, encode_err, encode_hmsg
from edge.protocol.errors import ProtocolError
from edge.protocol.gofmt import go_quote
from edge.protocol.parser import Parser
from edge.protocol.subjects import (
    RESERVED_FIRST,
    is_reserved_reply,
    is_reserved_subject,
    is_valid_literal_subject,
    is_valid_queue,
    is_valid_subject,
)

if TYPE_CHECKING:
    from edge.core.server import Server

log = logging.getLogger("edge.client")
trace_log = logging.getLogger("edge.trace")

# nats-server sends the first PING to a client after at most 2 s (client.go firstClientPingInterval),
# plus up to 20 % jitter, to measure RTT; later PINGs come every ping_interval unless data arrived.
FIRST_CLIENT_PING_INTERVAL: Final = 2.0
PING_JITTER: Final = 0.2
# nats-server estimates a client's RTT as INFO-sent to CONNECT-received, then measures it with a PING
# even on a busy connection once per this interval (DEFAULT_RTT_MEASUREMENT_INTERVAL); every PONG to
# one of our PINGs updates it.
RTT_MEASUREMENT_INTERVAL: Final = 3600.0

# The CONNECT fields that authenticate (nats-server's clientOpts: user, pass, auth_token, nkey, sig, jwt).
CREDENTIAL_OPTIONS: Final = ("user", "pass", "auth_token", "nkey", "sig", "jwt")
_NO_CREDENTIALS: Final[dict[str, Any]] = {}  # shared, never mutated
_CONNECT_TASKS: Final[set[asyncio.Task[None]]] = set()  # CONNECTs waiting for a bcrypt check


class CloseReason:
    """Reasons as nats-server's /connz reports them (server/client.go ClosedState strings)."""

    CLIENT_CLOSED: Final = "Client Closed"
    AUTH_TIMEOUT: Final = "Authentication Timeout"
    AUTH_VIOLATION: Final = "Authentication Failure"
    PROTOCOL: Final = "Protocol Violation"
    PARSE: Final = "Parse Error"
    SLOW_CONSUMER_PENDING: Final = "Slow Consumer (Pending Bytes)"
    SLOW_CONSUMER_DEADLINE: Final = "Slow Consumer (Write Deadline)"
    STALE: Final = "Stale Connection"
    MAX_PAYLOAD: Final = "Maximum Payload Exceeded"
    MAX_CONTROL_LINE: Final = "Maximum Control Line Exceeded"
    MAX_CONNECTIONS: Final = "Maximum Connections Exceeded"
    SHUTDOWN: Final = "Server Shutdown"
    WRITE_ERROR: Final = "Write Error"
    READ_ERROR: Final = "Read Error"
    INTERNAL: Final = "Internal Error"


_ERR_REASON: Final[dict[str | None, str]] = {
    E.ERR_MAX_PAYLOAD: CloseReason.MAX_PAYLOAD,
    E.ERR_MAX_CONTROL_LINE: CloseReason.MAX_CONTROL_LINE,
    E.ERR_AUTH_VIOLATION: CloseReason.AUTH_VIOLATION,
    E.ERR_AUTH_TIMEOUT: CloseReason.AUTH_TIMEOUT,
    E.ERR_UNKNOWN_OP: CloseReason.PARSE,
    None: CloseReason.PARSE,
}


class ClientConnection(asyncio.Protocol):
    """One NATS client connection (TCP, TLS, or a serial port bridged as a client)."""

    kind: Final = KIND_CLIENT

    def __init__(self, server: Server) -> None:
        self.server = server
        self.router = server.router
        self.route = server.router.route
        self.loop = server.loop
        settings = server.settings
        self.parser = Parser(
            self, kind="client", max_control_line=settings.max_control_line, max_payload=settings.max_payload
        )
        self.transport: asyncio.Transport | None = None
        self.cid = 0
        self.host = ""
        self.port = 0
        self.start = time.time()
        self.outbound = OutboundBuffer(self, server.router.mark_dirty, settings.max_pending, self.slow_consumer)
        self.closed = False
        self.close_reason = ""
        self.subs: dict[bytes, Subscription] = {}
        self.connected = False
        self.options = ConnectOptions()  # nats-server's defaults until a CONNECT names others
        self.user: str | None = None
        self.auth_required = server.auth_required
        # Per-user permissions (edge.security); None = may publish and subscribe to anything.
        self.permissions: Any = None
        self.credentials: dict[str, Any] = _NO_CREDENTIALS  # from CONNECT, only the keys it sent
        self.trace = settings.trace
        self.tag_identity = ""  # ' - "$G/user:<user>"' once a CONNECT names a user (see on_connect)
        self.slow_path = True
        # Statistics for monitoring (out_msgs/out_bytes: the outbound buffer counts them).
        self.in_msgs = 0
        self.in_bytes = 0
        # Timers and keepalive state.
        self.pings_out = 0
        self.rtt: float = 0.0  # seconds; 0.0 until CONNECT
        self._info_sent_at = 0.0
        self._ping_sent_at = float("-inf")  # never: the first PING timer always measures RTT
        self._ping_handle: asyncio.TimerHandle | None = None
        self._auth_handle: asyncio.TimerHandle | None = None
        self._deadline_handle: asyncio.TimerHandle | None = None
        self._first_pong_sent = False
        self._last_in = 0.0

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not subclasses
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.host, self.port = str(peer[0]), int(peer[1])
        else:
            self.host = str(peer or "local")
        self._last_in = self.loop.time()
        if not self.server.register(self):
            # nats-server sends INFO, then the error, then closes (docs 1.7).
            self.outbound.append(self.server.info_for(self))
            self.close_with_error(E.ERR_MAX_CONNECTIONS, CloseReason.MAX_CONNECTIONS)
            return
        self.outbound.append(self.server.info_for(self))
        self._info_sent_at = self._last_in
        if self.auth_required:
            self._auth_handle = self.loop.call_later(
                self.server.settings.authorization.timeout, self._auth_timeout
            )
        first = min(self.server.settings.ping_interval, FIRST_CLIENT_PING_INTERVAL)
        # Spread first PINGs over connection ids by the golden ratio (evenly, like a low-discrepancy
        # sequence) rather than with ``random``, whose import costs idle RSS for nothing else.
        spread = (self.cid * 0.6180339887498949) % 1.0
        self._ping_handle = self.loop.call_later(first * (1 + PING_JITTER * spread), self._ping_timer)
        self._update_slow_path()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s - Client connection created", self.tag)

    def data_received(self, data: bytes) -> None:
        self._last_in = self.loop.time()
        if self.closed:
            return
        self._parse(self.parser.feed, data)

    def _parse(self, feed: Callable[..., None], *args: Any) -> None:
        """Run the parser (``feed(data)`` or ``resume()``); a protocol error closes as nats-server does."""
        parser = self.parser
        msgs, nbytes = self.in_msgs, self.in_bytes
        try:
            feed(*args)
        except ProtocolError as exc:
            if not self.closed:
                if self.trace and exc.detail:
                    log.debug("%s - protocol error: %s", self.tag, exc.detail)
                self.close_with_error(exc.text, _ERR_REASON.get(exc.text, CloseReason.PROTOCOL))
        except Exception:
            # A bug of ours must cost one connection, never the broker.
            log.exception("%s - internal error while processing input; closing the connection", self.tag)
            self.close_with_error(None, CloseReason.INTERNAL)
        finally:
            # Messages routed by the parser's fast path are counted per read, not per message.
            if parser.fast_msgs:
                self.in_msgs += parser.fast_msgs
                self.in_bytes += parser.fast_bytes
                parser.fast_msgs = parser.fast_bytes = 0
            router = self.router
            router.in_msgs += self.in_msgs - msgs
            router.in_bytes += self.in_bytes - nbytes

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        reason = CloseReason.CLIENT_CLOSED if exc is None else CloseReason.READ_ERROR
        self._cleanup(reason)

    def pause_writing(self) -> None:
        # The socket is not keeping up; if it stays that way past write_deadline, cut it
        # (nats-server's write deadline; docs 4.1).
        if self._deadline_handle is None and not self.closed:
            self._deadline_handle = self.loop.call_later(
                self.server.settings.write_deadline, self._write_deadline_exceeded
            )

    def resume_writing(self) -> None:
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
            self._deadline_handle = None

    # -- properties -----------------------------------------------------------------------------

    @property
    def tag(self) -> str:
        """The prefix nats-server puts on a connection's log lines: ``ip:port - cid:N``, then the CONNECT's
        name and user, each as Go's %q (so a name cannot forge a log line)."""
        name = f" - {go_quote(self.name.encode())}" if self.name else ""
        return f"{self.host}:{self.port} - cid:{self.cid}{name}{self.tag_identity}"

    @property
    def identity(self) -> dict[str, Any]:
        """Who this client is, for audit records of what it publishes (edge.core.internal.source_identity):
        its cid, authenticated user, CONNECT name and address (the empty ones left out)."""
        fields = {"kind": "client", "cid": self.cid, "user": self.user, "name": self.name, "ip": self.host}
        return {k: v for k, v in fields.items() if v}

    @property
    def pending_bytes(self) -> int:
        return self.outbound.size + self._backlog()

    def _backlog(self) -> int:
        """What the transport still buffers (0 once closed)."""
        return self.transport.get_write_buffer_size() if self.transport and not self.closed else 0

    @property
    def out_msgs(self) -> int:
        return self.outbound.msgs

    @property
    def out_bytes(self) -> int:
        return self.outbound.bytes

    # The router (echo, headers) and /connz (name, lang, version) read these of every connection kind.
    @property
    def echo(self) -> bool:
        return self.options.echo

    @property
    def headers(self) -> bool:
        return self.options.headers

    @property
    def name(self) -> str:
        return self.options.name

    @property
    def lang(self) -> str:
        return self.options.lang

    @property
    def version(self) -> str:
        return self.options.version

    def apply_limits(self, max_pending: int, max_payload: int, trace: bool) -> None:
        """Reloaded limits: ``max_pending`` bounds the outbound buffer plus the transport's backlog,
        ``max_payload`` the parser (its cache of validated PUB lines is dropped with it)."""
        self.outbound.set_max_pending(max_pending, self._backlog())
        self.parser.max_payload = max_payload
        self.trace = trace
        self._update_slow_path()

    def _update_slow_path(self) -> None:
        options = self.options
        self.slow_path = (
            options.verbose
            or options.pedantic
            or self.trace
            or self.permissions is not None
            or (self.auth_required and not self.connected)
        )
        # Nothing to check per message: let the parser route plain PUBs directly.
        self.parser.fast_route = None if self.slow_path else self.route

    # -- output ---------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write what is queued; called by the server once per loop turn."""
        outbound = self.outbound
        if self.closed or not outbound.chunks:
            return
        transport = self.transport
        assert transport is not None
        data = outbound.take()
        if self.trace:
            self._trace_out(data)
        transport.write(data)
        outbound.written(transport.get_write_buffer_size())

    def _trace_out(self, data: bytes) -> None:
        """-V: what is written, as nats-server traces what it queues (MSG + MSG_PAYLOAD, PONG, OK, -ERR)."""
        from edge.protocol.trace import server_frames

        tag = self.tag
        for text in server_frames(data):
            trace_log.debug("%s - ->> %s", tag, text)

    def send_err(self, text: str) -> None:
        """A non-fatal -ERR (Invalid Subject, permissions, ...): the connection stays open."""
        self.outbound.append(encode_err(text))

    # -- closing --------------------------------------------------------------------------------

    def close_with_error(self, text: str | None, reason: str) -> None:
        """Send ``-ERR '<text>'`` (if any), flush what is queued and close."""
        if self.closed:
            return
        if text is not None:
            self.outbound.append(encode_err(text))
            log.log(
                logging.INFO if reason != CloseReason.AUTH_VIOLATION else logging.WARNING,
                "%s - %s: -ERR '%s'",
                self.tag,
                reason,
                text,
            )
        self.flush()
        transport = self.transport
        self._cleanup(reason)
        if transport is not None:
            transport.close()

    def slow_consumer(self, reason: str = CloseReason.SLOW_CONSUMER_PENDING) -> None:
        """Close without flushing and without -ERR, as nats-server does for slow consumers."""
        if self.closed:
            return
        self.server.slow_consumers += 1
        if reason == CloseReason.SLOW_CONSUMER_PENDING:
            log.info("%s - Slow Consumer Detected: MaxPending of %d Exceeded", self.tag,
                     self.outbound.max_pending)
        else:
            log.info(
                "%s - Slow Consumer Detected: WriteDeadline of %gs exceeded",
                self.tag,
                self.server.settings.write_deadline,
            )
        self.outbound.discard()
        transport = self.transport
        self._cleanup(reason)
        if transport is not None:
            transport.abort()

    def close(self, reason: str = CloseReason.SHUTDOWN) -> None:
        """Flush and close (server shutdown, lame duck)."""
        if self.closed:
            return
        self.flush()
        transport = self.transport
        self._cleanup(reason)
        if transport is not None:
            transport.close()

    def _cleanup(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for handle in (self._ping_handle, self._auth_handle, self._deadline_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._auth_handle = self._deadline_handle = None
        self.server.unregister(self, reason)  # first: the closed-connection record lists the subscriptions
        subs = list(self.subs.values())
        self.subs.clear()
        if self.trace:
            for sub in subs:
                trace_log.debug("%s - <-> [DELSUB %s]", self.tag, sub.sid.decode(errors="replace"))
        self.server.remove_subscriptions(subs)
        self.outbound.close()

    # -- timers ---------------------------------------------------------------------------------

    def _auth_timeout(self) -> None:
        self._auth_handle = None
        if not self.connected and not self.closed:
            self.close_with_error(E.ERR_AUTH_TIMEOUT, CloseReason.AUTH_TIMEOUT)

    def _write_deadline_exceeded(self) -> None:
        self._deadline_handle = None
        self.slow_consumer(CloseReason.SLOW_CONSUMER_DEADLINE)

    def _ping_timer(self) -> None:
        self._ping_handle = None
        if self.closed:
            return
        settings = self.server.settings
        if self.pings_out + 1 > settings.ping_max:
            self.server.stale_connections += 1
            self.close_with_error(E.ERR_STALE, CloseReason.STALE)
            return
        now = self.loop.time()
        # Skip the PING if the client was active recently, except for the RTT measurement.
        need_rtt = now - self._ping_sent_at > RTT_MEASUREMENT_INTERVAL
        if need_rtt or now - self._last_in >= settings.ping_interval:
            self.pings_out += 1
            self._ping_sent_at = now
            self.outbound.append(PING)
        self._ping_handle = self.loop.call_later(settings.ping_interval, self._ping_timer)

    # -- ops (parser handler) -------------------------------------------------------------------

    def on_connect(self, options: dict[str, Any], raw: bytes = b"") -> bool:
        """Apply a CONNECT (``raw``: its JSON as sent, for the trace). True: it waits for a bcrypt check
        off the loop, and the parser must hold the input behind it until :meth:`_finish_connect`
        resumes it; False: done."""
        if self.trace:
            from edge.protocol.trace import redact_connect

            text = redact_connect(raw or json.dumps(options, separators=(",", ":")).encode())
            trace_log.debug("%s - <<- [CONNECT %s]", self.tag, text)
        # nats-server names the client in its log lines by what the CONNECT says: "$G/user:<user>" or
        # "$G/token" after the name (client.go processConnect), whether or not authorization checks it.
        user = options.get("user")
        self.tag_identity = (f" - {go_quote(f'$G/user:{user}'.encode())}" if isinstance(user, str) and user
                             else ' - "$G/token"' if options.get("auth_token") else "")
        if "account" in options or "new_account" in options:
            raise ProtocolError(E.ERR_AUTH_VIOLATION)
        merged = self.options.merged(options)  # validates before authenticating, as nats-server
        verdict = self.server.authenticate(self, options, may_defer=True)
        if verdict is not True and verdict is not False:  # a bcrypt check: off the loop, input waits
            task = self.loop.create_task(self._finish_connect(options, verdict))
            _CONNECT_TASKS.add(task)  # referenced until done
            task.add_done_callback(_CONNECT_TASKS.discard)
            if self.transport is not None:
                self.transport.pause_reading()
            return True
        if not verdict:
            raise ProtocolError(E.ERR_AUTH_VIOLATION)
        credentials: dict[str, Any] = {k: options[k] for k in CREDENTIAL_OPTIONS if k in options}
        if credentials:  # re-checked when a reload changes authorization (Server.reload_authorization)
            self.credentials = credentials
        self.options = merged
        if not self.connected:
            self.connected = True
            self.rtt = max(self.loop.time() - self._info_sent_at, 1e-9)  # the handshake's estimate
            if self._auth_handle is not None:
                self._auth_handle.cancel()
                self._auth_handle = None
        self._update_slow_path()
        if merged.verbose:
            self.outbound.append(OK)
        return False

    async def _finish_connect(self, options: dict[str, Any], check: Any) -> None:
        """Run a deferred bcrypt check in a worker thread, then complete the CONNECT and go on with the
        input that arrived behind it."""
        ok = await asyncio.to_thread(check.run)
        authenticator = self.server.authenticator
        if self.closed or authenticator is None:  # gone meanwhile (auth timeout, reload without auth)
            return
        authenticator.record(check, ok)
        self._parse(self._connect_then_resume, options)
        if not self.closed and self.transport is not None:
            self.transport.resume_reading()

    def _connect_then_resume(self, options: dict[str, Any]) -> None:
        if not self.on_connect(options):  # the check is cached now: this completes synchronously
            self.parser.resume()

    def _check_authorized(self) -> None:
        if self.auth_required and not self.connected:
            raise ProtocolError(E.ERR_AUTH_VIOLATION)

    def on_pub(self, subject: bytes, reply: bytes | None, payload: bytes) -> None:
        self.in_msgs += 1
        self.in_bytes += len(payload)
        slow = self.slow_path or subject[0] in RESERVED_FIRST or (reply is not None and reply[0] in RESERVED_FIRST)
        if slow and not self._pub_checks(b"PUB", subject, reply, payload):
            return
        if not self.route(self, subject, reply, 0, payload) and reply and self.options.no_responders:
            self._send_no_responders(subject, reply)

    def on_hpub(self, subject: bytes, reply: bytes | None, header_len: int, data: bytes) -> None:
        if not self.options.headers:
            # nats-server: HPUB from a connection without headers support is a parse error (no -ERR).
            raise ProtocolError(None, "HPUB without headers support")
        self.in_msgs += 1
        self.in_bytes += len(data)
        slow = self.slow_path or subject[0] in RESERVED_FIRST or (reply is not None and reply[0] in RESERVED_FIRST)
        if slow and not self._pub_checks(b"HPUB", subject, reply, data, header_len):
            return
        if self.router.route(self, subject, reply, header_len, data) == 0 and reply and self.options.no_responders:
            self._send_no_responders(subject, reply)

    def on_no_receivers(self, subject: bytes, reply: bytes) -> None:
        """A request routed by the parser's fast path reached nobody."""
        if self.options.no_responders:
            self._send_no_responders(subject, reply)

    def _pub_checks(self, op: bytes, subject: bytes, reply: bytes | None, data: bytes, hdr_len: int = -1) -> bool:
        """Checks for the slow path; returns False if the message must not be routed."""
        self._check_authorized()
        if self.trace:
            r = " " + reply.decode(errors="replace") if reply else ""
            h = f" {hdr_len}" if hdr_len >= 0 else ""
            trace_log.debug("%s - <<- [%s %s%s%s %d]", self.tag, op.decode(), subject.decode(errors="replace"), r, h,
                            len(data))
            trace_log.debug("%s - <<- MSG_PAYLOAD: [%s]", self.tag, go_quote(data))
        if self.options.pedantic and not is_valid_literal_subject(subject):
            # Pedantic clients get told, but the message is still processed (nats-server does so).
            self.send_err(E.ERR_INVALID_PUBLISH_SUBJECT)
        if subject[0] in RESERVED_FIRST and is_reserved_subject(subject):
            self.send_err(E.permissions_publish(subject.decode(errors="replace")))
            return False
        if self.permissions is not None and not self.permissions.can_publish(subject, reply):
            # Not routed, the connection stays open (client.go pubPermissionViolation).
            self.send_err(E.permissions_publish(subject.decode(errors="replace")))
            return False
        if reply is not None and is_reserved_reply(reply):
            self.send_err(E.permissions_publish_reply(reply.decode(errors="replace")))
            return False
        if self.options.verbose:
            self.outbound.append(OK)
        return True

    def _send_no_responders(self, subject: bytes, reply: bytes) -> None:
        """The 503 status message nats-server sends to a requester nobody answered (client.go:4503)."""
        sub = self.server.find_own_subscription(self, reply)
        if sub is None:
            return
        hdr = b"NATS/1.0 503\r\nNats-Subject: " + subject + b"\r\n\r\n"
        self.outbound.append(encode_hmsg(reply, sub.sid, None, len(hdr), hdr))

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None:
        if self.slow_path:
            self._check_authorized()
            if self.trace:
                q = b" " + queue if queue else b""
                trace_log.debug("%s - <<- [SUB %s%s %s]", self.tag, subject.decode(errors="replace"),
                          q.decode(errors="replace"), sid.decode(errors="replace"))
        max_subs = self.server.settings.max_subscriptions
        if max_subs and len(self.subs) >= max_subs:
            self.server.max_subscriptions_exceeded += 1
            self.send_err(E.ERR_MAX_SUBSCRIPTIONS)
            return
        if sid in self.subs:
            # A duplicate sid is ignored; the first subscription stays (docs 1.4).
            if self.options.verbose:
                self.outbound.append(OK)
            return
        if self.permissions is not None and not self.permissions.can_subscribe(subject, queue):
            self.send_err(
                E.permissions_subscribe(
                    subject.decode(errors="replace"), queue.decode(errors="replace") if queue else None
                )
            )
            return
        if not is_valid_subject(subject) or (queue is not None and not is_valid_queue(queue)):
            self.send_err(E.ERR_INVALID_SUBJECT)
            return
        sub = Subscription(self, subject, queue, sid)
        if self.permissions is not None:
            self.permissions.wrap(sub)  # edge.security: deny filter / allow_responses on delivery
        self.subs[sid] = sub
        self.server.add_subscription(sub)
        if self.options.verbose:
            self.outbound.append(OK)

    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None:
        if self.slow_path:
            self._check_authorized()
            if self.trace:
                trace_log.debug("%s - <<- [UNSUB %s%s]", self.tag, sid.decode(errors="replace"),
                          f" {max_msgs}" if max_msgs is not None else "")
        sub = self.subs.get(sid)
        if sub is not None:
            if max_msgs is not None and max_msgs > sub.delivered:
                sub.max_msgs = max_msgs
            else:
                self.remove_subscription(sub)
        if self.options.verbose:
            self.outbound.append(OK)

    def remove_subscription(self, sub: Subscription) -> None:
        if self.subs.get(sub.sid) is sub:
            del self.subs[sub.sid]
            if self.trace:
                trace_log.debug("%s - <-> [DELSUB %s]", self.tag, sub.sid.decode(errors="replace"))
            self.server.remove_subscriptions([sub])

    def on_ping(self) -> None:
        if self.slow_path:
            self._check_authorized()
            if self.trace:
                trace_log.debug("%s - <<- [PING]", self.tag)
        self.outbound.append(PONG)
        if self.connected and not self._first_pong_sent:
            self._first_pong_sent = True
            if self.options.protocol >= 1:
                # Clients that support async INFO get one after the first PONG (CAP, docs 1.2).
                self.outbound.append(self.server.info_for(self, connect_info=True))

    def on_pong(self) -> None:
        if self.slow_path:
            self._check_authorized()
            if self.trace:
                trace_log.debug("%s - <<- [PONG]", self.tag)
        if self.pings_out:  # an unsolicited PONG measures nothing
            self.rtt = max(self.loop.time() - self._ping_sent_at, 1e-9)
        self.pings_out = 0

    def on_ok(self) -> None:
        self._check_authorized()

    def on_err(self, text: str) -> None:
        self._check_authorized()
        log.info("%s - Client Error %s", self.tag, text)
        raise ProtocolError(None, "client sent -ERR")

    def on_info(self, info: dict[str, Any]) -> None:  # pragma: no cover - not a client op
        raise ProtocolError(E.ERR_UNKNOWN_OP)

    # -- monitoring -----------------------------------------------------------------------------

    def uptime(self) -> float:
        return time.time() - self.start


def constant_time_equal(a: str, b: str) -> bool:
    import hmac  # only brokers with authentication pay for hashlib/hmac

    return hmac.compare_digest(a.encode(), b.encode())
