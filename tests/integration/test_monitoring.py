"""Monitoring JSON of the real broker compared field by field with a real nats-server's, and bad requests."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import nats
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.natsclient import flush
from tests.support.processes import ServerProcess, start_nats_edge, start_nats_server, wait_for


def get(sp: ServerProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(sp.url_of("monitoring") + path, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(sp: ServerProcess, path: str) -> dict[str, Any]:
    status, body = get(sp, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    edge = start_nats_edge(tmp_path_factory.mktemp("edge"), "-m", "-1")
    ref = start_nats_server(tmp_path_factory.mktemp("ns"), "-m", "-1")
    yield edge, ref
    ref.stop()
    assert edge.stop() == 0, edge.log()


@pytest.fixture
async def same_situation(pair: tuple[ServerProcess, ServerProcess]) -> AsyncIterator[None]:
    """On both servers: one client "c1" with a queue and a plain subscription, one message delivered."""
    conns = []
    for sp in pair:
        nc = await nats.connect(sp.url, name="c1")
        await nc.subscribe("foo.>", queue="q")
        sub = await nc.subscribe("bar")
        await nc.publish("bar", b"hi")
        await sub.next_msg(timeout=5)
        conns.append(nc)
    yield
    for nc in conns:
        await nc.close()


def assert_same_shape(ours: dict[str, Any], theirs: dict[str, Any], where: str, required: set[str]) -> None:
    missing = required - set(ours)
    assert not missing, f"{where}: missing {sorted(missing)}"
    for key in set(ours) & set(theirs):
        a, b = ours[key], theirs[key]
        if isinstance(b, bool) or isinstance(a, bool):
            assert type(a) is type(b), f"{where}.{key}: {a!r} vs {b!r}"
        elif isinstance(b, (int, float)):
            assert isinstance(a, (int, float)) and not isinstance(a, bool), f"{where}.{key}: {a!r} vs {b!r}"
        else:
            assert type(a) is type(b), f"{where}.{key}: {type(a).__name__} vs {type(b).__name__}"
        if isinstance(a, dict) and a and b:
            assert_same_shape(a, b, f"{where}.{key}", set())


VARZ_KEYS = {
    "server_id", "server_name", "version", "proto", "go", "host", "port", "max_connections", "ping_interval",
    "ping_max", "http_host", "http_port", "auth_timeout", "max_control_line", "max_payload", "max_pending",
    "cluster", "gateway", "leaf", "tls_timeout", "write_deadline", "start", "now", "uptime", "mem", "cores", "cpu",
    "connections", "total_connections", "routes", "remotes", "leafnodes", "in_msgs", "in_bytes", "out_msgs",
    "out_bytes", "slow_consumers", "stale_connections", "subscriptions", "http_req_stats", "config_load_time",
    "system_account", "slow_consumer_stats",
}


@pytest.mark.usefixtures("same_situation")
def test_varz_matches_nats_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    edge, ref = pair
    ours, theirs = get_json(edge, "/varz"), get_json(ref, "/varz")
    assert_same_shape(ours, theirs, "varz", VARZ_KEYS)
    assert ours["ping_interval"] == theirs["ping_interval"] == 120_000_000_000
    assert ours["write_deadline"] == theirs["write_deadline"]
    assert ours["max_payload"] == theirs["max_payload"] and ours["max_pending"] == theirs["max_pending"]
    assert ours["http_port"] == int(edge.url_of("monitoring").rsplit(":", 1)[1])
    assert ours["connections"] == 1 and ours["in_msgs"] >= 1 and ours["out_msgs"] >= 1
    assert ours["http_req_stats"]["/varz"] >= 1


@pytest.mark.usefixtures("same_situation")
def test_connz_matches_nats_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    edge, ref = pair
    for query in ("", "?subs=1", "?subs=detail", "?sort=msgs_from&limit=10&offset=0"):
        ours, theirs = get_json(edge, "/connz" + query), get_json(ref, "/connz" + query)
        assert_same_shape(ours, theirs, f"connz{query}",
                          {"server_id", "now", "num_connections", "total", "offset", "limit", "connections"})
        c_ours, c_theirs = ours["connections"][0], theirs["connections"][0]
        assert set(c_theirs) <= set(c_ours) | {"tls_version", "tls_cipher_suite"}, set(c_theirs) - set(c_ours)
        assert_same_shape(c_ours, c_theirs, f"connz{query}.connections[0]", set())
        assert c_ours["name"] == "c1" and c_ours["subscriptions"] == 2 and c_ours["kind"] == "Client"
    ours, theirs = get_json(edge, "/connz?subs=detail"), get_json(ref, "/connz?subs=detail")
    d_ours = sorted(ours["connections"][0]["subscriptions_list_detail"], key=lambda d: d["subject"])
    d_theirs = sorted(theirs["connections"][0]["subscriptions_list_detail"], key=lambda d: d["subject"])
    assert [set(d) for d in d_ours] == [set(d) for d in d_theirs]
    for a, b in zip(d_ours, d_theirs, strict=True):
        assert_same_shape(a, b, "subscriptions_list_detail", set())
        assert (a["subject"], a.get("qgroup"), a["msgs"]) == (b["subject"], b.get("qgroup"), b["msgs"])
    assert get_json(edge, "/connz?limit=0")["connections"] == []
    assert get_json(edge, "/connz?offset=5")["total"] == 1


@pytest.mark.usefixtures("same_situation")
def test_subsz_leafz_routez_healthz_match_nats_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    edge, ref = pair
    ours, theirs = get_json(edge, "/subsz?subs=1"), get_json(ref, "/subsz?subs=1")
    assert_same_shape(ours, theirs, "subsz", set(theirs) - {"server_id", "now"} | {"subscriptions_list"})
    ours_bar = [s for s in ours["subscriptions_list"] if s["subject"] == "bar"]
    theirs_bar = [s for s in theirs["subscriptions_list"] if s["subject"] == "bar"]
    assert set(ours_bar[0]) == set(theirs_bar[0])
    assert_same_shape(ours_bar[0], theirs_bar[0], "subsz.subscriptions_list", set())
    assert get_json(edge, "/subsz?subs=1&test=foo.x")["total"] == 1
    for path in ("/leafz", "/routez", "/healthz"):
        o, t = get_json(edge, path), get_json(ref, path)
        assert_same_shape(o, t, path, set(t))
    assert get_json(edge, "/healthz") == {"status": "ok"}


@pytest.mark.usefixtures("same_situation")
def test_metrics_parse_and_devicez(pair: tuple[ServerProcess, ServerProcess]) -> None:
    edge, _ = pair
    status, body = get(edge, "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert families["nats_edge_connections"].samples[0].value == 1
    # c1's two, plus the device registry's edge.<gateway>.devices and cmd.<gateway>.> (answering commands
    # nobody serves), like nats-server's own internal subs
    assert families["nats_edge_subscriptions"].samples[0].value == 2 + 2
    assert families["nats_edge_in_messages"].samples[0].value >= 1
    devz = get_json(edge, "/devicez")
    assert devz["devices"] == [] and devz["total"] == 0


def raw_request(sp: ServerProcess, data: bytes) -> bytes:
    host, port = sp.url_of("monitoring").removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if sum(map(len, chunks)) > 1 << 20:
                break
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /varz HTTP/1.1\r\n\r\n", b"400"),  # HTTP/1.1 without Host
        (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"404"),
        (b"POST /varz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi", b"413"),
        (b"DELETE /varz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"405"),
        (b"GET /connz?sort=bogus HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET /connz?limit=-3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX: " + b"y" * 9000 + b"\r\nConnection: close\r\n\r\n", b"431"),
    ],
)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(
    pair: tuple[ServerProcess, ServerProcess], request_bytes: bytes, status: bytes
) -> None:
    edge, _ = pair
    reply = raw_request(edge, request_bytes)
    assert reply.split(b" ", 2)[1] == status, reply[:200]
    assert get_json(edge, "/healthz") == {"status": "ok"}
    assert edge.proc.poll() is None


def test_keep_alive_serves_several_requests(pair: tuple[ServerProcess, ServerProcess]) -> None:
    edge, _ = pair
    one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    reply = raw_request(edge, one + one + b"GET /varz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.count(b"HTTP/1.1 200") == 3


def test_too_many_connections_are_refused_not_queued(pair: tuple[ServerProcess, ServerProcess]) -> None:
    from edge.monitoring.http import MAX_CONNECTIONS

    edge, _ = pair
    host, port = edge.url_of("monitoring").removeprefix("http://").rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(MAX_CONNECTIONS + 5)]
    try:
        # The extra ones are closed by the server right away: recv sees EOF.
        closed = 0
        for s in held[MAX_CONNECTIONS:]:
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        assert closed == 5
    finally:
        for s in held:
            s.close()
    assert get_json(edge, "/healthz") == {"status": "ok"}


async def test_connz_closed_matches_nats_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    found = []
    for sp in pair:
        nc = await nats.connect(sp.url, name="closer")
        await nc.subscribe("zz.a")
        await flush(nc)
        await nc.close()

        def closed_entry(sp: ServerProcess = sp) -> dict[str, Any] | None:
            conns = get_json(sp, "/connz?state=closed&subs=1&limit=100000")["connections"]
            return next((c for c in conns if c.get("name") == "closer"), None)

        wait_for(lambda f=closed_entry: f() is not None, 10, "the closed connection in /connz?state=closed")
        found.append(closed_entry())
    ours, theirs = found
    assert ours is not None and theirs is not None
    assert set(theirs) <= set(ours) | {"tls_version", "tls_cipher_suite"}, set(theirs) - set(ours)
    assert_same_shape(ours, theirs, "connz?state=closed.connections[]", {"stop", "reason"})
    assert ours["reason"] == theirs["reason"] == "Client Closed"
    assert ours["subscriptions_list"] == theirs["subscriptions_list"] == ["zz.a"]
    assert ours["subscriptions"] == theirs["subscriptions"] == 1
    edge = pair[0]
    any_state = get_json(edge, "/connz?state=any&limit=100000")
    assert any(c.get("name") == "closer" for c in any_state["connections"])
    assert all("stop" not in c for c in get_json(edge, "/connz")["connections"])
