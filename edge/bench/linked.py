"""Multi-server set-ups for the ``leaf`` and ``store-*`` scenarios: a hub nats-server, the server under
test started as its leaf, and the client-side helpers those scenarios need.

Everything here blocks and is called from the orchestrator: writing configuration files, starting a
hub, proving that a route through the leaf link carries a subscription's interest, publishing an exact
number of numbered messages and waiting until the gateway has made each durable, and holding a leaf
dial open so that the moment the link may come up is chosen by the benchmark, not by a reconnect timer.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from edge.bench import loadgen
from edge.bench.servers import ArgvFactory, ServerStartError, edge_argv
from edge.bench.wire import Control, FrameBatch, Msg, parse_op, pub_frame, pub_header

__all__ = [
    "HeldDial",
    "edge_config_argv",
    "filesystem_of",
    "hub_argv",
    "nats_server_leaf_argv",
    "probe_route",
    "publish_durable",
    "toml_str",
]

PROBE_TIMEOUT: Final = 20.0  # a leaf reconnects after ~1 s; interest then needs one LS+ round
PROBE_INTERVAL: Final = 0.02
ACK_TIMEOUT: Final = 30.0


def toml_str(text: str) -> str:
    """A TOML basic string (JSON string syntax is a subset for what we write: paths, URLs)."""
    return json.dumps(text)


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def hub_argv(binary: str, leaf_port: int, conf_dir: Path, name: str = "hub") -> ArgvFactory:
    """nats-server as a hub: a client port (chosen by start_broker) and a leafnodes listen port."""

    def argv(host: str, port: int) -> list[str]:
        conf = _write(conf_dir / f"{name}.conf",
                      f'listen: "{host}:{port}"\nserver_name: "bench-{name}"\n'
                      f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n')
        return [binary, "-c", conf]

    return argv


def nats_server_leaf_argv(binary: str, hub_leaf_port: int, conf_dir: Path) -> ArgvFactory:
    """nats-server as a leaf of the hub at 127.0.0.1:``hub_leaf_port``."""

    def argv(host: str, port: int) -> list[str]:
        conf = _write(conf_dir / "leaf.conf",
                      f'listen: "{host}:{port}"\nserver_name: "bench-leaf"\n'
                      f'leafnodes {{\n  remotes = [ {{ url: "nats-leaf://127.0.0.1:{hub_leaf_port}" }} ]\n}}\n')
        return [binary, "-c", conf]

    return argv


def edge_config_argv(toml: str, conf_dir: Path, name: str = "edge") -> ArgvFactory:
    """nats-edge with a TOML configuration file (``-a``/``-p`` from start_broker override its listen)."""

    def argv(host: str, port: int) -> list[str]:
        conf = _write(conf_dir / f"{name}.toml", toml)
        return [*edge_argv(host, port), "-c", conf]

    return argv


def probe_route(pub: tuple[str, int], sub: tuple[str, int], timeout: float = PROBE_TIMEOUT,
                alive: Callable[[], bool] | None = None) -> float:
    """Subscribe to a fresh subject at ``sub`` and publish to it at ``pub`` until one arrives.

    Proves the leaf link is up and that interest created at ``sub`` has reached ``pub``: since interest
    updates travel in order on the one link, every subscription made at ``sub`` before this call has
    too. Returns the seconds it took. Raises ServerStartError on timeout or when ``alive()`` is false.
    """
    subject = f"bench.probe.{time.monotonic_ns()}"
    start = time.monotonic()
    deadline = start + timeout
    s_sock, s_buf = loadgen.connect_client(*sub, f"SUB {subject} 1\r\n".encode(), name="bench-probe-sub")
    try:
        p_sock, _ = loadgen.connect_client(*pub, name="bench-probe-pub")
        try:
            s_sock.settimeout(PROBE_INTERVAL)
            frame = pub_frame(subject, 0, 16)
            while True:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"no message crossed the leaf link within {timeout:.0f} s")
                if alive is not None and not alive():
                    raise ServerStartError("a server exited while waiting for the leaf link")
                p_sock.sendall(frame)
                try:
                    chunk = s_sock.recv(65536)
                except TimeoutError:
                    chunk = b""
                    try:  # drain what the publisher's side says (PINGs), so it never fills
                        p_sock.recv(65536, socket.MSG_DONTWAIT)
                    except (BlockingIOError, InterruptedError):
                        pass
                s_buf += chunk
                pos = 0
                while (parsed := parse_op(s_buf, pos)) is not None:
                    op, pos = parsed
                    if isinstance(op, Msg):
                        return time.monotonic() - start
                    if isinstance(op, Control) and op.kind == "PING":
                        s_sock.sendall(b"PONG\r\n")
                del s_buf[:pos]
        finally:
            p_sock.close()
    finally:
        s_sock.close()


def publish_durable(host: str, port: int, subject: str, size: int, count: int, chunk: int = 2000,
                    in_flight: int = 4) -> float:
    """Publish exactly ``count`` numbered messages (0 .. count-1) to a nats-edge gateway whose
    ``[store_forward]`` covers ``subject``, and return once every one is durable in its outbox.

    The last message of each chunk carries a reply subject: the gateway answers it once the record is
    fsynced (a PubAck-like ``{"seq": N}``), and at most ``in_flight`` chunks are unanswered, so the
    outbox's pending limits are never hit. Returns the seconds taken. Raises ServerStartError.
    """
    inbox = f"_INBOX.bench.{time.monotonic_ns()}"
    sock, buf = loadgen.connect_client(host, port, f"SUB {inbox}.* 1\r\n".encode(), name="bench-store-pub")
    start = time.monotonic()
    try:
        header = pub_header(subject, size)
        acked = 0
        chunks = (count + chunk - 1) // chunk
        sent_chunks = 0
        sock.settimeout(1.0)
        deadline = time.monotonic() + ACK_TIMEOUT
        while acked < chunks:
            while sent_chunks < chunks and sent_chunks - acked < in_flight:
                first = sent_chunks * chunk
                n = min(chunk, count - first)
                out = bytearray()
                if n > 1:
                    out += FrameBatch(header, size, n - 1).set_first(first)
                out += pub_frame(subject, first + n - 1, size, f"{inbox}.{sent_chunks}")
                sock.sendall(out)
                sent_chunks += 1
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise ServerStartError(f"only {acked} of {chunks} chunks were acknowledged as durable") from None
                continue
            if not data:
                raise ServerStartError("the gateway closed the publisher's connection")
            buf += data
            pos = 0
            while (parsed := parse_op(buf, pos)) is not None:
                op, pos = parsed
                if isinstance(op, Msg):
                    body = json.loads(op.payload or b"{}")
                    if "error" in body:
                        raise ServerStartError(f"the gateway refused to store: {body['error']}")
                    acked += 1
                    deadline = time.monotonic() + ACK_TIMEOUT
                elif isinstance(op, Control) and op.kind == "PING":
                    sock.sendall(b"PONG\r\n")
                elif isinstance(op, Control) and op.kind == "-ERR":
                    raise ServerStartError(f"gateway: -ERR {op.text.decode(errors='replace')}")
            del buf[:pos]
        return time.monotonic() - start
    finally:
        sock.close()


class HeldDial:
    """A listener where a leaf remote's first URL points: it accepts the gateway's dial and holds the
    connection without sending INFO (the gateway waits ``first_info_timeout``). :meth:`release` closes
    it; the gateway then waits ``reconnect`` and dials its next URL, where the hub is by then."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((host, 0))
        self.listener.listen(4)
        self.port: int = self.listener.getsockname()[1]
        self.conn: socket.socket | None = None

    def wait_dial(self, timeout: float, alive: Callable[[], bool] | None = None) -> None:
        """Wait until the gateway has dialled (accepted, held). Raises ServerStartError."""
        deadline = time.monotonic() + timeout
        self.listener.settimeout(0.05)
        while self.conn is None:
            if time.monotonic() > deadline:
                raise ServerStartError("the gateway never dialled its leaf remote")
            if alive is not None and not alive():
                raise ServerStartError("the gateway exited before dialling its leaf remote")
            try:
                self.conn, _ = self.listener.accept()
            except TimeoutError:
                continue

    def release(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.listener.close()

    def __enter__(self) -> HeldDial:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def filesystem_of(path: str) -> str:
    """The filesystem type holding ``path`` (from /proc/mounts), or ``?``."""
    best, kind = "", "?"
    try:
        real = str(Path(path).resolve())
        with open("/proc/mounts", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")) \
                        and len(parts[1]) >= len(best):
                    best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind

