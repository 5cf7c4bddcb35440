"""Per-port users on serial ``nats``/``frames`` ports: the broker subprocess with real pyserial on real ptys.

The device side is written with firmware_bridge's own codecs (``encode_connect``/``encode_pub``/...,
``encode_frame``/``FrameDecoder``, ``ServerOpParser``); the other side is nats-py logged in as a TCP
user. A port with ``user = "dev"`` gets exactly dev's permissions through the same checks as a TCP
client: the same -ERR bytes down the line (inside a frame for ``frames``), nothing routed, the port
staying usable. Also: the config errors for ``user`` (file and key named), a port without ``user``
(the ``no_auth_user``), and SIGHUP reloads with such ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nats
import pytest

from edge.config.loader import load_settings
from edge.errors import ConfigError
from firmware_bridge.frames import FrameDecoder, encode_frame
from firmware_bridge.nats import PONG, Info, Ping, ServerOpParser, encode_connect, encode_pub, encode_sub
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge, wait_for
from tests.support.ptys import PtyDevice

pytestmark = pytest.mark.timeout(90)

NKEY = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"

AUTH = """
[authorization]
no_auth_user = "sensor"
users = [
  { user = "admin", password = "p" },
  { user = "dev", permissions = { publish = { allow = ["dev.>"], deny = ["dev.secret"] }, \
subscribe = { allow = ["cmd.>", "svc.node"], deny = ["cmd.secret"] }, allow_responses = true } },
  { user = "sensor", password = "p", permissions = { publish = ["anon.>"], subscribe = ["anon.>"] } },
]
"""
# name -> (codec, user or None)
PORTS: dict[str, tuple[str, str | None]] = {
    "pnats": ("nats", "dev"),
    "pframes": ("frames", "dev"),
    "panon": ("nats", None),
}


def pub_err(subject: str) -> bytes:
    return b"-ERR 'Permissions Violation for Publish to \"" + subject.encode() + b"\"'\r\n"


def sub_err(subject: str) -> bytes:
    return b"-ERR 'Permissions Violation for Subscription to \"" + subject.encode() + b"\"'\r\n"


class SerialDevice:
    """The device end of a pty: sends client ops (framed for ``frames``), reads the de-framed stream.

    Answers the broker's PINGs with PONG (as firmware must) and leaves them, and the async INFO sent
    after the first PONG (protocol 1), out of what it returns.
    """

    def __init__(self, pty: PtyDevice, codec: str) -> None:
        self.pty = pty
        self.codec = codec
        self.frames = FrameDecoder() if codec == "frames" else None
        self.parser = ServerOpParser()
        self.buf = bytearray()  # received protocol bytes (frames decoded), not yet returned

    def send(self, data: bytes) -> None:
        self.pty.write(encode_frame(data) if self.frames is not None else data)

    def _pump(self, timeout: float) -> list[Any]:
        chunk = self.pty.read(timeout)
        data = b"".join(self.frames.feed(chunk)) if self.frames is not None else chunk
        self.buf += data
        ops = self.parser.feed(data)
        for op in ops:
            if isinstance(op, Ping):
                self.send(PONG)
        return ops

    def wait_info(self, timeout: float = 20.0) -> None:
        """Wait for the broker's INFO: the adapter has opened (and flushed) the port and attached a client."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(isinstance(op, Info) for op in self._pump(0.2)):
                self.buf.clear()
                return
        raise AssertionError(f"no INFO on the {self.codec} port within {timeout}s")

    def exchange(self, ops: bytes, timeout: float = 10.0) -> bytes:
        """Send ``ops`` and a PING; return everything the broker sent up to and including the PONG."""
        self.send(ops + b"PING\r\n")
        end = time.monotonic() + timeout
        while True:
            got = re.sub(rb"INFO [^\r\n]*\r\n", b"", bytes(self.buf).replace(b"PING\r\n", b""))
            i = got.find(b"PONG\r\n")
            if i >= 0:
                # Keep what followed the PONG for the next call (rare: a server PING in the same read).
                rest = got[i + 6 :]
                self.buf = bytearray(rest)
                return got[: i + 6]
            if time.monotonic() > end:
                raise AssertionError(f"no PONG on the {self.codec} port; got {got!r}")
            self._pump(0.2)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("serialperm")
    ptys = {name: PtyDevice(work / name) for name in PORTS}
    conf = ['server_name = "gw1"\nping_interval = "60s"\n']
    for name, (codec, user) in PORTS.items():
        conf.append(
            f'[[adapters.serial]]\nname = "{name}"\nport = "{work / name}"\ndevice = "{name}"\ncodec = "{codec}"\n'
            + (f'user = "{user}"\n' if user else "")
        )
    conf.append(AUTH)  # after the adapters on purpose: user is checked once everything is read
    toml = work / "edge.toml"
    toml.write_text("".join(conf))
    sp = start_nats_edge(work, "-c", str(toml))
    devices: dict[str, SerialDevice] = {}
    try:
        for name, (codec, _) in PORTS.items():
            d = devices[name] = SerialDevice(ptys[name], codec)
            d.wait_info()
            # The CONNECT firmware sends: no credentials at all.
            assert d.exchange(encode_connect(name)) == b"PONG\r\n"
        yield {"server": sp, "devices": devices, "conf": toml, "text": "".join(conf)}
    finally:
        code = sp.stop()
        for p in ptys.values():
            p.close()
        assert code == 0, sp.log()


async def admin(sp: ServerProcess) -> Any:
    return await nats.connect(sp.url, user="admin", password="p", max_reconnect_attempts=0)


async def collect(nc: Any, subject: str) -> asyncio.Queue[Any]:
    q: asyncio.Queue[Any] = asyncio.Queue()

    async def cb(msg: Any) -> None:
        q.put_nowait(msg)

    await nc.subscribe(subject, cb=cb)
    await flush(nc)
    return q


async def until_marker(q: asyncio.Queue[Any], marker: str, timeout: float = 10.0) -> list[tuple[str, bytes]]:
    """What ``q`` received before a message on ``marker``. A publisher's messages reach a subscriber in
    the order published, so a marker published last fences everything the publisher sent before it."""
    out = []
    async with asyncio.timeout(timeout):
        while (m := await q.get()).subject != marker:
            out.append((m.subject, m.data))
    return out


def drain(q: asyncio.Queue[Any]) -> list[tuple[str, bytes]]:
    out = []
    while not q.empty():
        m = q.get_nowait()
        out.append((m.subject, m.data))
    return out


@pytest.mark.parametrize("port", ["pnats", "pframes"])
async def test_publish_allowed_denied_and_port_keeps_working(rig: dict[str, Any], port: str) -> None:
    dev: SerialDevice = rig["devices"][port]
    nc = await admin(rig["server"])
    try:
        seen = await collect(nc, ">")
        got = dev.exchange(
            encode_pub(f"dev.{port}.temp", b"21") + encode_pub("dev.secret", b"s1") + encode_pub("other.x", b"o1")
            + encode_pub(f"dev.{port}.mark", b"")
        )
        # Exactly the bytes a TCP client gets (tests/integration/test_permissions.py); nothing else.
        assert got == pub_err("dev.secret") + pub_err("other.x") + b"PONG\r\n"
        msgs = [m for m in await until_marker(seen, f"dev.{port}.mark") if not m[0].startswith("evt.")]
        assert msgs == [(f"dev.{port}.temp", b"21")]  # the denied ones reached no one
        # The connection stayed open: a later allowed publish still arrives, a denied one is still refused.
        got = dev.exchange(encode_pub("dev.secret", b"s2") + encode_pub(f"dev.{port}.after", b"ok"))
        assert got == pub_err("dev.secret") + b"PONG\r\n"
        msg = await asyncio.wait_for(_next(seen, lambda m: m.subject == f"dev.{port}.after"), 10)
        assert msg.data == b"ok"
        await flush(nc)
        assert not [m for m in drain(seen) if m[0] == "dev.secret"]
    finally:
        await nc.close()


async def _next(q: asyncio.Queue[Any], pred: Any) -> Any:
    while True:
        m = await q.get()
        if pred(m):
            return m


@pytest.mark.parametrize("port", ["pnats", "pframes"])
async def test_subscribe_denied_and_allowed(rig: dict[str, Any], port: str) -> None:
    dev: SerialDevice = rig["devices"][port]
    got = dev.exchange(encode_sub("cmd.secret", 1) + encode_sub("nope.x", 2) + encode_sub(f"cmd.{port}.>", 3))
    assert got == sub_err("cmd.secret") + sub_err("nope.x") + b"PONG\r\n"
    nc = await admin(rig["server"])
    try:
        await nc.publish("cmd.secret", b"no")
        await nc.publish("nope.x", b"no")
        await nc.publish(f"cmd.{port}.led", b"on")
        await flush(nc)
    finally:
        await nc.close()
    got = dev.exchange(b"UNSUB 3\r\n")
    assert got == f"MSG cmd.{port}.led 3 2\r\non\r\n".encode() + b"PONG\r\n"


async def test_allow_responses_on_the_port(rig: dict[str, Any]) -> None:
    dev: SerialDevice = rig["devices"]["pnats"]
    assert dev.exchange(encode_sub("svc.node", 7)) == b"PONG\r\n"
    nc = await admin(rig["server"])
    try:
        replies = await collect(nc, "_INBOX.r1")
        marks = await collect(nc, "dev.pnats.mark")
        await nc.publish("svc.node", b"q", reply="_INBOX.r1")
        await flush(nc)
        assert dev.exchange(b"") == b"MSG svc.node 7 _INBOX.r1 1\r\nq\r\nPONG\r\n"
        # One response per request (allow_responses = true: max 1); the second is a violation.
        got = dev.exchange(encode_pub("_INBOX.r1", b"a") + encode_pub("_INBOX.r1", b"b")
                           + encode_pub("dev.pnats.mark", b""))
        assert got == pub_err("_INBOX.r1") + b"PONG\r\n"
        # The marker, published last, fences the replies (nats-py runs the callbacks in arrival order).
        await asyncio.wait_for(marks.get(), 10)
        assert drain(replies) == [("_INBOX.r1", b"a")]
    finally:
        await nc.close()
    assert dev.exchange(b"UNSUB 7\r\n") == b"PONG\r\n"


async def test_connect_credentials_cannot_change_the_port_user(rig: dict[str, Any]) -> None:
    dev: SerialDevice = rig["devices"]["pnats"]
    for creds in ({"user": "admin", "pass": "p"}, {"user": "admin", "pass": "wrong"}, {"auth_token": "x"}):
        opts = {"verbose": False, "pedantic": False, "protocol": 1, **creds}
        connect = b"CONNECT " + json.dumps(opts).encode() + b"\r\n"
        # No Authorization Violation (the port is the credential), and still dev's permissions.
        assert dev.exchange(connect + encode_pub("other.x", b"1")) == pub_err("other.x") + b"PONG\r\n"
    nc = await admin(rig["server"])
    try:
        q = await collect(nc, "dev.pnats.still")
        assert dev.exchange(encode_pub("dev.pnats.still", b"up")) == b"PONG\r\n"
        assert (await asyncio.wait_for(q.get(), 10)).data == b"up"
    finally:
        await nc.close()


async def test_port_without_user_is_the_no_auth_user(rig: dict[str, Any]) -> None:
    dev: SerialDevice = rig["devices"]["panon"]
    nc = await admin(rig["server"])
    try:
        q = await collect(nc, "anon.>")
        got = dev.exchange(encode_pub("dev.panon.temp", b"1") + encode_pub("anon.temp", b"2"))
        assert got == pub_err("dev.panon.temp") + b"PONG\r\n"
        assert (await asyncio.wait_for(q.get(), 10)).data == b"2"
    finally:
        await nc.close()


def test_reload_with_port_users(rig: dict[str, Any]) -> None:
    """SIGHUP: a config naming an unknown user is rejected (file and key logged), a valid one applies;
    the ports keep their user and permissions and keep working throughout."""
    sp: ServerProcess = rig["server"]
    conf: Path = rig["conf"]
    text: str = rig["text"]
    dev: SerialDevice = rig["devices"]["pframes"]
    try:
        conf.write_text(text.replace('user = "dev"', 'user = "ghost"', 1))
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: f"{conf}: adapters.serial[0].user" in sp.log(), 10, "reload error naming file and key")
        assert "'ghost' is not in authorization.users" in sp.log()
        assert dev.exchange(encode_pub("other.x", b"1")) == pub_err("other.x") + b"PONG\r\n"
        conf.write_text(text.replace('ping_interval = "60s"', 'ping_interval = "50s"'))
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Reloaded server configuration" in sp.log(), 10, "reload log line")
        for port in ("pnats", "pframes"):
            d: SerialDevice = rig["devices"][port]
            assert d.exchange(encode_pub("other.x", b"1")) == pub_err("other.x") + b"PONG\r\n"
            assert d.exchange(encode_pub(f"dev.{port}.x", b"1")) == b"PONG\r\n"
        assert "Traceback" not in sp.log()
    finally:
        conf.write_text(text)


# -- config ------------------------------------------------------------------------------------


def _port(codec: str = "nats", extra: str = 'user = "dev"\n') -> str:
    return f'[[adapters.serial]]\nport = "/dev/ttyUSB0"\ncodec = "{codec}"\n{extra}'


_USERS = '[authorization]\nusers = [{ user = "dev", password = "p" }, { nkey = "' + NKEY + '" }]\n'


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (_port(extra='user = "ghost"\n') + _USERS, "adapters.serial[0].user", "'ghost' is not in authorization.users"),
        (_USERS + _port() + _port(extra='user = "Dev"\n'), "adapters.serial[1].user", "'Dev' is not in"),
        (_port(), "adapters.serial[0].user", "'dev' is not a configured user: there is no authorization.users"),
        ('[authorization]\ntoken = "t"\n' + _port(), "adapters.serial[0].user", "not a configured user"),
        (_USERS + _port("jsonl"), "adapters.serial[0].user", "only the nats and frames codecs"),
        (_USERS + _port("lines", 'user = "dev"\ncodec_options = { pattern = "(?P<x>.*)" }\n'),
         "adapters.serial[0].user", "codec is 'lines'"),
        (_USERS + _port(extra="user = 5\n"), "adapters.serial[0].user", "expected a string"),
        (_USERS + _port(extra='user = ""\n'), "adapters.serial[0].user", "must not be empty"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.source == str(p)
    assert exc.value.key == key
    assert problem in exc.value.problem
    assert str(exc.value).startswith(f"{p}: {key}: ")


def test_config_accepts_users_in_any_order_and_kind(tmp_path: Path) -> None:
    p = tmp_path / "edge.toml"
    p.write_text(_port() + _port("frames", f'user = "{NKEY}"\n') + _port("nats", "") + _USERS)
    ports = [i.options for i in load_settings(p).sections["adapters"].instances]
    assert [c.user for c in ports] == ["dev", NKEY, None]
    p.write_text('[authorization]\nuser = "solo"\npassword = "p"\n' + _port(extra='user = "solo"\n'))
    assert load_settings(p).sections["adapters"].instances[0].options.user == "solo"


def test_config_user_from_another_source(tmp_path: Path) -> None:
    """The port in the file, the users on the command line: checked once both are read."""
    p = tmp_path / "edge.toml"
    p.write_text(_port())
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert (exc.value.source, exc.value.key) == (str(p), "adapters.serial[0].user")
    s = load_settings(p, overrides={"authorization": {"users": [{"user": "dev", "password": "p"}]}})
    assert s.sections["adapters"].instances[0].options.user == "dev"


def test_warning_for_a_port_that_cannot_log_in(caplog: pytest.LogCaptureFixture) -> None:
    from edge.adapters.serial.adapter import SerialAdapter
    from edge.adapters.serial.config import SerialConfig

    def adapter(codec: str, user: str | None, auth_required: bool, no_auth_user: str | None) -> SerialAdapter:
        server = SimpleNamespace(
            auth_required=auth_required,
            settings=SimpleNamespace(authorization=SimpleNamespace(no_auth_user=no_auth_user)),
        )
        ctx = SimpleNamespace(server=server, log=logging.getLogger("edge.adapters.t"), name="t")
        return SerialAdapter(SerialConfig(port="/dev/x", device="x", codec=codec, user=user), ctx)

    cases = [("nats", None, True, None, True), ("frames", None, True, None, True), ("nats", "dev", True, None, False),
             ("nats", None, True, "sensor", False), ("nats", None, False, None, False),
             ("jsonl", None, True, None, False)]
    for codec, user, required, no_auth, warns in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="edge.adapters.t"):
            adapter(codec, user, required, no_auth)._warn_unauthenticated()
        assert ("has no user" in caplog.text) is warns, (codec, user, required, no_auth)


def test_bind_port_user_kinds() -> None:
    """bind_port_user: a users entry (with permissions), an nkey user, the single user; unknown refused."""
    from edge.config.security import PermissionSettings, SubjectPermission, UserSettings
    from edge.config.settings import AuthorizationSettings
    from edge.security.auth import Authenticator

    perms = PermissionSettings(publish=SubjectPermission(("dev.>",)))
    auth = Authenticator(AuthorizationSettings(users=[UserSettings("dev", permissions=perms), UserSettings(nkey=NKEY)]))
    conn = SimpleNamespace(auth_required=True, user=None, permissions=None, host="/dev/ttyUSB0", port=0, cid=1)
    assert auth.bind_port_user(conn, "dev")
    assert (conn.user, conn.port_user, conn.auth_required) == ("dev", "dev", False)
    assert conn.permissions.can_publish(b"dev.x", None) and not conn.permissions.can_publish(b"other", None)
    # A later CONNECT, with or without credentials, keeps the binding.
    assert auth.authenticate(conn, {"user": "someone", "pass": "x"}) and conn.user == "dev"
    nk = SimpleNamespace(auth_required=True, user=None, permissions=None)
    assert auth.bind_port_user(nk, NKEY) and nk.user == NKEY and nk.permissions is None
    assert not auth.bind_port_user(SimpleNamespace(), "ghost")
    single = Authenticator(AuthorizationSettings(user="solo", password="p"))
    s = SimpleNamespace(auth_required=True, user=None, permissions=None)
    assert single.bind_port_user(s, "solo") and s.user == "solo" and s.permissions is None
    assert not single.bind_port_user(SimpleNamespace(), "dev")
