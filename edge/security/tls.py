"""TLS on the client port, as nats-server does it (server/server.go createClient, client.go doTLSServerHandshake).

Default mode: the server sends INFO in plain text with ``tls_required: true``, then the client starts
the TLS handshake; everything after INFO is inside TLS. :class:`TLSClientConnection` does that with
``loop.start_tls`` and holds its output while the handshake runs. With ``handshake_first`` the TLS
handshake comes before INFO (nats-server ``tls { handshake_first: true }``), which asyncio's
``create_server(ssl=...)`` does for the plain :class:`~edge.core.client.ClientConnection`.

A handshake that fails or takes longer than ``tls.timeout`` (nats-server TLS_TIMEOUT, 2 s) closes
the connection, logged with the remote address and counted in ``Server.tls_handshake_failures``.
Minimum protocol version TLS 1.2. ``verify`` requires and checks a client certificate against
``ca_file``; ``map_users`` also takes the user from the certificate (nats-server verify_and_map:
email SANs, DNS SANs, the RFC 4514 subject DN, then the CN).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge.config.security import TLSSettings
from edge.core.client import ClientConnection
from edge.core.server import ListenerTLS
from edge.errors import ConfigError

if TYPE_CHECKING:
    from edge.core.server import Server

log = logging.getLogger("edge.tls")

TLS_HANDSHAKE_ERROR = "TLS Handshake Failure"  # nats-server ClosedState TLSHandshakeError


def build_server_context(tls: TLSSettings, source: str = "tls") -> ssl.SSLContext:
    """An SSLContext for the client port; file problems become ConfigError naming the key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(source, "tls.cert_file", f"cannot load {tls.cert_file} / {tls.key_file}: {exc}") from None
    if tls.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=tls.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(source, "tls.ca_file", f"cannot load {tls.ca_file}: {exc}") from None
    if tls.verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def listener_options(server: Server, tls: TLSSettings) -> tuple[Callable[[], asyncio.Protocol], dict[str, Any]]:
    """The protocol factory and extra ``create_server`` arguments for a TLS client port."""
    source = server.settings.sources[-1] if server.settings.sources else "tls"
    ctx = build_server_context(tls, source)
    if tls.handshake_first:
        return (lambda: _MappedClientConnection(server, tls)), {"ssl": ctx, "ssl_handshake_timeout": tls.timeout}
    return (lambda: TLSClientConnection(server, tls, ctx)), {}


def client_listener_tls(tls: TLSSettings) -> ListenerTLS:
    """The client port's TLS setup, for :class:`edge.core.server.Server`."""
    return ListenerTLS(options=lambda server: listener_options(server, tls), info=info_fields(tls))


def info_fields(tls: TLSSettings) -> dict[str, Any]:
    """What nats-server adds to INFO when TLS is on."""
    fields: dict[str, Any] = {"tls_required": True}
    if tls.verify:
        fields["tls_verify"] = True
    if tls.handshake_first:
        fields["tls_handshake_first"] = True
    return fields


def certificate_identities(peercert: dict[str, Any] | None) -> list[str]:
    """Names a verified client certificate may map to, in nats-server's order of preference."""
    if not peercert:
        return []
    out: list[str] = []
    sans = peercert.get("subjectAltName", ())
    out += [v for k, v in sans if k == "email"]
    out += [v for k, v in sans if k == "DNS"]
    rdns = [rdn for rdn in peercert.get("subject", ())]
    names = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU", "countryName": "C",
             "localityName": "L", "stateOrProvinceName": "ST", "emailAddress": "emailAddress"}
    parts = [",".join(f"{names.get(k, k)}={v}" for k, v in rdn) for rdn in reversed(rdns)]
    if parts:
        out.append(",".join(parts))
    out += [v for rdn in rdns for k, v in rdn if k == "commonName"]
    return out


class _MappedClientConnection(ClientConnection):
    """A client on a TLS-first port: the handshake is done before connection_made."""

    def __init__(self, server: Server, tls: TLSSettings) -> None:
        super().__init__(server)
        self._tls_settings = tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._tls_settings.map_users:
            self.tls_identities = certificate_identities(transport.get_extra_info("peercert"))
        super().connection_made(transport)


class TLSClientConnection(ClientConnection):
    """A client that upgrades to TLS right after the plain-text INFO (NATS's default TLS mode)."""

    def __init__(self, server: Server, tls: TLSSettings, ctx: ssl.SSLContext) -> None:
        super().__init__(server)
        self._tls_settings = tls
        self._ctx = ctx
        self._handshaking = False
        self._upgrade_task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # registers and queues INFO
        if self.closed:
            return
        self.flush()  # INFO goes out in plain text, now
        self._handshaking = True
        self._upgrade_task = self.loop.create_task(self._upgrade(transport))

    def flush(self) -> None:
        if not self._handshaking:
            super().flush()

    async def _upgrade(self, raw: Any) -> None:
        tls = self._tls_settings
        try:
            new = await self.loop.start_tls(
                raw, self, self._ctx, server_side=True, ssl_handshake_timeout=tls.timeout
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, RuntimeError) as exc:
            self._handshaking = False
            if not self.closed:
                self.server.tls_handshake_failures = getattr(self.server, "tls_handshake_failures", 0) + 1
                log.info("%s - TLS handshake error: %s", self.tag, exc or type(exc).__name__)
                self._cleanup(TLS_HANDSHAKE_ERROR)
            raw.abort()
            return
        self._handshaking = False
        if self.closed or new is None:
            if new is not None:
                new.abort()
            return
        self.transport = new
        if tls.map_users:
            self.tls_identities = certificate_identities(new.get_extra_info("peercert"))
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshaking and self._upgrade_task is not None:
            self._upgrade_task.cancel()
        super().connection_lost(exc)

