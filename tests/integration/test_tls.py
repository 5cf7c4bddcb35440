"""TLS on the client port with nats-py: certificates made by the test (trustme), TLS, mTLS, TLS-first."""

from __future__ import annotations

import asyncio
import gc
import ssl
from pathlib import Path

import nats
import pytest
import trustme
from nats.errors import Error as NatsError

from tests.support.processes import ServerProcess, start_nats_edge
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("device-1@example.com", common_name="device-1")
    paths = {}
    for name, blob in (("ca", ca.cert_pem), ("server", server_cert.cert_chain_pems[0]),
                       ("server-key", server_cert.private_key_pem), ("client", client_cert.cert_chain_pems[0]),
                       ("client-key", client_cert.private_key_pem)):
        p = d / f"{name}.pem"
        blob.write_to_path(str(p))
        paths[name] = str(p)
    return {"ca": ca, "client": client_cert, "paths": paths}


def client_ctx(pki: dict[str, object], *, with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    pki["ca"].configure_trust(ctx)  # type: ignore[attr-defined]
    if with_cert:
        pki["client"].configure_cert(ctx)  # type: ignore[attr-defined]
    return ctx


def start_tls_edge(tmp_path: Path, pki: dict[str, object], extra: str = "", authz: str = "") -> ServerProcess:
    paths = pki["paths"]
    toml = tmp_path / "edge.toml"
    toml.write_text(f'[tls]\ncert_file = "{paths["server"]}"\nkey_file = "{paths["server-key"]}"\n'  # type: ignore[index]
                    f'ca_file = "{paths["ca"]}"\n{extra}\n{authz}')  # type: ignore[index]
    return start_nats_edge(tmp_path, "-c", str(toml))


async def roundtrip(url: str, **kw: object) -> None:
    async with asyncio.timeout(15):  # a refused handshake must fail the call, never hang it
        nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=3, **kw)
        sub = await nc.subscribe("t")
        await nc.publish("t", b"secret")
        assert (await sub.next_msg(timeout=3)).data == b"secret"
        await nc.close()


async def test_tls_with_flags(tmp_path: Path, pki: dict[str, object]) -> None:
    paths = pki["paths"]
    sp = start_nats_edge(tmp_path, "--tls", "--tlscert", paths["server"], "--tlskey", paths["server-key"])  # type: ignore[index]
    try:
        with RawClient(sp.port) as c:
            assert c.info["tls_required"] is True and "tls_verify" not in c.info
        await roundtrip(sp.url, tls=client_ctx(pki, with_cert=False))
    finally:
        sp.stop()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_mtls_requires_client_certificate(tmp_path: Path, pki: dict[str, object]) -> None:
    sp = start_tls_edge(tmp_path, pki, "verify = true")
    try:
        with RawClient(sp.port) as c:
            assert c.info["tls_verify"] is True
        await roundtrip(sp.url, tls=client_ctx(pki, with_cert=True))
        with pytest.raises((NatsError, ssl.SSLError, OSError)):
            await roundtrip(sp.url, tls=client_ctx(pki, with_cert=False))
        gc.collect()
        assert "TLS handshake error" in sp.log()
    finally:
        sp.stop()


def test_plaintext_client_on_tls_port_is_cut(tmp_path: Path, pki: dict[str, object]) -> None:
    sp = start_tls_edge(tmp_path, pki)
    try:
        with RawClient(sp.port) as c:
            c.send(b"CONNECT {}\r\nPING\r\n")
            got = c.read_until_closed(timeout=5)
            assert b"PONG" not in got
        with RawClient(sp.port) as c:  # says nothing: cut by the TLS handshake timeout
            assert b"PONG" not in c.read_until_closed(timeout=5)
    finally:
        sp.stop()


async def test_tls_handshake_first(tmp_path: Path, pki: dict[str, object]) -> None:
    sp = start_tls_edge(tmp_path, pki, "handshake_first = true")
    try:
        await roundtrip(sp.url, tls=client_ctx(pki, with_cert=False), tls_handshake_first=True)
    finally:
        sp.stop()


async def test_certificate_maps_to_user_with_permissions(tmp_path: Path, pki: dict[str, object]) -> None:
    authz = ('[authorization]\nusers = [{ user = "device-1@example.com", '
             'permissions = { publish = ["t"], subscribe = ["t"] } }]\n')
    sp = start_tls_edge(tmp_path, pki, "map_users = true", authz)
    try:
        await roundtrip(sp.url, tls=client_ctx(pki, with_cert=True))
        # The certificate's user may publish only to "t": a publish elsewhere gets the exact -ERR and
        # the connection stays open (nats-server's pubPermissionViolation).
        errors: asyncio.Queue[Exception] = asyncio.Queue()

        async def on_error(exc: Exception) -> None:
            errors.put_nowait(exc)

        nc = await nats.connect(sp.url, tls=client_ctx(pki, with_cert=True), allow_reconnect=False,
                                max_reconnect_attempts=0, error_cb=on_error)
        try:
            sub = await nc.subscribe("t")
            await nc.publish("other", b"x")
            err = await asyncio.wait_for(errors.get(), 5)
            assert str(err) == "nats: permissions violation for publish to \"other\""
            await nc.publish("t", b"still open")
            assert (await sub.next_msg(timeout=3)).data == b"still open"
            assert errors.empty()
        finally:
            await nc.close()
    finally:
        sp.stop()
