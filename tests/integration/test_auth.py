"""Authentication against real processes: nats-py and raw sockets, nats-edge side by side with nats-server.

One configuration (users with a plain and a bcrypt password, an nkey user, a no_auth_user) is
written as TOML for nats-edge and as JSON for nats-server; the raw tests run against both, so the
expected bytes are nats-server's.
"""

from __future__ import annotations

import base64
import gc
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import nats
import nkeys
import pytest
from nats.errors import Error as NatsError

from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server, wait_for
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(60)

# A throwaway nkey user (generated for these tests only).
SEED = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
KP = nkeys.from_seed(SEED)
NKEY_PUB = KP.public_key.decode()
OTHER_KP = nkeys.from_seed(nkeys.encode_seed(bytes(range(1, 33)), nkeys.PREFIX_BYTE_USER))
BCRYPT_HASH = bcrypt.hashpw(b"s3cret-b", bcrypt.gensalt(4)).decode()

USERS: list[dict[str, Any]] = [
    {"user": "alice", "password": "s3cret-a"},
    {"user": "bob", "password": BCRYPT_HASH},
    {"nkey": NKEY_PUB},
    {"user": "anon", "password": "unused-anon", "permissions": {"publish": {"allow": ["public.>"]}}},
]


def toml_value(v: Any) -> str:
    """Enough TOML for the test configs: inline tables and arrays (JSON strings are TOML strings)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def write_configs(workdir: Path, authorization: dict[str, Any], extra_toml: str = "") -> tuple[Path, str]:
    lines = ["[authorization]"] + [f"{k} = {toml_value(v)}" for k, v in authorization.items()]
    toml = workdir / "edge.toml"
    toml.write_text("\n".join(lines) + "\n" + extra_toml)
    # nats-server has no_auth_user at the top level, next to authorization.
    conf = {k: v for k, v in authorization.items() if k != "no_auth_user"}
    top = f"no_auth_user: {json.dumps(authorization['no_auth_user'])}\n" if "no_auth_user" in authorization else ""
    return toml, top + "authorization: " + json.dumps(conf) + "\n"


@pytest.fixture(scope="module", params=["nats-edge", "nats-server"])
def auth_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(request.param)
    toml, conf = write_configs(workdir, {"users": USERS, "no_auth_user": "anon"}, "[auth_backoff]\nthreshold = 0\n")
    sp = start_nats_edge(workdir, "-c", str(toml)) if request.param == "nats-edge" else start_nats_server(
        workdir, config=conf)
    yield sp
    sp.stop()


def sign(kp: Any, nonce: str) -> str:
    return base64.urlsafe_b64encode(kp.sign(nonce.encode())).decode().rstrip("=")


def connect_raw(port: int, options: dict[str, Any]) -> tuple[RawClient, bytes]:
    c = RawClient(port)
    opts = {"verbose": False, "pedantic": False, **options}
    if "sig" in opts and callable(opts["sig"]):
        opts["sig"] = opts["sig"](c.info["nonce"])
    c.send(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
    try:
        return c, c.read_until_pong(timeout=3)
    except EOFError:
        return c, c.read_until_closed(timeout=3)


GOOD = {
    "plain": {"user": "alice", "pass": "s3cret-a"},
    "bcrypt": {"user": "bob", "pass": "s3cret-b"},
    "nkey": {"nkey": NKEY_PUB, "sig": lambda nonce: sign(KP, nonce)},
    "no_auth_user": {},
}
BAD = {
    "plain-wrong-password": {"user": "alice", "pass": "nope"},
    "plain-unknown-user": {"user": "mallory", "pass": "s3cret-a"},
    "bcrypt-wrong-password": {"user": "bob", "pass": "s3cret-x"},
    "bcrypt-hash-as-password": {"user": "bob", "pass": BCRYPT_HASH},
    "nkey-wrong-signer": {"nkey": NKEY_PUB, "sig": lambda nonce: sign(OTHER_KP, nonce)},
    "nkey-garbage-sig": {"nkey": NKEY_PUB, "sig": "!!!not-base64"},
    "nkey-no-sig": {"nkey": NKEY_PUB},
    "nkey-unknown": {"nkey": OTHER_KP.public_key.decode(), "sig": lambda nonce: sign(OTHER_KP, nonce)},
    "token-not-configured": {"auth_token": "abc"},
    "user-without-pass": {"user": "alice"},
}


def attempt(port: int, options: dict[str, Any]) -> bytes:
    c, got = connect_raw(port, options)
    c.close()
    return got


def test_non_string_password_is_a_parse_error(auth_server: ServerProcess) -> None:
    # nats-server cannot unmarshal CONNECT: it closes without an -ERR.
    assert attempt(auth_server.port, {"user": "alice", "pass": 12}) == b""


def test_info_has_nonce(auth_server: ServerProcess) -> None:
    with RawClient(auth_server.port) as c:
        # nats-server leaves auth_required out of INFO when a no_auth_user lets anyone in.
        assert "auth_required" not in c.info
        assert isinstance(c.info["nonce"], str) and len(c.info["nonce"]) >= 11


@pytest.mark.parametrize("kind", list(GOOD))
def test_good_credentials_accepted(auth_server: ServerProcess, kind: str) -> None:
    c, got = connect_raw(auth_server.port, GOOD[kind])
    with c:
        assert got == b"PONG\r\n"


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_credentials_refused_and_closed(auth_server: ServerProcess, kind: str) -> None:
    c, got = connect_raw(auth_server.port, BAD[kind])
    with c:
        assert got == b"-ERR 'Authorization Violation'\r\n"


def test_no_auth_user_gets_its_permissions(auth_server: ServerProcess) -> None:
    c, got = connect_raw(auth_server.port, {})
    with c:
        assert got == b"PONG\r\n"
        c.send(b"PUB private.x 0\r\n\r\nPUB public.x 0\r\n\r\nPING\r\n")
        assert c.read_until_pong() == b"-ERR 'Permissions Violation for Publish to \"private.x\"'\r\nPONG\r\n"


async def test_nats_py_each_kind(auth_server: ServerProcess, tmp_path: Path) -> None:
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(SEED)
    variants: list[dict[str, Any]] = [
        {"user": "alice", "password": "s3cret-a"},
        {"user": "bob", "password": "s3cret-b"},
        {"nkeys_seed": str(seed_file)},
        {},
    ]
    for kw in variants:
        nc = await nats.connect(auth_server.url, max_reconnect_attempts=0, connect_timeout=3, **kw)
        sub = await nc.subscribe("public.echo")
        await nc.publish("public.echo", b"x")
        msg = await sub.next_msg(timeout=3)
        assert msg.data == b"x"
        await nc.close()


async def assert_nats_py_refused(url: str, **kw: Any) -> None:
    """nats-py raises 'Authorization Violation'; it leaks its transport on a refused connect, so the
    garbage is collected here, inside the test, whose marks ignore the resulting ResourceWarning."""

    async def on_error(e: Exception) -> None:
        pass

    with pytest.raises(NatsError) as info:
        await nats.connect(url, max_reconnect_attempts=0, connect_timeout=3, allow_reconnect=False,
                           error_cb=on_error, **kw)
    assert "authorization violation" in str(info.value).lower()
    del info
    gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_nats_py_wrong_credentials(auth_server: ServerProcess, tmp_path: Path) -> None:
    seed_file = tmp_path / "other.nk"
    seed_file.write_bytes(OTHER_KP.seed)
    for kw in ({"user": "alice", "password": "bad"}, {"user": "bob", "password": "bad"},
               {"nkeys_seed": str(seed_file)}):
        await assert_nats_py_refused(auth_server.url, **kw)


# -- token and single user, and the backoff: nats-edge only (fresh processes) -------------------------


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("server", ["nats-edge", "nats-server"])
async def test_token(tmp_path: Path, server: str) -> None:
    token = "t0ken-" + "x" * 20
    sp = start_nats_edge(tmp_path, "--auth", token) if server == "nats-edge" else start_nats_server(
        tmp_path, "--auth", token)
    try:
        nc = await nats.connect(sp.url, token=token, max_reconnect_attempts=0, connect_timeout=3)
        await nc.close()
        assert attempt(sp.port, {"auth_token": "wrong"}) == b"-ERR 'Authorization Violation'\r\n"
        await assert_nats_py_refused(sp.url, token="wrong")
    finally:
        sp.stop()


def test_bcrypt_token_and_backoff(tmp_path: Path) -> None:
    """After 3 failures the address is refused even with the right token, then let in after the period."""
    hashed = bcrypt.hashpw(b"tok", bcrypt.gensalt(4)).decode()
    toml = tmp_path / "edge.toml"
    toml.write_text(f'[authorization]\ntoken = "{hashed}"\n[auth_backoff]\nthreshold = 3\nbase = "300ms"\n')
    sp = start_nats_edge(tmp_path, "-c", str(toml))
    try:
        assert attempt(sp.port, {"auth_token": "tok"}) == b"PONG\r\n"
        for _ in range(3):
            assert attempt(sp.port, {"auth_token": "bad"}) == b"-ERR 'Authorization Violation'\r\n"
        # Blocked: the right token is refused without being checked.
        assert attempt(sp.port, {"auth_token": "tok"}) == b"-ERR 'Authorization Violation'\r\n"
        wait_for(lambda: attempt(sp.port, {"auth_token": "tok"}) == b"PONG\r\n", 5, "the block to expire",
                 interval=0.1)
        log = sp.log()
        assert "127.0.0.1" in log and "address blocked" in log and "wrong token" in log
        assert "tok" not in log.replace("token", "")  # the secret is never logged
    finally:
        sp.stop()


def test_auth_timeout(tmp_path: Path) -> None:
    toml = tmp_path / "edge.toml"
    toml.write_text('[authorization]\ntoken = "abc"\ntimeout = "300ms"\n')
    sp = start_nats_edge(tmp_path, "-c", str(toml))
    try:
        with RawClient(sp.port) as c:
            assert c.read_until_closed(timeout=5) == b"-ERR 'Authentication Timeout'\r\n"
    finally:
        sp.stop()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[authorization]\nusers = [{ password = "a" }]\n', "authorization.users[0].user: each user needs"),
        ('[authorization]\nusers = [{ nkey = "UABC" }]\n', "authorization.users[0].nkey"),
        ('[authorization]\nusers = [{ user = "a", password = "b", colour = 1 }]\n', "authorization.users[0].colour"),
        ('[authorization]\ntoken = "t"\nusers = [{ user = "a", password = "b" }]\n', "authorization.token"),
        ('[authorization]\nno_auth_user = "x"\nusers = [{ user = "a", password = "b" }]\n',
         "authorization.no_auth_user"),
        ('[authorization]\nusers = [{ user = "a", password = "b", permissions = { publish = ["a..b"] } }]\n',
         "authorization.users[0].permissions.publish"),
        ('[tls]\ncert_file = "/nonexistent.pem"\n', "tls.key_file"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text(toml)
    r = subprocess.run([sys.executable, "-m", "edge", "check-config", "-c", str(path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert str(path) in r.stderr and message in r.stderr, r.stderr


def test_bcrypt_check_runs_off_the_event_loop(tmp_path: Path) -> None:
    # Cost 13: ~0.5 s per check here, far longer than a PING round trip on an idle broker.
    slow = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=13)).decode()
    toml, _ = write_configs(tmp_path, {"users": [{"user": "slow", "password": slow},
                                                 {"user": "fast", "password": "p"}]})
    sp = start_nats_edge(tmp_path, "-c", str(toml))
    try:
        with RawClient(sp.port) as other, RawClient(sp.port) as a:
            other.send(b'CONNECT {"user":"fast","pass":"p","verbose":false}\r\nPING\r\n')
            assert other.read_until_pong() == b"PONG\r\n"
            # Everything pipelined behind the CONNECT waits for the check, then runs in order.
            a.send(b'CONNECT {"user":"slow","pass":"right","verbose":false}\r\nSUB x 1\r\nPUB x 2\r\nhi\r\nPING\r\n')
            other.send(b"PING\r\n")
            assert other.read_until_pong() == b"PONG\r\n"  # served while the check runs ...
            assert a.drain_available(quiet=0.05) == b""  # ... which has not finished yet
            assert a.read_until_pong(timeout=20) == b"MSG x 1 2\r\nhi\r\nPONG\r\n"
        with RawClient(sp.port) as bad:
            bad.send(b'CONNECT {"user":"slow","pass":"wrong","verbose":false}\r\nPING\r\n')
            assert bad.read_until_closed(timeout=20) == b"-ERR 'Authorization Violation'\r\n"
    finally:
        assert sp.stop() == 0, sp.log()
