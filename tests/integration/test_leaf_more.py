"""More leaf uplink behaviour against real nats-server hubs: deny_imports / deny_exports on the remote,
TLS with ``handshake_first``, and stale-hub detection with the remote's ``ping_interval``/``ping_max``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from tests.integration.test_leaf import (
    FAST,
    get,
    hub_has_interest,
    leafz,
    probe,
    queue_sub,
    start_hub,
    wait_interest,
)
from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, free_port, start_nats_edge, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def procs() -> Iterator[list[ServerProcess]]:
    """Processes started by a test, stopped in reverse order (a stopped hub is continued first); every
    gateway must exit with code 0 on SIGTERM."""
    started: list[ServerProcess] = []
    yield started
    codes = []
    for p in reversed(started):
        if p.proc.poll() is None:
            os.kill(p.proc.pid, signal.SIGCONT)  # harmless when not stopped
        codes.append((p, p.stop()))
    for p, code in codes:
        if p.name == "nats-edge":
            assert code == 0, p.log()


def start_edge_m(workdir: Path, remote: str, extra: str = "") -> ServerProcess:
    """Like test_leaf.start_edge, with the gateway's own monitoring port (``-m -1``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "edge.toml"
    conf.write_text(FAST + extra + "\n[[leafnodes.remotes]]\n" + remote + "\n")
    return start_nats_edge(workdir, "-c", str(conf), "-m", "-1")


def edge_leafz(edge: ServerProcess) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(edge.url_of("monitoring") + "/leafz", timeout=5) as resp:  # loopback
        return json.loads(resp.read())


async def collect_until(q: asyncio.Queue[Msg], last: str, timeout: float = 10.0) -> list[tuple[str, bytes]]:
    """Everything ``q`` receives up to and including the message on subject ``last``."""
    out: list[tuple[str, bytes]] = []
    async with asyncio.timeout(timeout):
        while not out or out[-1][0] != last:
            m = await q.get()
            out.append((m.subject, m.data))
    return out


# -- (a) deny_exports / deny_imports ----------------------------------------------------------------


async def test_deny_exports_and_deny_imports_filter_only_their_direction(
    tmp_path: Path, procs: list[ServerProcess]
) -> None:
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port)
    procs.append(hub)
    edge = start_edge_m(tmp_path / "edge", f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]\n'
                        'deny_exports = ["up.secret.>", "both.x"]\n'
                        'deny_imports = ["down.private.>", "both.x"]')
    procs.append(edge)
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the leaf link")
    hc = await nats.connect(hub.url, max_reconnect_attempts=0)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        # gateway -> hub: deny_exports subjects never go up, even though the hub is interested
        _, qh = await queue_sub(hc, "up.>")
        _, qhb = await queue_sub(hc, "both.>")
        await probe(ec, "up.probe", qh)
        for subject in ("up.secret.1", "up.ok.1", "up.secret.a.b", "up.secretive", "up.ok.2"):
            await ec.publish(subject, subject.encode())
        await ec.publish("both.x", b"denied both ways")
        await ec.publish("both.y", b"allowed")
        await ec.publish("up.end", b"")
        await flush(ec)
        assert await collect_until(qh, "up.end") == [
            ("up.ok.1", b"up.ok.1"), ("up.secretive", b"up.secretive"), ("up.ok.2", b"up.ok.2"), ("up.end", b"")]
        assert [(m.subject, m.data) for m in [await get(qhb)]] == [("both.y", b"allowed")]
        assert qhb.empty()

        # hub -> gateway: deny_imports subjects are never advertised, and not delivered through a wildcard
        _, qe = await queue_sub(ec, "down.>")
        _, qlit = await queue_sub(ec, "down.private.lit")
        _, qeb = await queue_sub(ec, "both.x")
        _, qe_ok = await queue_sub(ec, "both.z")
        await wait_interest(hub, "down.>", "both.z")
        assert not hub_has_interest(hub, "down.private.lit")
        assert not hub_has_interest(hub, "both.x")
        for subject in ("down.private.1", "down.ok.1", "down.private.lit", "down.privateish", "down.ok.2"):
            await hc.publish(subject, subject.encode())
        await hc.publish("both.x", b"denied")
        await hc.publish("both.z", b"allowed")
        await hc.publish("down.end", b"")
        await flush(hc)
        assert await collect_until(qe, "down.end") == [
            ("down.ok.1", b"down.ok.1"), ("down.privateish", b"down.privateish"), ("down.ok.2", b"down.ok.2"),
            ("down.end", b"")]
        assert (await get(qe_ok)).data == b"allowed"
        assert qlit.empty() and qeb.empty()

        # each deny list only filters its own direction: exports denied going up still come down, and
        # imports denied coming down still go up
        _, qh_priv = await queue_sub(hc, "down.private.>")
        _, qe_sec = await queue_sub(ec, "up.secret.>")
        await wait_interest(hub, "up.secret.>")
        await hc.publish("up.secret.from-hub", b"down is fine")
        assert ((m := await get(qe_sec)).subject, m.data) == ("up.secret.from-hub", b"down is fine")
        await probe(ec, "down.private.from-gw", qh_priv)
        await ec.publish("down.private.from-gw", b"up is fine")
        assert (await get(qh_priv)).data == b"up is fine"
    finally:
        await hc.close()
        await ec.close()
    assert leafz(hub)["leafnodes"] == 1  # no permission violation closed the link


# -- (b) TLS with handshake_first ----------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "hub.pem", tmp_path / "hub.key"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    return ca_file, cert_file, key_file


@pytest.mark.parametrize("mutual", [False, True], ids=["server_cert", "mutual_tls"])
async def test_tls_handshake_first_to_hub(
    tmp_path: Path, procs: list[ServerProcess], certs: tuple[Path, Path, Path], mutual: bool
) -> None:
    ca_file, cert_file, key_file = certs
    hub_verify = ""
    edge_cert = ""
    if mutual:
        trustme = pytest.importorskip("trustme")
        # a client certificate from another CA that the hub trusts too (ca bundle = both CAs)
        client_ca = trustme.CA()
        client = client_ca.issue_cert("gateway-1")
        bundle = tmp_path / "bundle.pem"
        bundle.write_bytes(ca_file.read_bytes() + client_ca.cert_pem.bytes())
        hub_verify = f'\n ca_file: "{bundle}"\n verify: true'
        client_cert, client_key = tmp_path / "gw.pem", tmp_path / "gw.key"
        client.cert_chain_pems[0].write_to_path(str(client_cert))
        client.private_key_pem.write_to_path(str(client_key))
        edge_cert = f', cert_file = "{client_cert}", key_file = "{client_key}"'
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port, leaf_extra=(
        f'  tls {{ cert_file: "{cert_file}"\n key_file: "{key_file}"\n handshake_first: true{hub_verify} }}'))
    procs.append(hub)
    edge = start_edge_m(tmp_path / "edge", f'urls = ["tls://127.0.0.1:{leaf_port}"]\n'
                        f'tls = {{ ca_file = "{ca_file}", handshake_first = true{edge_cert} }}')
    procs.append(edge)
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the TLS-first leaf")
    hc = await nats.connect(hub.url, max_reconnect_attempts=0)
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, qe = await queue_sub(ec, "tf.down")
        await wait_interest(hub, "tf.down")
        await hc.publish("tf.down", b"tls first, down")
        assert ((m := await get(qe)).subject, m.data) == ("tf.down", b"tls first, down")
        _, qh = await queue_sub(hc, "tf.up")
        await probe(ec, "tf.up", qh)
        await ec.publish("tf.up", b"tls first, up")
        assert (await get(qh)).data == b"tls first, up"
    finally:
        await hc.close()
        await ec.close()
    assert "TLS" not in "".join(line for line in hub.log().splitlines() if "[ERR]" in line), hub.log()
    assert edge_leafz(edge)["leafnodes"] == 1


async def test_tls_without_handshake_first_against_a_tls_first_hub_keeps_retrying(
    tmp_path: Path, procs: list[ServerProcess], certs: tuple[Path, Path, Path]
) -> None:
    """The hub sends nothing until the TLS handshake: a gateway waiting for INFO times out and retries."""
    ca_file, cert_file, key_file = certs
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port, leaf_extra=(
        f'  tls {{ cert_file: "{cert_file}"\n key_file: "{key_file}"\n handshake_first: true }}'))
    procs.append(hub)
    edge = start_edge_m(tmp_path / "edge", f'urls = ["tls://127.0.0.1:{leaf_port}"]\n'
                        f'tls = {{ ca_file = "{ca_file}" }}\nfirst_info_timeout = "300ms"')
    procs.append(edge)
    expected = (f"Leafnode connection to tls://127.0.0.1:{leaf_port} failed: "
                "no INFO from the hub within first_info_timeout")
    wait_for(lambda: edge.log().count(expected) >= 2, 20, "repeated first-INFO timeouts")
    assert edge.proc.poll() is None
    assert leafz(hub)["leafnodes"] == 0
    assert edge_leafz(edge)["leafnodes"] == 0


# -- (c) stale hub detection -----------------------------------------------------------------------


PING_INTERVAL = 1.0
PING_MAX = 2


@pytest.mark.parametrize("where", ["remote", "section"])
async def test_stopped_hub_is_detected_stale_and_link_recovers_after_sigcont(
    tmp_path: Path, procs: list[ServerProcess], where: str
) -> None:
    """ping_interval/ping_max given on the remote, or on the [leafnodes] section as every remote's default."""
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port)
    procs.append(hub)
    timers = f'ping_interval = "{int(PING_INTERVAL * 1000)}ms"\nping_max = {PING_MAX}'
    remote = f'urls = ["nats-leaf://127.0.0.1:{leaf_port}"]'
    if where == "remote":
        edge = start_edge_m(tmp_path / "edge", remote + "\n" + timers)
    else:
        edge = start_edge_m(tmp_path / "edge", remote, extra=timers)  # FAST ends inside [leafnodes]
    procs.append(edge)
    wait_for(lambda: leafz(hub).get("leafnodes") == 1, 20, "the leaf link")
    wait_for(lambda: edge_leafz(edge).get("leafnodes") == 1, 10, "the link on the gateway's /leafz")
    ec = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, qe = await queue_sub(ec, "st.down")
        await wait_interest(hub, "st.down")
        # let at least one keepalive round trip happen, so a PONG-less link is what we detect
        wait_for(lambda: edge_leafz(edge)["leafs"][0]["rtt"] not in ("0s", ""), 10, "a measured RTT")
        stale = (f"Leafnode connection to nats-leaf://127.0.0.1:{leaf_port} closed: "
                 "stale connection (no PONG from hub)")
        assert stale not in edge.log()
        t0 = time.monotonic()
        os.kill(hub.proc.pid, signal.SIGSTOP)
        try:
            wait_for(lambda: stale in edge.log(), PING_INTERVAL * (PING_MAX + 1) + 5, "the stale-link log line")
            detected = time.monotonic() - t0
            # PING_MAX pings go unanswered, the next tick closes: between max-1 and max+1 intervals (+ slack)
            assert (PING_MAX - 1) * PING_INTERVAL <= detected <= (PING_MAX + 1) * PING_INTERVAL + 2.0, detected
            wait_for(lambda: edge_leafz(edge)["leafnodes"] == 0, 5, "the gateway's /leafz dropping the link")
            # local traffic carries on while the hub is frozen
            _, ql = await queue_sub(ec, "st.local")
            await ec.publish("st.local", b"local")
            assert (await get(ql)).data == b"local"
            # the frozen hub's kernel still accepts TCP, but no INFO comes: the gateway times out and retries
            frozen = (f"Leafnode connection to nats-leaf://127.0.0.1:{leaf_port} failed: "
                      "no INFO from the hub within first_info_timeout")
            wait_for(lambda: edge.log().count(frozen) >= 2, 15, "retries against the frozen hub")
            assert edge.proc.poll() is None
        finally:
            os.kill(hub.proc.pid, signal.SIGCONT)
        wait_for(lambda: edge_leafz(edge).get("leafnodes") == 1, 30, "the gateway re-establishing the link")
        wait_for(lambda: leafz(hub).get("leafnodes") == 1, 30, "exactly one leaf on the hub again")
        assert edge.log().count("established") >= 2
        # the gateway said why it closed the first link (the hub reads it once continued)
        wait_for(lambda: "Leafnode Error 'Stale Connection'" in hub.log(), 10, "the hub logging our -ERR")
        hc = await nats.connect(hub.url, max_reconnect_attempts=0)
        try:
            await wait_interest(hub, "st.down", "st.local")
            await hc.publish("st.down", b"after sigcont")
            assert (await get(qe)).data == b"after sigcont"
        finally:
            await hc.close()
    finally:
        await ec.close()
    assert edge.proc.poll() is None


@pytest.mark.parametrize(
    ("case", "edge_text", "hub_text"),
    [
        ("untrusted_hub_cert", "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
         "TLS leafnode handshake error: EOF"),
        ("missing_client_cert", "connection lost: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]",
         "TLS leafnode handshake error: tls: client didn't provide a certificate"),
    ],
)
async def test_tls_handshake_first_refusals_are_retried(
    tmp_path: Path, procs: list[ServerProcess], certs: tuple[Path, Path, Path], case: str, edge_text: str,
    hub_text: str,
) -> None:
    """A hub certificate we do not trust, or a hub that wants a client certificate we do not have: no
    link, the reason is logged on every attempt, and the gateway keeps serving and retrying."""
    trustme = pytest.importorskip("trustme")
    ca_file, cert_file, key_file = certs
    hub_verify = f'\n ca_file: "{ca_file}"\n verify: true' if case == "missing_client_cert" else ""
    edge_ca = ca_file
    if case == "untrusted_hub_cert":
        edge_ca = tmp_path / "other-ca.pem"
        trustme.CA().cert_pem.write_to_path(str(edge_ca))
    leaf_port = free_port()
    hub = start_hub(tmp_path / "hub", leaf_port, leaf_extra=(
        f'  tls {{ cert_file: "{cert_file}"\n key_file: "{key_file}"\n handshake_first: true{hub_verify} }}'))
    procs.append(hub)
    edge = start_edge_m(tmp_path / "edge", f'urls = ["tls://127.0.0.1:{leaf_port}"]\n'
                        f'tls = {{ ca_file = "{edge_ca}", handshake_first = true }}')
    procs.append(edge)
    prefix = f"Leafnode connection to tls://127.0.0.1:{leaf_port} failed: "
    wait_for(lambda: edge.log().count(prefix + edge_text) >= 3, 20, "repeated TLS failures")
    wait_for(lambda: hub.log().count(hub_text) >= 3, 10, "the hub logging the failed handshakes")
    assert edge.proc.poll() is None
    assert "Traceback" not in edge.log(), edge.log()
    assert leafz(hub)["leafnodes"] == 0
    nc = await nats.connect(edge.url, max_reconnect_attempts=0)
    try:
        _, q = await queue_sub(nc, "tls.local")
        await nc.publish("tls.local", b"alive")
        assert (await get(q)).data == b"alive"
    finally:
        await nc.close()
