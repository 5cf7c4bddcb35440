"""The leaf uplink authenticating with a ``.creds`` file to a real nats-server in operator (JWT) mode.

The operator, account and user keys and JWTs are made in the test (tests/support/natsjwt.py); the hub
trusts the operator JWT and has two accounts preloaded in a MEMORY resolver. The gateway's remote uses
``credentials = "<file>.creds"`` (CONNECT ``jwt`` + ``sig`` over the hub's nonce, docs 3.10).
nats-server 2.15.1 does not check ``jti`` (a missing, empty or arbitrary one is accepted: checked by hand),
so natsjwt computes it as the jwt library does only for realism.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import nkeys
import pytest

from tests.integration.test_leaf import get, hub_has_interest, leafz, probe, queue_sub, start_edge, wait_interest
from tests.support.natsclient import flush
from tests.support.natsjwt import (
    KeyPair,
    account_jwt,
    creds_text,
    decode_claims,
    encode_jwt,
    new_keypair,
    operator_jwt,
    user_jwt,
    write_creds,
)
from tests.support.processes import ServerProcess, free_port, start_nats_server, wait_for

pytestmark = pytest.mark.timeout(120)


@dataclass
class OperatorHub:
    hub: ServerProcess
    leaf_port: int
    account: KeyPair
    leaf_creds: Path  # the gateway's user
    client_creds: Path  # a hub-side client's user, same account
    leaf_user: KeyPair
    workdir: Path
    other_creds: Path  # a user of a second account, also known to the hub


@pytest.fixture
def op_hub(tmp_path: Path) -> Iterator[OperatorHub]:
    op = new_keypair(nkeys.PREFIX_BYTE_OPERATOR)
    acc = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    op_file = tmp_path / "operator.jwt"
    op_file.write_text(operator_jwt(op, "TESTOP"))
    acc_jwt = account_jwt(op, acc, "TESTACC")
    assert decode_claims(acc_jwt)["iss"] == op.public
    leaf_creds, leaf_user, _ = write_creds(tmp_path / "leaf.creds", acc, "leafuser")
    client_creds, _, _ = write_creds(tmp_path / "client.creds", acc, "hubclient")
    other = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    other_creds, _, _ = write_creds(tmp_path / "other.creds", other, "otheruser")
    other_jwt = account_jwt(op, other, "OTHER")
    leaf_port = free_port()
    conf = (
        f'server_name: jwthub\nhttp: "127.0.0.1:{free_port()}"\n'
        f'operator: "{op_file}"\nresolver: MEMORY\n'
        f'resolver_preload: {{\n  {acc.public}: "{acc_jwt}"\n  {other.public}: "{other_jwt}"\n}}\n'
        f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n}}\n'
    )
    (tmp_path / "hub").mkdir()
    hub = start_nats_server(tmp_path / "hub", config=conf)
    try:
        yield OperatorHub(hub, leaf_port, acc, leaf_creds, client_creds, leaf_user, tmp_path, other_creds)
    finally:
        hub.stop()


@pytest.fixture
def edges() -> Iterator[list[ServerProcess]]:
    """Gateways started by a test; each must exit cleanly (code 0) on SIGTERM."""
    started: list[ServerProcess] = []
    yield started
    codes = [(e, e.stop()) for e in started]
    for e, code in codes:
        assert code == 0, e.log()


async def test_creds_leaf_binds_to_the_account_and_messages_cross_both_ways(
    op_hub: OperatorHub, edges: list[ServerProcess]
) -> None:
    hub = op_hub.hub
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{op_hub.leaf_creds}"')
    edges.append(edge)
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the JWT-authenticated leaf on the hub")
    (leaf,) = leafz(hub)["leafs"]
    assert leaf["account"] == op_hub.account.public
    assert "Authorization Violation" not in edge.log()
    assert op_hub.leaf_user.seed.decode() not in edge.log()  # the seed is never logged

    hc = await nats.connect(hub.url, user_credentials=str(op_hub.client_creds), max_reconnect_attempts=0)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        # gateway -> hub
        _, qh = await queue_sub(hc, "jwt.up.>")
        await probe(ec, "jwt.up.probe", qh)
        await ec.publish("jwt.up.a", b"1")
        await ec.publish("jwt.up.b.c", b"2", headers={"K": "v"})
        await ec.publish("jwt.other", b"not subscribed on the hub")
        await ec.publish("jwt.up.end", b"3")
        await flush(ec)
        got = [await get(qh) for _ in range(3)]
        assert [(m.subject, m.data) for m in got] == [("jwt.up.a", b"1"), ("jwt.up.b.c", b"2"), ("jwt.up.end", b"3")]
        assert got[1].headers == {"K": "v"}
        # the link is bound to its account: a subscriber of another account on the same hub sees none of it
        oc = await nats.connect(hub.url, user_credentials=str(op_hub.other_creds), max_reconnect_attempts=0)
        try:
            _, qo = await queue_sub(oc, "jwt.up.>")
            await ec.publish("jwt.up.isolated", b"A only")
            await flush(ec)
            assert (await get(qh)).subject == "jwt.up.isolated"
            await oc.publish("jwt.up.sentinel", b"B")
            assert [(await get(qo)).subject] == ["jwt.up.sentinel"]
            assert qo.empty()
        finally:
            await oc.close()
        # hub -> gateway
        _, qe = await queue_sub(ec, "jwt.down.*")
        await wait_interest(hub, "jwt.down.*")
        await hc.publish("jwt.down.x", b"cmd", reply="jwt.r")
        await hc.publish("jwt.down.y.z", b"no match")
        await hc.publish("jwt.down.end", b"")
        await flush(hc)
        got = [await get(qe), await get(qe)]
        assert [(m.subject, m.data, m.reply) for m in got] == [("jwt.down.x", b"cmd", "jwt.r"),
                                                               ("jwt.down.end", b"", "")]
        assert qe.empty()
        # request-reply across the link, in the account
        async def responder(msg: nats.aio.msg.Msg) -> None:
            await ec.publish(msg.reply, b"gw:" + msg.data)

        await ec.subscribe("jwt.svc", cb=responder)
        await flush(ec)
        await wait_interest(hub, "jwt.svc")
        assert (await hc.request("jwt.svc", b"ping", timeout=5)).data == b"gw:ping"
    finally:
        await hc.close()
        await ec.close()
    assert leafz(hub)["leafnodes"] == 1


@pytest.mark.parametrize(
    ("case", "hub_lines"),
    [
        # the user JWT is signed by an account the hub's resolver does not know
        ("unknown_account", ("[WRN] Account fetch failed: account missing", "- authentication error",
                             "Leafnode connection closed: Authentication Failure")),
        # a valid user JWT, but the seed (so the nonce signature) belongs to another user
        ("seed_mismatch", ("- authentication error", "Leafnode connection closed: Authentication Failure")),
    ],
)
async def test_refused_creds_are_retried_and_gateway_keeps_serving(
    op_hub: OperatorHub, edges: list[ServerProcess], case: str, hub_lines: tuple[str, ...]
) -> None:
    hub = op_hub.hub
    if case == "unknown_account":
        rogue_acc = new_keypair(nkeys.PREFIX_BYTE_ACCOUNT)  # never registered with the hub's resolver
        bad_creds, _, _ = write_creds(op_hub.workdir / "bad.creds", rogue_acc, "rogue")
    else:
        other = new_keypair(nkeys.PREFIX_BYTE_USER)
        bad_creds = op_hub.workdir / "bad.creds"
        bad_creds.write_text(creds_text(user_jwt(op_hub.account, op_hub.leaf_user, "leafuser"), other.seed))
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{bad_creds}"')
    edges.append(edge)
    expected = f"Leafnode hub nats-leaf://127.0.0.1:{op_hub.leaf_port} sent error: Authorization Violation"
    wait_for(lambda: edge.log().count(expected) >= 2, 20, "repeated Authorization Violation from the hub")
    assert edge.proc.poll() is None
    assert "Traceback" not in edge.log(), edge.log()
    # the hub's side of it (nats-server 2.15.1 log lines)
    wait_for(lambda: all(line in hub.log() for line in hub_lines), 10, f"the hub logging {hub_lines}")
    if case == "seed_mismatch":
        assert "Account fetch failed" not in hub.log()  # the account is known: the signature is what fails
    assert leafz(hub)["leafnodes"] == 0
    # the gateway itself carries on serving local clients
    nc = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, q = await queue_sub(nc, "local.jwt")
        await nc.publish("local.jwt", b"alive")
        assert (await get(q)).data == b"alive"
    finally:
        await nc.close()
    # and it keeps retrying: more refusals arrive after the local round trip
    seen = edge.log().count(expected)
    wait_for(lambda: edge.log().count(expected) > seen, 20, "another attempt after the local round trip")
    assert edge.proc.poll() is None
    assert leafz(hub)["leafnodes"] == 0


def test_missing_creds_file_is_reported_and_retried(op_hub: OperatorHub, edges: list[ServerProcess]) -> None:
    """A .creds path that does not exist (yet): the gateway starts, logs why, and connects once it appears."""
    hub = op_hub.hub
    later = op_hub.workdir / "later.creds"
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{later}"')
    edges.append(edge)
    wait_for(lambda: f"cannot read credentials file {later}" in edge.log(), 20, "the missing-file error")
    assert edge.proc.poll() is None
    assert leafz(hub)["leafnodes"] == 0
    later.write_text(op_hub.leaf_creds.read_text())
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the leaf once the creds file exists")
    assert leafz(hub)["leafs"][0]["account"] == op_hub.account.public


@pytest.mark.parametrize("variant", ["crlf", "bare_blocks", "no_final_newline"])
def test_creds_file_format_variants(op_hub: OperatorHub, edges: list[ServerProcess], variant: str) -> None:
    """Hand-edited .creds files (Windows line ends, no banner, cut after the seed block) still authenticate,
    as with nats.go's jwt.ParseDecoratedJWT (same block regex: trailing blanks after a ``---`` marker line are
    rejected there too, so that case is not expected to work)."""
    text = op_hub.leaf_creds.read_text()
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    elif variant == "bare_blocks":
        text = "\n".join(line for line in text.splitlines() if line and not line.startswith(("*", "NKEY"))) + "\n"
    else:
        text = text[: text.index("------END USER NKEY SEED------") + len("------END USER NKEY SEED------")]
    creds = op_hub.workdir / f"{variant}.creds"
    creds.write_text(text, newline="")
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{creds}"')
    edges.append(edge)
    wait_for(lambda: leafz(op_hub.hub).get("leafnodes") == 1, 20, f"the leaf with a {variant} .creds file")
    assert leafz(op_hub.hub)["leafs"][0]["account"] == op_hub.account.public


async def test_user_jwt_permissions_narrow_interest_and_publishes(
    op_hub: OperatorHub, edges: list[ServerProcess]
) -> None:
    """Permissions in the leaf user's JWT come back as import/export in the hub's connect_info INFO: the
    gateway must neither advertise nor send outside them (else the hub closes the link with a violation)."""
    hub = op_hub.hub
    user = new_keypair(nkeys.PREFIX_BYTE_USER)
    nats_claims = {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1,
                   "pub": {"allow": ["perm.up.>", "_INBOX.>"]}, "sub": {"allow": ["perm.down.>", "_INBOX.>"]}}
    token = encode_jwt(op_hub.account, user.public, "limited", nats_claims)
    creds = op_hub.workdir / "limited.creds"
    creds.write_text(creds_text(token, user.seed))
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{creds}"')
    edges.append(edge)
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the limited leaf")
    hc = await nats.connect(hub.url, user_credentials=str(op_hub.client_creds), max_reconnect_attempts=0)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, qd = await queue_sub(ec, "perm.down.a")
        _, _qx = await queue_sub(ec, "perm.other.b")  # outside the import permissions: never advertised
        await wait_interest(hub, "perm.down.a")
        assert not hub_has_interest(hub, "perm.other.b")
        _, qh = await queue_sub(hc, "perm.>")
        await probe(ec, "perm.up.probe", qh)
        await ec.publish("perm.other.x", b"outside export")  # the hub is interested, but we may not send it
        await ec.publish("perm.up.ok", b"inside")
        await flush(ec)
        m = await get(qh)
        assert (m.subject, m.data) == ("perm.up.ok", b"inside")
        await hc.publish("perm.down.a", b"down ok")
        assert (await get(qd)).data == b"down ok"
    finally:
        await hc.close()
        await ec.close()
    assert "Permissions Violation" not in edge.log(), edge.log()
    assert "Permissions Violation" not in hub.log(), hub.log()
    assert leafz(hub)["leafnodes"] == 1
    assert edge.log().count("established") == 1  # the same link throughout


async def test_creds_relogin_after_hub_restart_signs_the_new_nonce(
    op_hub: OperatorHub, edges: list[ServerProcess]
) -> None:
    """Each connection signs that connection's nonce: after a hub restart (new nonce) the leaf is back,
    in the same account, and its interest is restored."""
    hub = op_hub.hub
    edge = start_edge(op_hub.workdir / "edge", f'urls = ["nats-leaf://127.0.0.1:{op_hub.leaf_port}"]\n'
                      f'credentials = "{op_hub.leaf_creds}"')
    edges.append(edge)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, qe = await queue_sub(ec, "jwt.restart")
        await wait_interest(hub, "jwt.restart")
        hub.stop()
        conf = (op_hub.workdir / "hub" / "nats-server.conf").read_text()  # same operator, account, leaf port
        (op_hub.workdir / "hub2").mkdir()
        hub2 = start_nats_server(op_hub.workdir / "hub2", config=conf)
        try:
            await wait_interest(hub2, "jwt.restart", timeout=20)
            assert leafz(hub2)["leafs"][0]["account"] == op_hub.account.public
            hc = await nats.connect(hub2.url, user_credentials=str(op_hub.client_creds), max_reconnect_attempts=0)
            try:
                await hc.publish("jwt.restart", b"again")
                assert (await get(qe)).data == b"again"
            finally:
                await hc.close()
        finally:
            hub2.stop()
    finally:
        await ec.close()
    assert edge.log().count("established") == 2
    assert "Authorization Violation" not in edge.log()
