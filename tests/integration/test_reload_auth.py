"""SIGHUP reload of authorization, nats-edge side by side with nats-server (same configs, same bytes):
a removed user's client is closed, a remaining user's subscriptions
that the new permissions deny are removed with the subscription violation, the rest keep working.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_auth import write_configs
from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(60)

BEFORE: list[dict[str, Any]] = [
    {"user": "alice", "password": "p"},
    {"user": "bob", "password": "p", "permissions": {"subscribe": {"allow": ["x.>", "b.>"]}}},
    {"user": "carol", "password": "p"},
]
AFTER: list[dict[str, Any]] = [
    {"user": "bob", "password": "p", "permissions": {"subscribe": {"allow": ["b.>"]}}},
    {"user": "carol", "password": "p"},
]


class Rig:
    def __init__(self, kind: str, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.proc: ServerProcess | None = None

    def write(self, users: list[dict[str, Any]]) -> tuple[Path, str]:
        toml, conf = write_configs(self.workdir, {"users": users}, "[auth_backoff]\nthreshold = 0\n")
        if self.proc is not None and self.kind == "nats-server":
            (self.workdir / "nats-server.conf").write_text(conf)
        return toml, conf

    def start(self) -> ServerProcess:
        toml, conf = self.write(BEFORE)
        if self.kind == "nats-edge":
            self.proc = start_nats_edge(self.workdir, "-c", str(toml))
        else:
            self.proc = start_nats_server(self.workdir, config=conf)
        return self.proc


@pytest.fixture(params=["nats-edge", "nats-server"])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(request.param, tmp_path)
    r.start()
    yield r
    assert r.proc is not None
    r.proc.stop()


def login(port: int, user: str) -> RawClient:
    c = RawClient(port)
    c.send(b'CONNECT {"verbose":false,"pedantic":false,"user":"%s","pass":"p"}\r\nPING\r\n' % user.encode())
    assert c.read_until_pong() == b"PONG\r\n"
    return c


def test_reload_closes_removed_users_and_drops_denied_subscriptions(rig: Rig) -> None:
    assert rig.proc is not None
    port = rig.proc.port
    alice, bob, carol = login(port, "alice"), login(port, "bob"), login(port, "carol")
    try:
        bob.send(b"SUB x.1 1\r\nSUB b.1 2\r\nPING\r\n")
        assert bob.read_until_pong() == b"PONG\r\n"

        rig.write(AFTER)
        rig.proc.proc.send_signal(signal.SIGHUP)

        # alice is no longer a user: closed (nats-server sends no -ERR here).
        assert alice.read_until_closed(timeout=10) == b""
        # bob stays, loses x.1 (now denied) with the violation, keeps b.1.
        assert bob.read_line(timeout=10) == b"-ERR 'Permissions Violation for Subscription to \"x.1\" (sid \"1\")'\r\n"
        carol.send(b"PUB x.1 1\r\nx\r\nPUB b.1 1\r\nb\r\nPING\r\n")
        assert carol.read_until_pong() == b"PONG\r\n"
        bob.send(b"PING\r\n")
        assert bob.read_until_pong() == b"MSG b.1 2 1\r\nb\r\nPONG\r\n"
        # The new rules hold for new logins too.
        fresh = RawClient(port)
        fresh.send(b'CONNECT {"verbose":false,"pedantic":false,"user":"alice","pass":"p"}\r\nPING\r\n')
        assert fresh.read_until_closed() == b"-ERR 'Authorization Violation'\r\n"
        fresh.close()
        bob.send(b"SUB x.2 3\r\nPING\r\n")
        assert bob.read_until_pong() == b"-ERR 'Permissions Violation for Subscription to \"x.2\"'\r\nPONG\r\n"
    finally:
        for c in (alice, bob, carol):
            c.close()
