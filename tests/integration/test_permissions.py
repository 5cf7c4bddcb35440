"""Per-user permissions, raw protocol, nats-edge side by side with nats-server (same users, same bytes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from tests.integration.test_auth import write_configs
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(60)

USERS: list[dict[str, Any]] = [
    {"user": "dev", "password": "p", "permissions": {
        "publish": {"allow": ["foo.>", "req.*"], "deny": ["foo.secret"]},
        "subscribe": {"allow": ["foo.*", "q.* v1", "_INBOX.>"], "deny": ["foo.denied", "q.x v9"]},
    }},
    {"user": "svc", "password": "p", "permissions": {"subscribe": ["svc.>"], "allow_responses": True}},
    {"user": "admin", "password": "p"},
]


@pytest.fixture(scope="module", params=["nats-edge", "nats-server"])
def perm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(request.param)
    toml, conf = write_configs(workdir, {"users": USERS})
    sp = start_nats_edge(workdir, "-c", str(toml)) if request.param == "nats-edge" else start_nats_server(
        workdir, config=conf)
    yield sp
    sp.stop()


def login(sp: ServerProcess, user: str) -> RawClient:
    c = RawClient(sp.port)
    opts = {"user": user, "pass": "p", "verbose": False, "pedantic": False, "protocol": 1}
    c.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
    assert c.read_until_pong() == b"PONG\r\n"
    return c


def pub_err(subject: str) -> bytes:
    return b"-ERR 'Permissions Violation for Publish to \"" + subject.encode() + b"\"'\r\n"


def sub_err(subject: str, queue: str | None = None) -> bytes:
    q = b"" if queue is None else b' using queue "' + queue.encode() + b'"'
    return b"-ERR 'Permissions Violation for Subscription to \"" + subject.encode() + b'"' + q + b"'\r\n"


@pytest.mark.parametrize(
    ("sub", "expected"),
    [
        ("foo.bar 1", b""),
        ("foo.* 1", b""),  # the wildcard itself is in the allow list
        ("foo.> 1", b""),  # nats-server: allow "foo.*" matches the literal token ">"
        ("foo.a.b 1", sub_err("foo.a.b")),
        ("bar 1", sub_err("bar")),
        ("> 1", sub_err(">")),
        ("foo.denied 1", sub_err("foo.denied")),
        ("q.x v1 1", b""),
        ("q.x v2 1", sub_err("q.x", "v2")),
        ("q.x 1", sub_err("q.x")),  # queue-only allow entry: a plain SUB is not allowed
        ("_INBOX.abc 1", b""),
    ],
)
def test_subscribe_table(perm_server: ServerProcess, sub: str, expected: bytes) -> None:
    with login(perm_server, "dev") as c:
        c.send(f"SUB {sub}\r\nPING\r\n".encode())
        assert c.read_until_pong() == expected + b"PONG\r\n"


def test_queue_deny_entry(perm_server: ServerProcess) -> None:
    with login(perm_server, "dev") as c:
        # "q.x v9" is in the subscribe deny list; v1 is allowed; the connection stays open.
        c.send(b"SUB q.x v9 1\r\nSUB q.x v1 2\r\nPING\r\n")
        assert c.read_until_pong() == sub_err("q.x", "v9") + b"PONG\r\n"


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [("foo.a", True), ("foo.a.b", True), ("foo.secret", False), ("req.x", True), ("req.x.y", False),
     ("bar", False), ("_INBOX.x", False)],
)
def test_publish_table_and_denied_reach_no_one(perm_server: ServerProcess, subject: str, allowed: bool) -> None:
    with login(perm_server, "admin") as watcher, login(perm_server, "dev") as dev:
        watcher.send(b"SUB > 1\r\nPING\r\n")
        assert watcher.read_until_pong() == b"PONG\r\n"
        dev.send(f"PUB {subject} 2\r\nhi\r\nPING\r\n".encode())
        assert dev.read_until_pong() == (b"" if allowed else pub_err(subject)) + b"PONG\r\n"
        watcher.send(b"PING\r\n")
        seen = watcher.read_until_pong()
        assert (f"MSG {subject} 1 2\r\nhi\r\n".encode() in seen) is allowed


def test_violations_keep_connection_open(perm_server: ServerProcess) -> None:
    with login(perm_server, "dev") as c:
        for _ in range(20):
            c.send(b"PUB bar 0\r\n\r\nSUB bar 1\r\n")
        c.send(b"SUB foo.ok 2\r\nPUB foo.ok 1\r\nx\r\nPING\r\n")
        got = c.read_until_pong()
        assert got == (pub_err("bar") + sub_err("bar")) * 20 + b"MSG foo.ok 2 1\r\nx\r\nPONG\r\n"


def test_wildcard_subscription_does_not_get_denied_subject(perm_server: ServerProcess) -> None:
    with login(perm_server, "admin") as admin, login(perm_server, "dev") as dev:
        dev.send(b"SUB foo.* 1\r\nPING\r\n")
        assert dev.read_until_pong() == b"PONG\r\n"
        admin.send(b"PUB foo.denied 1\r\na\r\nPUB foo.other 1\r\nb\r\nPING\r\n")
        assert admin.read_until_pong() == b"PONG\r\n"
        dev.send(b"PING\r\n")
        assert dev.read_until_pong() == b"MSG foo.other 1 1\r\nb\r\nPONG\r\n"


def test_allow_responses(perm_server: ServerProcess) -> None:
    with login(perm_server, "admin") as requester, login(perm_server, "svc") as svc:
        svc.send(b"SUB svc.echo 1\r\nPING\r\n")
        assert svc.read_until_pong() == b"PONG\r\n"
        requester.send(b"SUB _INBOX.r1 9\r\nPUB svc.echo _INBOX.r1 4\r\nping\r\nPING\r\n")
        assert requester.read_until_pong() == b"PONG\r\n"
        svc.send(b"PING\r\n")
        assert svc.read_until_pong() == b"MSG svc.echo 1 _INBOX.r1 4\r\nping\r\nPONG\r\n"
        # One response is allowed (max 1); a second, or any other subject, is a violation.
        svc.send(b"PUB _INBOX.r1 4\r\npong\r\nPUB _INBOX.r1 4\r\nmore\r\n"
                 b"PUB other 0\r\n\r\nPUB _INBOX.r2 0\r\n\r\nPING\r\n")
        assert svc.read_until_pong() == (pub_err("_INBOX.r1") + pub_err("other") + pub_err("_INBOX.r2")
                                         + b"PONG\r\n")
        requester.send(b"PING\r\n")
        assert requester.read_until_pong() == b"MSG _INBOX.r1 9 4\r\npong\r\nPONG\r\n"


async def test_nats_py_request_reply_with_allow_responses(perm_server: ServerProcess) -> None:
    svc = await nats.connect(perm_server.url, user="svc", password="p", max_reconnect_attempts=0)
    cli = await nats.connect(perm_server.url, user="admin", password="p", max_reconnect_attempts=0)
    try:
        async def handler(msg: Any) -> None:
            await msg.respond(b"re:" + msg.data)

        await svc.subscribe("svc.upper", cb=handler)
        await flush(svc)
        for i in range(5):
            reply = await cli.request("svc.upper", f"m{i}".encode(), timeout=3)
            assert reply.data == f"re:m{i}".encode()
    finally:
        await svc.close()
        await cli.close()


@pytest.mark.parametrize("echo", [False, True])
def test_echo_off_holds_for_filtered_subscriptions(perm_server: ServerProcess, echo: bool) -> None:
    # "foo.*" overlaps dev's subscribe deny "foo.denied": its deliveries go through the deny filter,
    # which must still honour echo=false for the publisher's own messages (plain and queue).
    c = RawClient(perm_server.port)
    opts = {"user": "dev", "pass": "p", "verbose": False, "pedantic": False, "protocol": 1, "echo": echo}
    c.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
    try:
        assert c.read_until_pong() == b"PONG\r\n"
        c.send(b"SUB foo.* 1\r\nPUB foo.e 2\r\nhi\r\nPING\r\n")
        assert c.read_until_pong() == (b"MSG foo.e 1 2\r\nhi\r\nPONG\r\n" if echo else b"PONG\r\n")
        c.send(b"UNSUB 1\r\nSUB foo.* v1 2\r\nPUB foo.q 2\r\nhi\r\nPING\r\n")
        assert c.read_until_pong() == (b"MSG foo.q 2 2\r\nhi\r\nPONG\r\n" if echo else b"PONG\r\n")
    finally:
        c.close()
