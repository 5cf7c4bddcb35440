"""Protocol classes on a :class:`~tests.support.fakes.ManualLoop` and a :class:`~tests.support.fakes.FakeTransport`:
a client connection as its client sees it (:func:`connect`) and a leaf link as its hub sees it (:func:`dial`).

Everything is real except the socket and the clock: a :class:`Server` (never started, so its INFO has only
the per-connection fields), a :class:`ClientConnection`, an :class:`Uplink` and its :class:`LeafLink`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from edge.config.leafnodes import LeafRemote, parse_leaf_url
from edge.config.settings import Settings
from edge.core.client import ClientConnection
from edge.core.server import Server
from edge.leaf.link import LeafLink
from edge.leaf.uplink import Uplink
from edge.protocol.encode import encode_connect
from edge.runtime.broker import build_authenticator
from tests.support.fakes import FakeTransport, ManualLoop


@dataclass
class Wire:
    """One client connection on a manual loop, with its transport."""

    loop: ManualLoop
    server: Server
    conn: ClientConnection
    transport: FakeTransport

    def feed(self, data: bytes) -> bytes:
        """The client sends ``data``; returns what the server wrote back by the end of the loop turn."""
        self.conn.data_received(data)
        return self.written()

    def written(self) -> bytes:
        self.loop.run_ready()
        return self.transport.take()

    def advance(self, seconds: float) -> bytes:
        self.loop.advance(seconds)
        return self.transport.take()


def connect(settings: Settings, loop: ManualLoop | None = None, server: Server | None = None) -> Wire:
    """A new client connection; its INFO is checked and consumed."""
    loop = loop or ManualLoop()
    server = server or Server(settings, loop=loop, authenticator=build_authenticator(settings))  # type: ignore[arg-type]
    conn = ClientConnection(server)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    wire = Wire(loop, server, conn, transport)
    info = wire.written()
    assert info.startswith(b"INFO {") and info.endswith(b" \r\n"), info
    assert json.loads(info[5:-3])["client_id"] == conn.cid
    return wire



LDS = b"$LDS.unittestunittestunitt"
HUB_INFO = {"server_id": "NHUB", "server_name": "hub", "version": "2.11.0", "client_id": 7,
            "leafnode_urls": ["127.0.0.1:7422"], "headers": True, "max_payload": 1048576}


def info_line(**extra: object) -> bytes:
    return b"INFO " + json.dumps({**HUB_INFO, **extra}).encode() + b"\r\n"


@dataclass
class Hub:
    """The link as the hub sees it."""

    loop: ManualLoop
    server: Server
    uplink: Uplink
    link: LeafLink
    transport: FakeTransport

    def send(self, data: bytes) -> bytes:
        """The hub sends ``data``; returns what the link wrote by the end of the loop turn."""
        self.link.data_received(data)
        self.loop.run_ready()
        return self.transport.take()

    def advance(self, seconds: float) -> bytes:
        self.loop.advance(seconds)
        return self.transport.take()

    def redial(self) -> Hub:
        """A new link of the same uplink (the reconnect after this one is gone)."""
        link = LeafLink(self.uplink)
        transport = FakeTransport()
        link.connection_made(transport)  # type: ignore[arg-type]
        self.uplink.link = link
        return Hub(self.loop, self.server, self.uplink, link, transport)


def dial(settings: Settings | None = None, **remote: object) -> Hub:
    """A link whose TCP connection is made (what ``Uplink._connect`` has after ``create_connection``)."""
    loop = ManualLoop()
    settings = settings or Settings()
    server = Server(settings, loop=loop, authenticator=build_authenticator(settings))  # type: ignore[arg-type]
    uplink = Uplink(server, LeafRemote(urls=(parse_leaf_url("nats-leaf://127.0.0.1:7422"),), **remote),  # type: ignore[arg-type]
                    lds=LDS)
    link = LeafLink(uplink)
    transport = FakeTransport()
    link.connection_made(transport)  # type: ignore[arg-type]
    uplink.link = link
    return Hub(loop, server, uplink, link, transport)


def up(hub: Hub, interest: bytes = b"") -> None:
    """Complete the handshake with ``info_on_connect``: INFO, our CONNECT, the hub's connect_info INFO;
    then the link sends the local ``interest`` and our $LDS."""
    assert hub.send(info_line(info_on_connect=True)) == b""
    hub.link.write_now(encode_connect({"headers": True}))
    assert hub.transport.take() == b'CONNECT {"headers":true}\r\n'
    assert hub.send(info_line(connect_info=True)) == interest + b"LS+ " + LDS + b"\r\n"
