"""The serial adapter: one instance per port; pyserial opens and configures it, the event loop does the I/O.

Lifecycle of a port: open in a worker thread (``serial.Serial`` blocks on some drivers) -> non-blocking fd
read with ``loop.add_reader`` (as pyserial-asyncio's SerialTransport) -> lost on a read error, EOF, or
(with ``silence_timeout``) silence plus the path now naming another device node -> ``offline`` event,
fd closed, reopened with backoff (``reopen_min`` doubling to ``reopen_max``) until the path is back.

Codecs (``firmware_bridge.codecs``):
- ``nats``/``frames``: the port becomes a :class:`~edge.core.client.ClientConnection` of the broker (same
  parser, limits and permissions as TCP). ``frames`` decodes COBS/CRC frames before the parser and
  wraps outbound bytes as frames carrying whole ops (:class:`OpSplitter`). When the broker closes the
  connection (protocol error, stale, slow consumer) a fresh connection is attached to the still-open
  port and the device's session is restored on it (:class:`DeviceSession`: its CONNECT options and
  subscriptions, with what remains of auto-unsubscribe limits): over a UART the device never sees a
  close, only the ``-ERR`` (if any) and a new ``INFO``, so it keeps receiving without resubscribing.
  With ``user = "name"`` every such connection is bound to that user of ``[authorization]`` before it
  starts (no CONNECT credentials: the port is the credential), so it has exactly that user's
  permissions; a denied PUB/SUB gets the permissions ``-ERR`` down the line and the port stays open.
  Without ``user`` the device authenticates in its CONNECT like a TCP client (see
  :mod:`edge.adapters.serial.config`).
- ``jsonl``/``nmea``/``lines``: decoded readings go into a bounded queue (``max_pending_readings``,
  overflow counted in ``readings_dropped``), published ``publish_batch`` per loop turn; reading from the
  port pauses at 3/4 full and resumes at 1/4, so a flooding device is held back by the tty buffer.

Commands (``jsonl``/``lines``; the contract is :mod:`edge.adapters.commands`): a request for the port's
device joins the port's bounded queue (``max_pending_commands``; beyond: ``busy``, counted in
``commands_refused``) and is written as one line (:mod:`firmware_bridge.commands`), one command at a
time, and only between the device's lines: while the codec holds part of a line the write waits (at
most ``HOLD_MAX``). ``jsonl`` with ``command_reply`` then waits for the reply line carrying its
correlation id; otherwise (and for ``lines``) the answer is given once the line has left for the port.
``command_timeout`` bounds the whole wait, queue included. A command for a port that is closed or silent
is answered ``offline`` at once, and when a port is lost every queued command is answered ``offline``
and dropped (counted in ``commands_dropped``): the reopened port never receives stale commands.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from edge.adapters.base import Adapter
from edge.adapters.commands import Command, CommandError
from edge.adapters.serial.config import PROTOCOL_CODECS, SerialConfig, parse_serial
from edge.core.client import ClientConnection
from edge.errors import EdgeError
from edge.protocol.connect import ConnectOptions
from edge.protocol.errors import ProtocolError

if TYPE_CHECKING:
    from edge.config.sections import KeyReporter
    from firmware_bridge.readings import Reading

__all__ = ["DeviceSession", "OpSplitter", "SerialAdapter"]

RECONNECT_DELAY: Final = 0.2  # before attaching a new client connection after the broker closed one
HOLD_STEP: Final = 0.02  # a command waiting for the device to finish its line re-checks this often ...
HOLD_MAX: Final = 0.5  # ... for at most this long (a device that never ends its line must not block commands)
MAX_SPLIT_BUFFER: Final = 1 << 20


class PortLost(EdgeError):
    """The port went away (read error, EOF, path re-pointed)."""


@dataclass(frozen=True, slots=True)
class DeviceSession:
    """What a device set up on its connection, to restore on the port's next connection: CONNECT options,
    the credentials it sent, and subscriptions (subject, queue, sid, remaining auto-unsubscribe count,
    0 = none)."""

    options: ConnectOptions
    credentials: dict[str, Any]
    subs: tuple[tuple[bytes, bytes | None, bytes, int], ...]

    @classmethod
    def capture(cls, conn: ClientConnection) -> DeviceSession | None:
        if not conn.connected:
            return None  # no CONNECT yet: nothing to restore
        subs = tuple((s.subject, s.queue, s.sid, s.max_msgs - s.delivered if s.max_msgs else 0)
                     for s in conn.subs.values())
        return cls(conn.options, dict(conn.credentials), subs)

    def restore(self, conn: ClientConnection) -> None:
        """Replay on a fresh connection without answering the device (no +OK). Raises ProtocolError
        when the CONNECT is refused now (credentials no longer valid)."""
        conn.on_connect({**self.options.as_connect(), **self.credentials, "verbose": False})
        for subject, queue, sid, remaining in self.subs:
            conn.on_sub(subject, queue, sid)
            if remaining > 0:
                conn.on_unsub(sid, remaining)
        conn.options = self.options
        conn._update_slow_path()


@dataclass(slots=True)
class _PendingCommand:
    """A command in the port's queue: its line, its correlation id, the future its handler awaits."""

    cid: str
    line: bytes
    wants_reply: bool
    future: asyncio.Future[Any]
    held_since: float | None = field(default=None)


class _PortConnection(ClientConnection):
    """A port's client connection: captures the device's session as it closes (before the cleanup
    drops the subscriptions)."""

    session: DeviceSession | None = None

    def _cleanup(self, reason: str) -> None:
        if not self.closed:
            self.session = DeviceSession.capture(self)
        super()._cleanup(reason)


class OpSplitter:
    """Cuts the broker's outbound protocol stream into whole ops and packs them into frame payloads."""

    def __init__(self, frame_size: int) -> None:
        self.frame_size = frame_size
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data
        ops: list[bytes] = []
        pos = 0
        while pos < len(buf):
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                break
            end = eol + 2
            head = buf[pos:eol]
            if head[:4] in (b"MSG ", b"HMSG"):
                try:
                    end += int(head.rsplit(b" ", 1)[1]) + 2
                except ValueError:
                    pass
                if end > len(buf):
                    break
            ops.append(buf[pos:end])
            pos = end
        self._buf = buf[pos:]
        if len(self._buf) > MAX_SPLIT_BUFFER:  # never happens with our own server's output
            self._buf = b""
        frames: list[bytes] = []
        cur = b""
        for op in ops:
            if cur and len(cur) + len(op) > self.frame_size:
                frames.append(cur)
                cur = b""
            cur += op
        if cur:
            frames.append(cur)
        return frames


class _SerialTransport:
    """The transport a ClientConnection writes to: non-blocking writes to the port fd."""

    def __init__(self, session: _PortSession, frames: bool) -> None:
        self._session = session
        self._splitter = OpSplitter(session.cfg.frame_size) if frames else None
        self._closing = False

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        if self._splitter is not None:
            from firmware_bridge.frames import encode_frame

            data = b"".join(encode_frame(p) for p in self._splitter.feed(data))
        self._session.write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        self.write(b"".join(chunks))

    def get_write_buffer_size(self) -> int:
        return len(self._session.out)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._session.cfg.port
        return default

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._session.connection_closed()

    def abort(self) -> None:
        if not self._closing:
            self._closing = True
            self._session.out.clear()
            self._session.connection_closed()

    def pause_reading(self) -> None:
        self._session.pause()

    def resume_reading(self) -> None:
        self._session.resume()


class _PortSession:
    """One open port: reads, decodes, publishes, writes; ends by setting ``lost``."""

    def __init__(self, adapter: SerialAdapter, ser: Any) -> None:
        from firmware_bridge.codecs import get_codec

        self.adapter = adapter
        self.cfg: SerialConfig = adapter.config
        self.ctx = adapter.ctx
        self.loop = asyncio.get_running_loop()
        self.ser = ser
        self.fd: int = ser.fileno()
        os.set_blocking(self.fd, False)
        st = os.fstat(self.fd)
        self.rdev = (st.st_rdev, st.st_ino)
        self.codec = get_codec(self.cfg.codec, self.cfg.codec_options)
        self.lost: asyncio.Future[str] = self.loop.create_future()
        self.out = bytearray()
        self.queue: deque[Reading] = deque()
        self.reading_paused = False
        self.writer_added = False
        self.closed = False
        self.last_rx = self.loop.time()
        self.silent = False
        self.conn: ClientConnection | None = None
        self._drain_handle: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reconnect_handle: asyncio.TimerHandle | None = None
        self._restore: DeviceSession | None = None  # of the connection the broker closed
        self.devices: set[str] = {self.cfg.device}
        self.commands: deque[_PendingCommand] = deque()
        self.inflight: _PendingCommand | None = None  # written, waiting for its reply or for the write
        self._pump_handle: asyncio.TimerHandle | None = None

    # -- start/stop -----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.add_reader(self.fd, self._on_readable)
        if self.codec.output == "protocol":
            self._attach_connection()
        if self.cfg.silence_timeout > 0:
            self._timer = self.loop.call_later(self.cfg.silence_timeout, self._check_silence)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        for h in (self._drain_handle, self._timer, self._reconnect_handle, self._pump_handle):
            if h is not None:
                h.cancel()
        self._drop_commands(reason)
        self._remove_reader()
        if self.writer_added:
            self.loop.remove_writer(self.fd)
            self.writer_added = False
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            conn.connection_lost(PortLost(reason))
        self._flush_queue()
        try:
            self.ser.close()
        except Exception as exc:  # an unplugged device may fail its close-time ioctls
            self.ctx.log.debug("close of %s: %s", self.cfg.port, exc)

    def fail(self, reason: str) -> None:
        if not self.lost.done():
            self.lost.set_result(reason)
        self._remove_reader()

    # -- input ----------------------------------------------------------------------------------

    def _remove_reader(self) -> None:
        if not self.reading_paused:
            self.loop.remove_reader(self.fd)
        self.reading_paused = True

    def pause(self) -> None:
        if not self.reading_paused and not self.closed:
            self.loop.remove_reader(self.fd)
            self.reading_paused = True
            self.adapter.stats["pauses"] += 1

    def resume(self) -> None:
        if self.reading_paused and not self.closed and not self.lost.done():
            self.loop.add_reader(self.fd, self._on_readable)
            self.reading_paused = False

    def _on_readable(self) -> None:
        try:
            data = os.read(self.fd, self.cfg.read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"read error: {os.strerror(exc.errno) if exc.errno else exc}")
            return
        if not data:
            self.fail("end of file")
            return
        stats = self.adapter.stats
        stats["bytes_in"] += len(data)
        self.last_rx = self.loop.time()
        if self.silent:
            self.silent = False
            self.ctx.set_online(self.cfg.device, True, port=self.cfg.port)
        try:
            decoded = self.codec.feed(data)
        except Exception:  # a codec bug must cost this chunk, not the port
            stats["codec_errors"] += 1
            self.ctx.log.exception("codec %s failed on %d bytes from %s", self.cfg.codec, len(data), self.cfg.port)
            return
        if self.codec.output == "protocol":
            conn = self.conn
            if conn is None or conn.closed:
                stats["bytes_dropped"] += len(data)
                return
            chunk = b"".join(decoded)  # type: ignore[arg-type]
            if chunk:
                conn.data_received(chunk)
            return
        if self.cfg.codec == "jsonl":
            decoded = self._take_replies(decoded)
        if self.inflight is None and self.commands:
            self._pump()  # the device may just have finished a line we were waiting on
        q = self.queue
        room = self.cfg.max_pending_readings - len(q)
        if len(decoded) > room:
            stats["readings_dropped"] += len(decoded) - max(room, 0)
            decoded = decoded[: max(room, 0)]
        q.extend(decoded)  # type: ignore[arg-type]
        if len(q) >= self.cfg.max_pending_readings * 3 // 4:
            self.pause()
        if q and self._drain_handle is None:
            self._drain_handle = self.loop.call_soon(self._drain)

    # -- commands (line codecs) --------------------------------------------------------------------

    def submit(self, line: bytes, cid: str, wants_reply: bool) -> asyncio.Future[Any]:
        """Queue one command line; the future gets the result or a CommandError. Raises CommandError
        ``offline`` (port closing) or ``busy`` (queue full) at once."""
        if self.closed or self.lost.done():
            raise CommandError("offline", f"port {self.cfg.port} is not open")
        if len(self.commands) + (self.inflight is not None) >= self.cfg.max_pending_commands:
            self.adapter.stats["commands_refused"] += 1
            raise CommandError("busy", f"{self.cfg.max_pending_commands} commands already queued on this port")
        pending = _PendingCommand(cid, line, wants_reply, self.loop.create_future())
        self.commands.append(pending)
        self._pump()
        return pending.future

    def forget(self, future: asyncio.Future[Any]) -> None:
        """The handler stopped waiting (timeout, cancel): drop the command, start the next."""
        if self.inflight is not None and self.inflight.future is future:
            self.inflight = None
        else:
            for p in self.commands:
                if p.future is future:
                    self.commands.remove(p)
                    break
        self._pump()

    def _pump(self) -> None:
        """Write the next queued command if none is in flight and the device is between lines."""
        self._pump_handle = None
        if self.inflight is not None or not self.commands or self.closed or self.lost.done():
            return
        head = self.commands[0]
        if getattr(self.codec, "pending", 0):
            now = self.loop.time()
            if head.held_since is None:
                head.held_since = now
            if now - head.held_since < HOLD_MAX:
                self.adapter.stats["commands_held"] += 1
                self._pump_handle = self.loop.call_later(HOLD_STEP, self._pump)
                return
        self.commands.popleft()
        self.inflight = head
        self.adapter.stats["commands_written"] += 1
        self.write(head.line)
        if not head.wants_reply and not self.out:
            self._complete(head, None)

    def _complete(self, pending: _PendingCommand, result: Any) -> None:
        if not pending.future.done():
            if isinstance(result, CommandError):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)
        if self.inflight is pending:
            self.inflight = None
        self._pump()

    def _take_replies(self, decoded: list[Any]) -> list[Any]:
        """Answer the in-flight command from its reply line; the readings go on."""
        from firmware_bridge.commands import CommandReply

        out = []
        for item in decoded:
            if not isinstance(item, CommandReply):
                out.append(item)
                continue
            p = self.inflight
            if p is None or not p.wants_reply or item.cid != p.cid:
                self.adapter.stats["replies_unmatched"] += 1
                continue
            if item.ok:
                self._complete(p, item.result)
            else:
                code = item.code if item.code in ("unsupported", "bad_arguments", "busy") else "failed"
                self._complete(p, CommandError(code, item.error or "the device refused the command"))
        return out

    def _drop_commands(self, reason: str) -> None:
        pending = [*self.commands, *([self.inflight] if self.inflight is not None else [])]
        self.commands.clear()
        self.inflight = None
        for p in pending:
            if not p.future.done():
                self.adapter.stats["commands_dropped"] += 1
                p.future.set_exception(CommandError("offline", f"port lost ({reason})"))

    def _drain(self) -> None:
        self._drain_handle = None
        q = self.queue
        for _ in range(min(len(q), self.cfg.publish_batch)):
            self._publish(q.popleft())
        if q:
            self._drain_handle = self.loop.call_soon(self._drain)
        if len(q) <= self.cfg.max_pending_readings // 4 and not self.lost.done():
            self.resume()

    def _flush_queue(self) -> None:
        while self.queue:
            self._publish(self.queue.popleft())

    def _publish(self, r: Reading) -> None:
        device = r.device or self.cfg.device
        if device not in self.devices:
            if len(self.devices) >= 256:
                self.adapter.stats["devices_dropped"] += 1
                return
            self.devices.add(device)
        self.ctx.reading(device, r.channel, r.value, r.unit, r.ts)
        self.adapter.stats["readings"] += 1

    def _check_silence(self) -> None:
        self._timer = None
        if self.closed:
            return
        idle = self.loop.time() - self.last_rx
        if idle >= self.cfg.silence_timeout:
            if not self.silent:
                self.silent = True
                for d in self.devices:
                    self.ctx.set_online(d, False, reason="silence")
            try:
                st = os.stat(self.cfg.port)
                same = (st.st_rdev, st.st_ino) == self.rdev
            except OSError:
                same = False
            if not same:
                self.fail("the port path vanished or now names another device")
                return
            wait = self.cfg.silence_timeout
        else:
            wait = self.cfg.silence_timeout - idle
        self._timer = self.loop.call_later(max(0.05, wait), self._check_silence)

    # -- output (protocol codecs) ---------------------------------------------------------------

    def _attach_connection(self) -> None:
        self._reconnect_handle = None
        if self.closed or self.lost.done():
            return
        conn = _PortConnection(self.ctx.server)
        if self.cfg.user is not None and not self._bind_user(conn):
            return  # no connection: what the device sends is dropped and counted (bytes_dropped)
        self.conn = conn
        conn.connection_made(_SerialTransport(self, frames=self.cfg.codec == "frames"))  # type: ignore[arg-type]
        self.adapter.stats["connections"] += 1
        restore, self._restore = self._restore, None
        if restore is not None and not conn.closed:
            try:
                restore.restore(conn)
            except ProtocolError as exc:
                self.ctx.log.warning("serial %s: the device's session was not restored: %s", self.cfg.port,
                                     exc.text or exc)
                return
            self.adapter.stats["sessions_restored"] += 1
            self.ctx.log.info("serial %s: device session restored on a new connection (%d subscriptions)",
                              self.cfg.port, len(restore.subs))

    def _bind_user(self, conn: ClientConnection) -> bool:
        """Bind ``conn`` to the port's user; False (logged, fail closed: no connection) if impossible."""
        authenticator = getattr(self.ctx.server, "authenticator", None)
        user = self.cfg.user
        if authenticator is not None and authenticator.bind_port_user(conn, user):
            return True
        # The config loader rejects unknown users, so this needs a broken caller; never fail open.
        self.adapter.last_error = f"user {user!r} is not a configured user; no client connection"
        self.ctx.log.error("serial %s: %s", self.cfg.port, self.adapter.last_error)
        return False

    def connection_closed(self) -> None:
        """The broker closed the client connection; flush what it queued and attach a new one soon."""
        if self.closed:
            return
        if isinstance(self.conn, _PortConnection):
            self._restore = self.conn.session
        self.conn = None
        self.adapter.stats["reconnects"] += 1
        self._reconnect_handle = self.loop.call_later(RECONNECT_DELAY, self._attach_connection)

    def write(self, data: bytes) -> None:
        if self.closed or self.lost.done():
            return
        self.adapter.stats["bytes_out"] += len(data)
        if not self.out:
            try:
                n = os.write(self.fd, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                self.fail(f"write error: {os.strerror(exc.errno) if exc.errno else exc}")
                return
            data = data[n:]
            if not data:
                return
        self.out += data
        if not self.writer_added:
            self.loop.add_writer(self.fd, self._on_writable)
            self.writer_added = True

    def _on_writable(self) -> None:
        try:
            n = os.write(self.fd, self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.fail(f"write error: {os.strerror(exc.errno) if exc.errno else exc}")
            n = len(self.out)
        del self.out[:n]
        if not self.out and self.writer_added:
            self.loop.remove_writer(self.fd)
            self.writer_added = False
        p = self.inflight
        if not self.out and p is not None and not p.wants_reply:
            self._complete(p, None)  # its line has left for the device


class SerialAdapter(Adapter):
    """One serial port (see the module docstring and :mod:`edge.adapters.serial.config`)."""

    kind = "serial"

    @classmethod
    def parse_config(cls, table: dict[str, Any], rep: KeyReporter) -> SerialConfig:
        return parse_serial(table, rep)

    def __init__(self, config: SerialConfig, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.stats: dict[str, int] = dict.fromkeys(
            ("opens", "open_failures", "losses", "bytes_in", "bytes_out", "bytes_dropped", "readings",
             "readings_dropped", "pauses", "connections", "reconnects", "sessions_restored", "codec_errors",
             "devices_dropped", "commands_written", "commands_refused", "commands_dropped", "commands_held",
             "replies_unmatched"),
            0,
        )
        self.session: _PortSession | None = None
        self.last_error = ""
        self._cids = 0

    def actions(self, device: str) -> list[str]:
        return list(self.config.actions)

    async def _command(self, cmd: Command) -> Any:
        """The command handler (see the module docstring)."""
        from firmware_bridge.commands import TemplateError, encode_command, render_template

        cfg = self.config
        if not cfg.accepts_commands:
            why = "an nmea device takes no commands" if cfg.codec == "nmea" else "no command_template is configured"
            raise CommandError("unsupported", f"port {cfg.port} takes no commands: {why}")
        if cfg.actions and cmd.action not in cfg.actions:
            raise CommandError("unsupported", f"unknown action {cmd.action!r}; actions: {', '.join(cfg.actions)}")
        session = self.session
        state = self.ctx.devices.get(cmd.device)
        if session is None or session.closed or session.lost.done() or session.silent or not (state and state.online):
            why = self.last_error or "not open"
            raise CommandError("offline", f"device {cmd.device} is offline (port {cfg.port}: {why})")
        self._cids += 1
        cid = str(self._cids)
        if cfg.codec == "jsonl":
            line = encode_command(cmd.action, cmd.args, cid)
        else:
            assert cfg.command_template is not None
            try:
                line = render_template(cfg.command_template, cmd.action, cmd.args, cid)
            except TemplateError as exc:
                raise CommandError("bad_arguments", str(exc)) from None
        future = session.submit(line, cid, cfg.codec == "jsonl" and cfg.command_reply)
        try:
            return await asyncio.wait_for(asyncio.shield(future), cfg.command_timeout)
        except TimeoutError:
            raise CommandError("timeout", f"no answer from {cmd.device} within {cfg.command_timeout:g}s") from None
        finally:
            if not future.done():
                future.cancel()
            session.forget(future)

    def counters(self) -> dict[str, int]:
        out = dict(self.stats)
        if self.session is not None:
            out.update({f"codec_{k}": v for k, v in self.session.codec.counters().items()})
            out["pending_readings"] = len(self.session.queue)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        rows = super().snapshot()
        counters = self.counters()
        for row in rows:
            row.update(port=self.config.port, codec=self.config.codec, counters=counters, last_error=self.last_error)
        if not rows:
            rows.append({
                "adapter": "serial", "instance": self.ctx.name, "id": self.config.device, "name": self.config.device,
                "online": False, "last_seen": None, "subject": "", "readings": 0, "errors": 0,
                "port": self.config.port, "codec": self.config.codec, "counters": counters,
                "last_error": self.last_error,
            })
        return rows

    def _warn_unauthenticated(self) -> None:
        """A nats/frames port without ``user`` on a broker whose clients must log in: say how to fix it."""
        cfg = self.config
        server = self.ctx.server
        if cfg.codec not in PROTOCOL_CODECS or cfg.user is not None or not getattr(server, "auth_required", False):
            return
        if server.settings.authorization.no_auth_user is not None:
            return
        self.ctx.log.warning(
            "serial %s: authorization is configured and this %s port has no user: the device must send "
            "credentials in its CONNECT (the C and MicroPython libraries send none); set user = \"...\" "
            "in its [[adapters.serial]] table to give the port a user", cfg.port, cfg.codec,
        )

    def _open(self) -> Any:
        import serial  # pyserial: imported only when a serial port is enabled

        cfg = self.config
        return serial.Serial(
            cfg.port, baudrate=cfg.baudrate, bytesize=cfg.bytesize, parity=cfg.parity, stopbits=cfg.stopbits,
            rtscts=cfg.rtscts, xonxoff=cfg.xonxoff, timeout=0, write_timeout=0,
        )

    async def run(self) -> None:
        cfg = self.config
        ctx = self.ctx
        delay = cfg.reopen_min
        logged_failure = False
        self._warn_unauthenticated()
        if cfg.codec not in PROTOCOL_CODECS:  # nats/frames devices subscribe to their commands themselves
            ctx.serve_commands(self._command, [cfg.device], timeout=cfg.command_timeout + 1.0)
        while True:
            try:
                ser = await asyncio.to_thread(self._open)
            except (OSError, ValueError, ImportError) as exc:
                if isinstance(exc, ImportError):
                    raise
                self.stats["open_failures"] += 1
                self.last_error = str(exc)
                if not logged_failure:
                    ctx.log.warning("serial %s: cannot open: %s (retrying with backoff)", cfg.port, exc)
                    logged_failure = True
                await asyncio.sleep(delay)
                delay = min(cfg.reopen_max, delay * 2)
                continue
            delay = cfg.reopen_min
            logged_failure = False
            self.stats["opens"] += 1
            session = self.session = _PortSession(self, ser)
            reason = "cancelled"
            try:
                ctx.log.info(
                    "serial %s: open (%s, %d baud) as device %s", cfg.port, cfg.codec, cfg.baudrate, cfg.device
                )
                session.start()
                ctx.set_online(cfg.device, True, port=cfg.port)
                reason = await session.lost
                self.stats["losses"] += 1
                self.last_error = reason
                ctx.log.warning("serial %s: port lost (%s); reopening when it returns", cfg.port, reason)
            finally:
                session.close(reason)
                for d in session.devices:
                    ctx.set_online(d, False, reason=reason)
            await asyncio.sleep(delay)

