"""Leaf uplink resilience against real nats-server hubs: restarts, cluster failover, auth, TLS, bad hubs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import nats
import nkeys
import pytest

from tests.integration.test_leaf import (
    get,
    hub_has_interest,
    leafz,
    probe,
    queue_sub,
    start_edge,
    start_hub,
    wait_interest,
)
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_server, wait_for
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(120)


def _stop_all(*procs: ServerProcess | None) -> None:
    for p in procs:
        if p is not None:
            p.stop()


async def test_hub_restart_reconnects_and_restores_interest(tmp_path: Path) -> None:
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub1", leaf_port)
    edge = hub2 = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]')
        ec = await nats.connect(edge.url, max_reconnect_attempts=0)
        _, qe = await queue_sub(ec, "to.gw")
        await wait_interest(hub, "to.gw")
        hub.stop()
        # While the link is down, local traffic carries on untouched.
        _, ql = await queue_sub(ec, "local.only")
        await ec.publish("local.only", b"still here")
        assert (await get(ql)).data == b"still here"
        hub2 = start_hub(tmp_path / "hub2", leaf_port)
        hc = await nats.connect(hub2.url, max_reconnect_attempts=0)
        _, qh = await queue_sub(hc, "to.hub")  # created on the hub while/just after the link was down
        await probe(ec, "to.hub", qh, timeout=20)
        await ec.publish("to.hub", b"after restart")
        assert (await get(qh)).data == b"after restart"
        await wait_interest(hub2, "to.gw", "local.only")
        await hc.publish("to.gw", b"down again")
        assert (await get(qe)).data == b"down again"
        await hc.close()
        await ec.close()
        log = edge.log()
        assert "closed" in log and log.count("established") >= 2, log
        assert edge.proc.poll() is None
    finally:
        _stop_all(edge, hub, hub2)


async def test_cluster_failover_to_discovered_node(tmp_path: Path) -> None:
    lp_a, lp_b, cp_a, cp_b = free_port(), free_port(), free_port(), free_port()
    routes = f"routes: [nats-route://127.0.0.1:{cp_a}, nats-route://127.0.0.1:{cp_b}]"
    a = start_hub(tmp_path / "a", lp_a, name="hubA",
                  extra=f'cluster {{ name: C1\n listen: "127.0.0.1:{cp_a}"\n {routes} }}')
    b = edge = None
    try:
        b = start_hub(tmp_path / "b", lp_b, name="hubB",
                      extra=f'cluster {{ name: C1\n listen: "127.0.0.1:{cp_b}"\n {routes} }}')
        bc = await nats.connect(b.url, max_reconnect_attempts=0)
        # the cluster is formed when A's leaf INFO advertises B: wait for B to see A's client interest
        ac = await nats.connect(a.url, max_reconnect_attempts=0)
        _, qa = await queue_sub(ac, "route.check")
        await probe(bc, "route.check", qa)
        await ac.close()
        # Only A is configured; B is learnt from leafnode_urls. no_randomize keeps A first.
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{lp_a}"]\nno_randomize = true')
        wait_for(lambda: leafz(a).get("leafnodes") == 1, 20, "leaf on A")
        ec = await nats.connect(edge.url, max_reconnect_attempts=0)
        _, qb = await queue_sub(bc, "fo.up")
        await probe(ec, "fo.up", qb)
        a.kill()
        wait_for(lambda: leafz(b).get("leafnodes") == 1, 30, "leaf moved to B")
        await probe(ec, "fo.up", qb, timeout=20)
        await ec.publish("fo.up", b"resumed")
        assert (await get(qb)).data == b"resumed"
        assert f"127.0.0.1:{lp_b}" in edge.log()
        await ec.close()
        await bc.close()
    finally:
        _stop_all(edge, b, a)


async def test_user_password_auth_and_wrong_password_retries(tmp_path: Path) -> None:
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port,
                    leaf_extra='  authorization { user: leafu, password: "s3cret" }')
    good = bad = None
    try:
        good = start_edge(tmp_path / "good", f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]\nuser = "leafu"\n'
                          'password = "s3cret"')
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "authenticated leaf")
        bad = start_edge(tmp_path / "bad", f'urls = ["nats-leaf://leafu:wrong@127.0.0.1:{leaf_port}"]')
        wait_for(lambda: bad.log().count("Authorization Violation") >= 2, 20, "repeated auth errors")
        assert bad.proc.poll() is None
        assert "wrong" not in bad.log()  # the password is never logged
        nc = await nats.connect(bad.url, max_reconnect_attempts=0)  # the gateway itself works on
        _, q = await queue_sub(nc, "x")
        await nc.publish("x", b"1")
        assert (await get(q)).data == b"1"
        await nc.close()
        assert leafz(hub).get("leafnodes") == 1
    finally:
        _stop_all(good, bad, hub)


async def test_nkey_auth(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    kp = nkeys.from_seed(seed)
    public = kp.public_key.decode()
    seed_file = tmp_path / "leaf.nk"
    seed_file.write_bytes(seed + b"\n")
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port, extra=f"authorization {{ users = [ {{ nkey: {public} }} ] }}")
    edge = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]\nnkey = "{seed_file}"')
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "nkey leaf")
    finally:
        _stop_all(edge, hub)


async def test_tls_to_hub(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "hub.pem", tmp_path / "hub.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port,
                    leaf_extra=f'  tls {{ cert_file: "{cert_file}"\n key_file: "{key_file}" }}')
    edge = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["tls://127.0.0.1:{leaf_port}"]\n'
                          f'tls = {{ ca_file = "{ca_file}" }}')
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "TLS leaf")
        hc = await nats.connect(hub.url, max_reconnect_attempts=0)
        ec = await nats.connect(edge.url, max_reconnect_attempts=0)
        _, qe = await queue_sub(ec, "sec.down")
        await wait_interest(hub, "sec.down")
        await hc.publish("sec.down", b"over tls")
        assert (await get(qe)).data == b"over tls"
        await hc.close()
        await ec.close()
    finally:
        _stop_all(edge, hub)


@pytest.mark.parametrize(
    "behaviour",
    ["garbage", "close_after_connect", "bad_size", "client_port_info", "silent", "huge_line"],
)
async def test_bad_hub_does_not_crash_gateway(tmp_path: Path, behaviour: str) -> None:
    info = (b'INFO {"server_id":"NFAKE","version":"2.15.1","proto":3,"headers":true,"max_payload":1048576,'
            b'"client_id":7,"nonce":"abcdefghijklmno","auth_required":true,"info_on_connect":true,'
            b'"leafnode_urls":["127.0.0.1:1"]} \r\n')
    dials = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal dials
        dials += 1
        try:
            if behaviour == "garbage":
                writer.write(b"\x00\xffHELLO garbage\r\nMORE\r\n")
            elif behaviour == "client_port_info":
                writer.write(b'INFO {"server_id":"X","client_id":0} \r\n')
            elif behaviour == "silent":
                await asyncio.sleep(5)
            else:
                writer.write(info)
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), 5)
                assert line.startswith(b"CONNECT {") and b'"lang"' not in line
                if behaviour == "bad_size":
                    writer.write(b'INFO {"connect_info":true} \r\nLMSG foo 5\r\ntoolongpayload\r\n')
                elif behaviour == "huge_line":
                    writer.write(b'INFO {"connect_info":true} \r\nLS+ ' + b"a" * 100_000 + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    edge = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{port}"]\nfirst_info_timeout = "200ms"')
        await async_wait_for(lambda: dials >= 3, 20, "three dials of the misbehaving hub", interval=0.05)
        assert edge.proc.poll() is None
        assert "Traceback" not in edge.log(), edge.log()
        nc = await nats.connect(edge.url, max_reconnect_attempts=0)
        _, q = await queue_sub(nc, "ok")
        await nc.publish("ok", b"alive")
        assert (await get(q)).data == b"alive"
        await nc.close()
    finally:
        server.close()
        if edge is not None:
            assert edge.stop(signal.SIGTERM) == 0, edge.log()


async def test_hub_import_permissions_filter_interest(tmp_path: Path) -> None:
    """The connect_info INFO's import permissions narrow the LS+ set, so the hub never sees a violation."""
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port, extra=(
        'authorization { users = [ { user: lu, password: lp, permissions: { publish: "up.>", subscribe: "down.>" } },\n'
        '  { user: hubc, password: hp } ] }'
    ))
    edge = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://lu:lp@127.0.0.1:{leaf_port}"]')
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "leaf with permissions")
        ec = await nats.connect(edge.url, max_reconnect_attempts=0)
        hc = await nats.connect(hub.url, max_reconnect_attempts=0, user="hubc", password="hp")
        _, qd = await queue_sub(ec, "down.a")
        _, _q = await queue_sub(ec, "notallowed.b")  # filtered by the hub's import permissions: no LS+
        await wait_interest(hub, "down.a")
        assert not hub_has_interest(hub, "notallowed.b")
        await hc.publish("down.a", b"ok")
        assert (await get(qd)).data == b"ok"
        assert leafz(hub).get("leafnodes") == 1  # still the same link: no permission violation happened
        await hc.close()
        await ec.close()
    finally:
        _stop_all(edge, hub)


def test_start_nats_server_helper_available() -> None:
    assert callable(start_nats_server)


async def test_handshake_bytes_and_loop_detection_against_a_scripted_hub(tmp_path: Path) -> None:
    """A scripted hub checks our CONNECT and LS+ set, then echoes our $LDS back: we must answer with the
    exact loop error (docs 3.7) and wait error_delay (300 ms here) before dialling again."""
    info = (b'INFO {"server_id":"NFAKE","server_name":"fake","version":"2.15.1","proto":3,"headers":true,'
            b'"max_payload":1048576,"client_id":7,"nonce":"abcdefghijklmno","auth_required":true,'
            b'"info_on_connect":true,"leafnode_urls":["127.0.0.1:1"]} \r\n')
    seen: asyncio.Queue[tuple[float, list[bytes]]] = asyncio.Queue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        lines: list[bytes] = []
        try:
            writer.write(info)
            lines.append(await asyncio.wait_for(reader.readline(), 5))
            writer.write(b'INFO {"connect_info":true,"remote_account":"$G"} \r\nLS+ hub.sub\r\n')
            async with asyncio.timeout(20):  # the edge hangs up after the -ERR; bound the read anyway
                while line := await reader.readline():
                    lines.append(line)
                    if line.startswith(b"LS+ $LDS."):
                        writer.write(line)  # echo our own loop-detection subject
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            seen.put_nowait((t0, lines))
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    edge = None
    try:
        edge = start_edge(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{port}"]')
        t1, lines = await asyncio.wait_for(seen.get(), 20)
        connect = json.loads(lines[0][len(b"CONNECT "):])
        assert "lang" not in connect and connect["remote_account"] == "$G" and connect["headers"] is True
        assert {"version", "server_id", "name"} <= set(connect)
        assert any(x.startswith(b"LS+ $LDS.") for x in lines)
        assert lines[-1] == (b"-ERR 'Loop detected for leafnode account=\"$G\". "
                             b"Delaying attempt to reconnect for 30s'\r\n")
        t2, _ = await asyncio.wait_for(seen.get(), 20)
        assert t2 - t1 >= 0.25  # error_delay, not the 100 ms reconnect
        assert edge.proc.poll() is None
    finally:
        server.close()
        if edge is not None:
            assert edge.stop() == 0, edge.log()


async def test_deny_imports_enforced_locally_against_a_hub_that_ignores_deny_pub(tmp_path: Path) -> None:
    """A scripted hub (nats-server itself honours deny_pub, so only a fake can misbehave) sends messages
    on a denied-import subject to our wildcard interest: they reach no local subscriber, others do."""
    info = (b'INFO {"server_id":"NFAKE","server_name":"fake","version":"2.15.1","proto":3,"headers":true,'
            b'"max_payload":1048576,"client_id":7,"leafnode_urls":["127.0.0.1:1"]} \r\n')
    connects: asyncio.Queue[bytes] = asyncio.Queue()
    interest = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            writer.write(info)
            connects.put_nowait(await asyncio.wait_for(reader.readline(), 5))
            async with asyncio.timeout(60):  # read until the test closes us; bounded all the same
                while line := await reader.readline():
                    if line.startswith(b"LS+ down.>"):
                        interest.set()
                    elif line == b"PING\r\n":
                        writer.write(b"PONG\r\n")
        except (ConnectionError, TimeoutError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    edge = None
    try:
        remote = f'urls = ["nats-leaf://127.0.0.1:{port}"]\ndeny_imports = ["down.private.>"]'
        edge = start_edge(tmp_path / "edge", remote)
        connect = json.loads((await asyncio.wait_for(connects.get(), 20))[len(b"CONNECT "):])
        assert connect["deny_pub"] == ["down.private.>"]
        nc = await nats.connect(edge.url)
        sub = await nc.subscribe("down.>")
        await flush(nc)
        await asyncio.wait_for(interest.wait(), 20)
        writers[-1].write(b"LMSG down.private.x 1\r\na\r\nLMSG down.ok 1\r\nb\r\n")
        msg = await sub.next_msg(timeout=10)
        assert (msg.subject, msg.data) == ("down.ok", b"b")  # down.private.x was sent first and dropped
        await nc.close()
    finally:
        for w in writers:
            w.close()
        server.close()
        if edge is not None:
            assert edge.stop() == 0, edge.log()
