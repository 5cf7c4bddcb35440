"""Load-generator worker processes: publishers, subscribers, responders, requesters and fake servers.

Every function named ``*_main`` is the body of one process started with the ``spawn`` method, so the
generators use both cores and never share an interpreter (or a GIL) with the orchestrator or each
other. Workers disable the cyclic GC (their hot loops allocate nothing that forms cycles) and report
through ``results`` (a multiprocessing queue) with tuples ``(kind, role, index, payload)``:
``("port", ...)`` from fake servers, ``("ready", ...)`` once connected and subscribed, ``("result", ...)``
at the end and ``("error", ...)`` with a message when anything went wrong.

Coordination uses shared memory the orchestrator creates (:class:`Shared`): per-subscriber frame
counters and last-receive times, the publisher's final count, a ``go`` event and a ``stop`` flag. The
publisher's credit window reads the subscribers' counters, so at most ``window`` frames are in flight
between the publisher and the slowest subscriber (``credit="min"``) or all queue members together
(``credit="sum"``): a broker without slow-consumer handling is measured at a rate it can sustain.
"""

from __future__ import annotations

import gc
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from edge.bench.wire import (
    Control,
    FrameBatch,
    Msg,
    StreamVerifier,
    WireError,
    connect_frame,
    msg_header,
    parse_op,
    percentile,
    pub_frame,
    pub_header,
)
from edge.errors import EdgeError

RECV_BUFFER: Final = 4 * 1024 * 1024
SOCK_BUFFER: Final = 4 * 1024 * 1024
# Fewer wake-ups for a subscriber: the kernel reports readability once 64 KiB are queued.
RCVLOWAT: Final = 64 * 1024
POLL_TIMEOUT: Final = 0.1
HANDSHAKE_TIMEOUT: Final = 10.0
FINAL_PONG_TIMEOUT: Final = 60.0
CREDIT_WAIT: Final = 0.0002
FAKE_INFO: Final = (
    b'INFO {"server_id":"NBENCHFAKE","server_name":"bench-fake","version":"0.0.0","proto":1,'
    b'"go":"none","host":"127.0.0.1","port":0,"headers":false,"max_payload":1048576} \r\n'
)

Credit = Literal["none", "min", "sum"]


class BenchError(EdgeError):
    """A worker could not do its part (connection refused, -ERR from the broker, timeout)."""


@dataclass
class Shared:
    """Shared-memory coordination between the orchestrator and one scenario's workers.

    Fields are multiprocessing synchronized-free objects (RawArray/RawValue) and an Event; they are
    created by the orchestrator and inherited by spawned children as Process arguments.
    """

    counters: Any  # RawArray('q', subscribers): benchmark frames received so far
    last_rx: Any  # RawArray('d', subscribers): time.monotonic() of the last receive with data
    total: Any  # RawValue('q'): frames the publisher sent, -1 until it is done
    stop: Any  # RawValue('i'): non-zero tells every worker to finish
    go: Any  # Event: publishers and requesters start sending


@dataclass(frozen=True)
class PubSpec:
    """A publisher (``serve=False``: a client of the broker at host:port) or a blaster (``serve=True``:
    a fake server on host, port chosen by the worker, sending MSG frames to one subscriber)."""

    host: str
    port: int
    subject: str
    size: int
    duration: float
    credit: Credit = "none"
    window: int = 0
    serve: bool = False


@dataclass(frozen=True)
class SubSpec:
    index: int
    host: str
    port: int
    subject: str
    size: int
    queue: str | None = None

    @property
    def collect(self) -> bool:
        return self.queue is not None


@dataclass(frozen=True)
class ReqSpec:
    host: str
    port: int
    subject: str
    size: int
    duration: float
    concurrency: int
    warmup: int = 200


# -------------------------------------------------------------------------------------- socket helpers


def _new_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Buffer sizes are set before connect so the TCP window scale is negotiated for them.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUFFER)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUFFER)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _read_ops(sock: socket.socket, buf: bytearray, until: Callable[[Any], bool], deadline: float) -> None:
    """Read and parse ops until ``until(op)`` is true; answers PING, raises BenchError on -ERR or EOF."""
    pos = 0
    while True:
        parsed = parse_op(buf, pos)
        if parsed is None:
            del buf[:pos]
            pos = 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError("timed out waiting for the server")
            sock.settimeout(remaining)
            chunk = sock.recv(65536)
            if not chunk:
                raise BenchError("connection closed by the server")
            buf += chunk
            continue
        op, pos = parsed
        if isinstance(op, Control):
            if op.kind == "-ERR":
                raise BenchError(f"server error: -ERR {op.text.decode(errors='replace')}")
            if op.kind == "PING":
                sock.sendall(b"PONG\r\n")
        if until(op):
            del buf[:pos]
            return


def _is_pong(op: Any) -> bool:
    return isinstance(op, Control) and op.kind == "PONG"


def connect_client(host: str, port: int, extra: bytes = b"", name: str = "nats-edge-bench") -> tuple[
    socket.socket, bytearray
]:
    """Connect, read INFO, send CONNECT + ``extra`` (e.g. SUB lines) + PING and wait for the PONG.

    Returns the socket (blocking, no timeout) and any bytes read after the PONG (e.g. an async INFO).
    """
    sock = _new_socket()
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        sock.connect((host, port))
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        buf = bytearray()
        _read_ops(sock, buf, lambda op: isinstance(op, Control) and op.kind == "INFO", deadline)
        sock.sendall(connect_frame(name) + extra + b"PING\r\n")
        _read_ops(sock, buf, _is_pong, deadline)
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, buf


def _accept_fake_client(listener: socket.socket, stop: Any) -> socket.socket:
    """Fake-server side of a handshake: INFO out, then wait for the client's PING and answer PONG."""
    listener.settimeout(HANDSHAKE_TIMEOUT)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUFFER)
    conn.sendall(FAKE_INFO)
    conn.settimeout(HANDSHAKE_TIMEOUT)
    data = b""
    while b"PING\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk or stop.value:
            raise BenchError("fake server: client went away during the handshake")
        data += chunk
    conn.sendall(b"PONG\r\n")
    conn.settimeout(None)
    return conn


def _listen(host: str) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCK_BUFFER)  # inherited by accepted sockets
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUFFER)
    listener.bind((host, 0))
    listener.listen(8)
    return listener


def _wait_stop(shared: Shared, limit: float = 60.0) -> None:
    """Hold the connection open until the orchestrator says stop: closing with unread input would
    reset the connection and could destroy data still queued for the peer."""
    deadline = time.monotonic() + limit
    while not shared.stop.value and time.monotonic() < deadline:
        time.sleep(0.01)


class _ControlDrain:
    """Non-blocking reader for a sending socket: answers PINGs, surfaces -ERR, counts PONGs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.scratch = bytearray(65536)
        self.pongs = 0

    def poll(self) -> None:
        try:
            n = self.sock.recv_into(self.scratch, 0, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        if n == 0:
            raise BenchError("connection closed by the server")
        self.buf += self.scratch[:n]
        self._parse()

    def _parse(self) -> None:
        pos = 0
        while True:
            try:
                parsed = parse_op(self.buf, pos)
            except WireError:
                # A fake server's client sends client ops (PONG is all we care about); skip the line.
                eol = self.buf.find(b"\n", pos)
                if eol < 0:
                    break
                line = bytes(self.buf[pos:eol]).strip().upper()
                pos = eol + 1
                if line == b"PING":
                    self.sock.sendall(b"PONG\r\n")
                continue
            if parsed is None:
                break
            op, pos = parsed
            if isinstance(op, Control):
                if op.kind == "PING":
                    self.sock.sendall(b"PONG\r\n")
                elif op.kind == "PONG":
                    self.pongs += 1
                elif op.kind == "-ERR":
                    raise BenchError(f"server error: -ERR {op.text.decode(errors='replace')}")
        del self.buf[:pos]


# ------------------------------------------------------------------------------------------ publisher


def _credit_fn(spec: PubSpec, shared: Shared) -> Callable[[], int] | None:
    counters = shared.counters
    n = len(counters)
    if spec.credit == "none" or n == 0:
        return None
    if spec.credit == "min":
        return lambda: min(counters[i] for i in range(n))
    return lambda: sum(counters[i] for i in range(n))


def _send_stream(sock: socket.socket, header: bytes, spec: PubSpec, shared: Shared) -> tuple[int, float, float]:
    """Send numbered frames for ``spec.duration`` seconds after ``go``; returns (sent, t0, t_last_send)."""
    batch = FrameBatch(header, spec.size)
    n = batch.count
    credit = _credit_fn(spec, shared)
    window = max(spec.window, 2 * n)
    drain = _ControlDrain(sock)
    if not shared.go.wait(HANDSHAKE_TIMEOUT * 3):
        raise BenchError("never told to start")
    t0 = time.monotonic()
    deadline = t0 + spec.duration
    seq = 0
    now = t0
    while now < deadline:
        if credit is not None:
            while seq + n - credit() > window:
                time.sleep(CREDIT_WAIT)  # generator back-off; the broker is the one being measured
                now = time.monotonic()
                if now >= deadline or shared.stop.value:
                    break
            if now >= deadline or shared.stop.value:
                break
        sock.sendall(batch.set_first(seq))
        seq += n
        drain.poll()
        now = time.monotonic()
    return seq, t0, time.monotonic()


def publisher_main(spec: PubSpec, shared: Shared, results: Any) -> None:
    """Publish (or, with ``spec.serve``, blast MSG frames as a fake server) and report
    ``{"sent", "t0", "t_end"}``; ``t_end`` is when the broker answered the final PING (all processed)."""
    gc.disable()
    role = "blaster" if spec.serve else "publisher"
    sock: socket.socket | None = None
    try:
        if spec.serve:
            listener = _listen(spec.host)
            results.put(("port", role, 0, listener.getsockname()[1]))
            sock = _accept_fake_client(listener, shared.stop)
            listener.close()
            header = msg_header(spec.subject, "1", spec.size)
        else:
            sock, _ = connect_client(spec.host, spec.port, name="bench-pub")
            header = pub_header(spec.subject, spec.size)
        results.put(("ready", role, 0, None))
        sent, t0, t_end = _send_stream(sock, header, spec, shared)
        if not spec.serve:
            sock.sendall(b"PING\r\n")
            _read_ops(sock, bytearray(), _is_pong, time.monotonic() + FINAL_PONG_TIMEOUT)
            t_end = time.monotonic()
        shared.total.value = sent
        results.put(("result", role, 0, {"sent": sent, "t0": t0, "t_end": t_end}))
        _wait_stop(shared)
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


# ----------------------------------------------------------------------------------------- subscriber


def subscriber_main(spec: SubSpec, shared: Shared, results: Any) -> None:
    """Subscribe, verify every frame until ``stop``, and report the verifier's accounting."""
    gc.disable()
    role = "subscriber"
    idx = spec.index
    sock: socket.socket | None = None
    try:
        queue = f" {spec.queue}" if spec.queue else ""
        sub = f"SUB {spec.subject}{queue} 1\r\n".encode()
        sock, leftover = connect_client(spec.host, spec.port, sub, name=f"bench-sub-{idx}")
        verifier = StreamVerifier(msg_header(spec.subject, "1", spec.size), spec.size, collect=spec.collect)
        verifier.feed(leftover)
        results.put(("ready", role, idx, None))
        buf = bytearray(RECV_BUFFER)
        mv = memoryview(buf)
        sock.settimeout(POLL_TIMEOUT)
        lowat = False
        counters, last_rx, stop, total = shared.counters, shared.last_rx, shared.stop, shared.total
        first_rx = 0.0
        while not stop.value:
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                if lowat:  # the tail of a stream may be shorter than the low-water mark
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                    lowat = False
                continue
            if n == 0:
                if not stop.value:  # a fake server closes only after stop; anything else is a failure
                    verifier.errors.append("connection closed by the server")
                break
            now = time.monotonic()
            pings = verifier.feed(mv[:n])
            if pings:
                sock.sendall(b"PONG\r\n" * pings)
            counters[idx] = verifier.frames
            last_rx[idx] = now
            if not first_rx:
                first_rx = now
            if not lowat and n >= RCVLOWAT and total.value < 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)
                lowat = True
        t = verifier.tracker
        sent = max(0, total.value)
        results.put(("result", role, idx, {
            "frames": verifier.frames,
            "unique": t.unique,
            "duplicates": t.duplicates,
            "reordered": t.reordered,
            "missing": t.missing(sent) if not spec.collect else None,
            "errors": verifier.errors[:10],
            "slow_ops": verifier.slow_ops,
            "collected": verifier.collected_bytes() if spec.collect else b"",
            "first_rx": first_rx,
            "last_rx": last_rx[idx],
        }))
    except Exception as exc:
        results.put(("error", role, idx, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


# ---------------------------------------------------------------------------------------- fake server


def discard_main(host: str, shared: Shared, results: Any) -> None:
    """A fake server that reads and discards everything, answering PINGs: the publisher's ceiling."""
    gc.disable()
    role = "discard"
    try:
        listener = _listen(host)
        results.put(("port", role, 0, listener.getsockname()[1]))
        conn = _accept_fake_client(listener, shared.stop)
        listener.close()
        buf = bytearray(RECV_BUFFER)
        conn.settimeout(POLL_TIMEOUT)
        last = b""
        with conn:
            while not shared.stop.value:
                try:
                    n = conn.recv_into(buf)
                except TimeoutError:
                    continue
                if n == 0:
                    break
                # Only the publisher's final PING matters, and it is the last thing it sends before
                # waiting: look at the stream's last 6 bytes instead of scanning every read.
                last = (last + bytes(buf[max(0, n - 6) : n]))[-6:]
                if last == b"PING\r\n":
                    conn.sendall(b"PONG\r\n")
                    last = b""
        results.put(("result", role, 0, None))
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))


# -------------------------------------------------------------------------------------- request-reply


def responder_main(host: str, port: int, subject: str, shared: Shared, results: Any) -> None:
    """Answer every request on ``subject`` with its own payload, one write per read."""
    gc.disable()
    role = "responder"
    sock: socket.socket | None = None
    try:
        sock, buf = connect_client(host, port, f"SUB {subject} 1\r\n".encode(), name="bench-responder")
        results.put(("ready", role, 0, None))
        sock.settimeout(POLL_TIMEOUT)
        replied = 0
        while not shared.stop.value:
            pos = 0
            out: list[bytes] = []
            while (parsed := parse_op(buf, pos)) is not None:
                op, pos = parsed
                if isinstance(op, Msg) and op.reply:
                    out.append(pub_header(op.reply.decode(), len(op.payload)) + op.payload + b"\r\n")
                elif isinstance(op, Control) and op.kind == "PING":
                    out.append(b"PONG\r\n")
            del buf[:pos]
            if out:
                sock.sendall(b"".join(out))
                replied += len(out)
            try:
                chunk = sock.recv(RECV_BUFFER)
            except TimeoutError:
                continue
            if not chunk:
                break
            buf += chunk
        results.put(("result", role, 0, {"replied": replied}))
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


def requester_main(spec: ReqSpec, shared: Shared, results: Any) -> None:
    """Keep ``concurrency`` requests in flight for ``duration``; report rate and latency percentiles.

    Each request carries a sequence number; a reply is matched to its request by it, so lost,
    duplicated or foreign replies are counted exactly. The first ``warmup`` replies are not measured.
    """
    gc.disable()
    role = "requester"
    sock: socket.socket | None = None
    try:
        inbox = f"{spec.subject}.reply"
        sock, buf = connect_client(spec.host, spec.port, f"SUB {inbox} 1\r\n".encode(), name="bench-requester")
        results.put(("ready", role, 0, None))
        if not shared.go.wait(HANDSHAKE_TIMEOUT * 3):
            raise BenchError("never told to start")
        pending: dict[int, float] = {}
        latencies: list[float] = []
        seq = 0
        unexpected = 0
        done = 0

        def send(k: int) -> None:
            nonlocal seq
            frames = b"".join(pub_frame(spec.subject, s, spec.size, inbox) for s in range(seq, seq + k))
            now = time.monotonic()
            for s in range(seq, seq + k):
                pending[s] = now
            seq += k
            sock.sendall(frames)

        start = time.monotonic()
        deadline = start + spec.duration + spec.warmup * 0.01
        t_measure = 0.0
        t_last = start
        send(spec.concurrency)
        sock.settimeout(POLL_TIMEOUT)
        # After the deadline no new requests go out; outstanding ones get 5 s, then count as lost.
        while pending and time.monotonic() < deadline + 5.0:
            try:
                chunk = sock.recv(RECV_BUFFER)
            except TimeoutError:
                continue
            if not chunk:
                raise BenchError("connection closed by the server")
            now = time.monotonic()
            buf += chunk
            pos = 0
            replies = 0
            while (parsed := parse_op(buf, pos)) is not None:
                op, pos = parsed
                if isinstance(op, Msg):
                    sent_at = pending.pop(int.from_bytes(op.payload[:8], "little"), None)
                    if sent_at is None or len(op.payload) != spec.size:
                        unexpected += 1
                        continue
                    replies += 1
                    done += 1
                    if done == spec.warmup:
                        t_measure = now
                        deadline = now + spec.duration
                    elif done > spec.warmup:
                        latencies.append(now - sent_at)
                        t_last = now
                elif op.kind == "PING":
                    sock.sendall(b"PONG\r\n")
                elif op.kind == "-ERR":
                    raise BenchError(f"server error: -ERR {op.text.decode(errors='replace')}")
            del buf[:pos]
            if replies and now < deadline:
                send(replies)
        latencies.sort()
        results.put(("result", role, 0, {
            "completed": len(latencies),
            "elapsed": (t_last - t_measure) if t_measure else 0.0,
            "p50": percentile(latencies, 50),
            "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99),
            "lost": len(pending),
            "unexpected": unexpected,
            "sent": seq,
        }))
        _wait_stop(shared, 5.0)
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BenchError | WireError | OSError):
        return f"{type(exc).__name__}: {exc}"
    return "".join(traceback.format_exception(exc)).strip()

