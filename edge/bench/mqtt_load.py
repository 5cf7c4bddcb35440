"""MQTT load-generator worker processes: publisher, subscriber and the two fake servers of the ceiling.

Same contract as :mod:`edge.bench.loadgen` (spawned processes, GC off, ``(kind, role, index, payload)``
messages on ``results``, coordination through :class:`~edge.bench.loadgen.Shared`), speaking MQTT 3.1.1
over raw sockets with frames pre-encoded by :mod:`edge.bench.mqtt_wire`. A publisher's stream ends with
PINGREQ: the broker handles one connection's packets in order, so its PINGRESP proves every PUBLISH
before it was processed (and at QoS 1 the publisher also waits for every PUBACK, checked in order).
"""

from __future__ import annotations

import gc
import itertools
import socket
import time
from dataclasses import dataclass
from typing import Any, Final

from edge.bench.loadgen import (
    CREDIT_WAIT,
    FINAL_PONG_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    POLL_TIMEOUT,
    RCVLOWAT,
    RECV_BUFFER,
    SOCK_BUFFER,
    BenchError,
    Credit,
    Shared,
    _credit_fn,
    _describe,
    _listen,
    _new_socket,
    _wait_stop,
)
from edge.bench.mqtt_wire import AckCounter, MqttBatch, MqttVerifier, packet_end
from edge.protocol import mqtt

CONNACK_OK: Final = mqtt.encode_connack(False, mqtt.ACCEPTED)
_client_ids = itertools.count()


@dataclass(frozen=True)
class MqttPubSpec:
    """A publisher (a client of host:port) or, with ``serve``, a blaster: a fake broker on host that
    sends the numbered PUBLISH stream to one subscriber."""

    host: str
    port: int
    topic: str
    size: int
    qos: int
    duration: float
    credit: Credit = "none"
    window: int = 0
    batch: int | None = None  # frames per sendall (default ~256 KiB)
    serve: bool = False


@dataclass(frozen=True)
class MqttSubSpec:
    index: int
    host: str
    port: int
    topic: str
    size: int
    qos: int


def _read_packet(sock: socket.socket, buf: bytearray, deadline: float) -> mqtt.Packet:
    """One whole packet from ``sock`` (blocking until ``deadline``), decoded from the server side."""
    while True:
        end = packet_end(buf, 0) if len(buf) >= 2 else None
        if end is not None:
            packets = mqtt.Decoder(server=False).feed(bytes(buf[:end]))
            del buf[:end]
            return packets[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise BenchError("timed out waiting for the broker")
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("connection closed by the broker")
        buf += chunk


def mqtt_connect(host: str, port: int, client_id: str, extra: bytes = b"") -> tuple[socket.socket, bytearray]:
    """CONNECT (clean session, no keep-alive) and wait for CONNACK 0; then send ``extra`` (a SUBSCRIBE)
    and, if there is one, wait for its SUBACK. Returns the blocking socket and any bytes read after."""
    sock = _new_socket()
    sock.settimeout(HANDSHAKE_TIMEOUT)
    try:
        sock.connect((host, port))
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        sock.sendall(mqtt.encode_connect(mqtt.Connect(client_id, True, 0)))
        buf = bytearray()
        ack = _read_packet(sock, buf, deadline)
        if not isinstance(ack, mqtt.ConnAck) or ack.return_code != mqtt.ACCEPTED:
            raise BenchError(f"CONNECT refused: {ack!r}")
        if extra:
            sock.sendall(extra)
            sub = _read_packet(sock, buf, deadline)
            if not isinstance(sub, mqtt.SubAck) or any(c == mqtt.SUBACK_FAILURE for c in sub.return_codes):
                raise BenchError(f"SUBSCRIBE refused: {sub!r}")
    except BaseException:
        sock.close()
        raise
    sock.settimeout(None)
    return sock, buf


def _accept_fake(listener: socket.socket) -> socket.socket:
    """Fake-broker side of a handshake: read CONNECT, answer CONNACK 0 (and SUBACK for a SUBSCRIBE)."""
    listener.settimeout(HANDSHAKE_TIMEOUT)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCK_BUFFER)
    conn.settimeout(HANDSHAKE_TIMEOUT)
    decoder = mqtt.Decoder(server=True)
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            raise BenchError("fake broker: client went away during the handshake")
        for p in decoder.feed(chunk):
            if isinstance(p, mqtt.Connect):
                conn.sendall(CONNACK_OK)
                if p.client_id.startswith("bench-mqtt-pub"):
                    conn.settimeout(None)
                    return conn
            elif isinstance(p, mqtt.Subscribe):
                conn.sendall(mqtt.encode_suback(p.packet_id, [q for _, q in p.filters]))
                conn.settimeout(None)
                return conn


class _Drain:
    """Non-blocking reader for a sending socket (PUBACKs, PINGRESP); ``discard`` ignores content."""

    def __init__(self, sock: socket.socket, discard: bool = False) -> None:
        self.sock = sock
        self.acks = AckCounter()
        self.discard = discard
        self.scratch = bytearray(RECV_BUFFER if discard else 1 << 20)

    def poll(self) -> None:
        while True:
            try:
                n = self.sock.recv_into(self.scratch, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            if n == 0:
                raise BenchError("connection closed by the broker")
            if not self.discard:
                self.acks.feed(memoryview(self.scratch)[:n])
            if n < len(self.scratch):
                return


def mqtt_publisher_main(spec: MqttPubSpec, shared: Shared, results: Any) -> None:
    """Publish numbered messages for ``duration`` s after ``go`` and report ``{"sent", "t0", "t_end",
    "acked"}``: ``t_end`` is when the broker answered the final PINGREQ (and, at QoS 1, acked all)."""
    gc.disable()
    role = "blaster" if spec.serve else "publisher"
    sock: socket.socket | None = None
    try:
        if spec.serve:
            listener = _listen(spec.host)
            results.put(("port", role, 0, listener.getsockname()[1]))
            sock = _accept_fake(listener)
            listener.close()
        else:
            sock, _ = mqtt_connect(spec.host, spec.port, f"bench-mqtt-pub-{next(_client_ids)}")
        results.put(("ready", role, 0, None))
        batch = MqttBatch(spec.topic.encode(), spec.size, spec.qos, spec.batch)
        n = batch.count
        credit = _credit_fn(spec, shared)  # type: ignore[arg-type]  # same credit/window fields
        window = max(spec.window, 2 * n)
        drain = _Drain(sock, discard=spec.serve)
        acks = drain.acks
        qos1 = spec.qos == 1 and not spec.serve
        if not shared.go.wait(HANDSHAKE_TIMEOUT * 3):
            raise BenchError("never told to start")
        t0 = time.monotonic()
        deadline = t0 + spec.duration
        seq = 0
        now = t0
        while now < deadline and not shared.stop.value:
            # Bound what is in flight: towards the slowest subscriber, and (QoS 1) unacknowledged.
            while ((credit is not None and seq + n - credit() > window)
                   or (qos1 and seq + n - acks.acked > window)):
                time.sleep(CREDIT_WAIT)  # generator back-off; the broker is the one being measured
                if qos1:
                    drain.poll()
                now = time.monotonic()
                if now >= deadline or shared.stop.value:
                    break
            if now >= deadline or shared.stop.value:
                break
            sock.sendall(batch.set_first(seq))
            seq += n
            drain.poll()
            now = time.monotonic()
        t_end = time.monotonic()
        if not spec.serve:
            sock.sendall(mqtt.PINGREQ_BYTES)
            final = time.monotonic() + FINAL_PONG_TIMEOUT
            sock.setblocking(True)
            sock.settimeout(POLL_TIMEOUT)
            scratch = bytearray(1 << 20)
            while acks.pingresps == 0 or (qos1 and acks.acked < seq):
                if time.monotonic() > final:
                    raise BenchError(f"no PINGRESP/PUBACKs within {FINAL_PONG_TIMEOUT:g} s "
                                     f"({acks.acked} of {seq} acked)")
                try:
                    got = sock.recv_into(scratch)
                except TimeoutError:
                    continue
                if not got:
                    raise BenchError("connection closed by the broker")
                acks.feed(memoryview(scratch)[:got])
            t_end = time.monotonic()
        shared.total.value = seq
        results.put(("result", role, 0, {"sent": seq, "t0": t0, "t_end": t_end, "acked": acks.acked}))
        _wait_stop(shared)
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


def mqtt_subscriber_main(spec: MqttSubSpec, shared: Shared, results: Any) -> None:
    """Subscribe at ``qos``, verify (and at QoS 1 acknowledge) every message until ``stop``."""
    gc.disable()
    role = "subscriber"
    idx = spec.index
    sock: socket.socket | None = None
    try:
        topic = spec.topic.encode()
        sock, leftover = mqtt_connect(spec.host, spec.port, f"bench-mqtt-sub-{idx}-{next(_client_ids)}",
                                      mqtt.encode_subscribe(1, [(topic, spec.qos)]))
        verifier = MqttVerifier(topic, spec.size, spec.qos)
        owed = verifier.feed(leftover)
        if owed:
            sock.sendall(owed)
        results.put(("ready", role, idx, None))
        buf = bytearray(RECV_BUFFER)
        mv = memoryview(buf)
        sock.settimeout(POLL_TIMEOUT)
        # At QoS 1 the broker stops after its in-flight limit until we ack: never wait for a low-water mark.
        lowat = False
        counters, last_rx, stop, total = shared.counters, shared.last_rx, shared.stop, shared.total
        first_rx = 0.0
        while not stop.value:
            try:
                n = sock.recv_into(buf)
            except TimeoutError:
                if lowat:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
                    lowat = False
                continue
            except ConnectionResetError:
                # A fake broker closes with our last PUBACKs unread once told to stop: that is the end.
                if not stop.value:
                    raise
                break
            if n == 0:
                if not stop.value:
                    verifier.errors.append("connection closed by the broker")
                break
            now = time.monotonic()
            owed = verifier.feed(mv[:n])
            if owed:
                sock.sendall(owed)
            counters[idx] = verifier.frames
            last_rx[idx] = now
            if not first_rx:
                first_rx = now
            if spec.qos == 0 and not lowat and n >= RCVLOWAT and total.value < 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, RCVLOWAT)
                lowat = True
        t = verifier.tracker
        sent = max(0, total.value)
        results.put(("result", role, idx, {
            "frames": verifier.frames, "unique": t.unique, "duplicates": t.duplicates, "reordered": t.reordered,
            "missing": t.missing(sent), "errors": verifier.errors[:10], "slow_ops": verifier.slow_ops,
            "first_rx": first_rx, "last_rx": last_rx[idx],
        }))
    except Exception as exc:
        results.put(("error", role, idx, _describe(exc)))
    finally:
        if sock is not None:
            sock.close()


def mqtt_discard_main(host: str, shared: Shared, results: Any) -> None:
    """A fake broker that discards a publisher's stream and answers its final PINGREQ: its ceiling."""
    gc.disable()
    role = "discard"
    try:
        listener = _listen(host)
        results.put(("port", role, 0, listener.getsockname()[1]))
        conn = _accept_fake(listener)
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
                # The PINGREQ is the last thing the publisher sends (payloads are ASCII filler, never 0xC0).
                last = (last + bytes(buf[max(0, n - 2) : n]))[-2:]
                if last == mqtt.PINGREQ_BYTES:
                    conn.sendall(mqtt.PINGRESP_BYTES)
                    last = b""
        results.put(("result", role, 0, None))
    except Exception as exc:
        results.put(("error", role, 0, _describe(exc)))
