"""SIGUSR2 lame duck mode on the real broker: INFO with ldm to clients, /healthz 503, paced close, exit 0."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.processes import start_nats_edge, wait_for


def test_sigusr2_lame_duck(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('lame_duck_duration = "1s"\nlame_duck_grace_period = "0.5s"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf), "-m", "-1")
    try:
        clients = [socket.create_connection(("127.0.0.1", sp.port), timeout=10) for _ in range(3)]
        for c in clients:
            assert c.recv(4096).startswith(b"INFO ")
            c.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            assert c.recv(4096) == b"PONG\r\n"
        sp.proc.send_signal(signal.SIGUSR2)
        for c in clients:
            line = c.recv(65536)
            assert line.startswith(b"INFO ") and line.endswith(b"\r\n")
            info = json.loads(line[5:])
            assert info["ldm"] is True
        try:
            with urllib.request.urlopen(sp.url_of("monitoring") + "/healthz", timeout=5) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, ConnectionError):
            status = 503  # already stopped listening
        assert status == 503
        for c in clients:
            assert c.recv(4096) == b""  # closed by the server
            c.close()
        wait_for(lambda: sp.proc.poll() is not None, 10, "exit after lame duck")
        assert sp.proc.returncode == 0, sp.log()
        assert "Entering lame duck mode" in sp.log()
    finally:
        sp.stop()
