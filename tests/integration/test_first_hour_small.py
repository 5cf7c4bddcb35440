"""Small things a nats-server user notices in the first hour, each checked on the real broker (and, where
the behaviour is nats-server's, side by side with a real nats-server): the version in INFO and /varz,
HTTP reason phrases, /connz rtt, /subsz cache_hit_rate, the device list, listener errors, subcommand
usage, one gateway token in every subject, and the idle RSS of a broker that compiles from source.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import nats
import pytest

import edge
from tests.integration.test_monitoring import get_json
from tests.support.natsclient import flush
from tests.support.processes import (
    ServerProcess,
    free_port,
    nats_server_binary,
    start_nats_edge,
    start_nats_server,
    wait_for,
)
from tests.support.raw import RawClient

pytestmark = pytest.mark.timeout(120)

GW = "gw:lab"  # a server name with a character the old mDNS sanitiser changed and the adapters kept
# 25 MB (MiB, as nats-server reads "25MB") for an idle default broker, in both builds (issue 17).
RSS_BUDGET_KB = 25 * 1024


def status_line(sp: ServerProcess, path: str) -> bytes:
    host, port = sp.url_of("monitoring").rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n" not in data:  # each recv bounded by the socket timeout, the line by size
            chunk = s.recv(4096)
            assert chunk and len(data) < 65536, data[:200]
            data += chunk
    return data.split(b"\r\n", 1)[0]


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ns|µs|ms|s)$")
_UNIT = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def seconds(go_duration: str) -> float:
    """A sub-minute Go duration string ("512µs", "1.234ms") in seconds; AssertionError if malformed."""
    m = _DURATION.match(go_duration)
    assert m, go_duration
    return float(m.group(1)) * _UNIT[m.group(2)]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60,
                          check=False)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """nats-edge (no adapters, server name "gw:lab") and nats-server, both with monitoring."""
    ours = start_nats_edge(tmp_path_factory.mktemp("edge"), "-m", "-1", "-n", GW)
    ref = start_nats_server(tmp_path_factory.mktemp("ns"), "-m", "-1")
    yield ours, ref
    ref.stop()
    assert ours.stop() == 0, ours.log()


# -- 1. versions ------------------------------------------------------------------------------------


def test_info_and_varz_report_the_nats_server_version_and_our_own(pair: tuple[ServerProcess, ServerProcess]) -> None:
    ours, ref = pair
    with RawClient(ours.port) as a, RawClient(ref.port) as b:
        info, their_info = a.info, b.info
    assert info["version"] == edge.NATS_SERVER_VERSION == "2.10.0"
    assert info["edge_version"] == edge.__version__
    assert int(their_info["version"].split(".")[0]) == 2  # what clients compare against
    assert "edge_version" not in their_info
    varz = get_json(ours, "/varz")
    assert (varz["version"], varz["edge_version"]) == (info["version"], info["edge_version"])
    assert get_json(ref, "/varz")["version"] == their_info["version"]


async def test_nats_py_sees_a_2x_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    for sp in pair:
        nc = await nats.connect(sp.url)
        try:
            v = nc.connected_server_version
            assert v.major == 2 and v.minor >= 10, (sp.name, v)
        finally:
            await nc.close()


def test_a_hub_with_a_leaf_min_version_accepts_the_gateway(tmp_path: Path) -> None:
    """The leaf CONNECT carries the nats-server version too: a hub's min_version (2.8.0+) lets us in."""
    leaf_port = free_port()
    for d in ("hub", "edge"):
        (tmp_path / d).mkdir()
    hub = start_nats_server(tmp_path / "hub", config=(
        f'http: "127.0.0.1:{free_port()}"\n'
        f'leafnodes {{\n  listen: "127.0.0.1:{leaf_port}"\n  min_version: "2.8.0"\n}}\n'))
    try:
        gw = start_nats_edge(tmp_path / "edge", "--leaf", f"nats-leaf://127.0.0.1:{leaf_port}")
        try:
            def leafnodes() -> int:
                with urllib.request.urlopen(hub.url_of("monitoring") + "/leafz", timeout=5) as r:
                    return int(json.loads(r.read())["leafnodes"])

            wait_for(lambda: leafnodes() == 1, 20, "the gateway's leaf link to a hub with min_version")
        finally:
            assert gw.stop() == 0, gw.log()
        assert "minimum version required" not in gw.log()
    finally:
        hub.stop()


def test_version_flag_prints_both_versions() -> None:
    r = run_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        f"nats-edge {edge.__version__} (nats-server {edge.NATS_SERVER_VERSION} protocol, {edge.build_kind()} build)"
    )


# -- 2. HTTP reason phrases -------------------------------------------------------------------------


def test_http_status_lines_carry_reason_phrases(pair: tuple[ServerProcess, ServerProcess]) -> None:
    ours, ref = pair
    assert status_line(ours, "/varz") == status_line(ref, "/varz") == b"HTTP/1.1 200 OK"
    assert status_line(ours, "/nope") == status_line(ref, "/nope") == b"HTTP/1.1 404 Not Found"


# -- 3. /connz rtt ----------------------------------------------------------------------------------


def _rtt_of(sp: ServerProcess, name: str) -> str:
    conns = [c for c in get_json(sp, "/connz")["connections"] if c.get("name") == name]
    assert len(conns) == 1, conns
    return str(conns[0]["rtt"])


def test_connz_rtt_is_estimated_at_connect(pair: tuple[ServerProcess, ServerProcess]) -> None:
    """nats-server estimates RTT from INFO to CONNECT, so /connz never shows "0s" for a connected client."""
    for sp in pair:
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false,"protocol":1,"name":"rtt-est"}\r\nPING\r\n')
            c.read_until_pong()
            rtt = _rtt_of(sp, "rtt-est")
            assert rtt != "0s" and 0 < seconds(rtt) < 5, (sp.name, rtt)


def test_connz_rtt_follows_the_servers_ping(pair: tuple[ServerProcess, ServerProcess]) -> None:
    """The server's first PING (after ~2 s) measures RTT: a client that answers it 0.3 s late shows >= 0.3 s."""
    delay = 0.3
    for sp in pair:
        with RawClient(sp.port) as c:
            c.send(b'CONNECT {"verbose":false,"protocol":1,"name":"rtt-ping"}\r\nPING\r\n')
            c.read_until_pong()
            while (line := c.read_line(timeout=10)) != b"PING\r\n":
                assert line.startswith(b"INFO "), line
            time.sleep(delay)  # the latency under test, not a synchronisation
            c.send(b"PONG\r\n")
            wait_for(lambda sp=sp: seconds(_rtt_of(sp, "rtt-ping")) >= delay, 5, f"{sp.name} rtt >= {delay}s")
            assert seconds(_rtt_of(sp, "rtt-ping")) < delay + 2, (sp.name, _rtt_of(sp, "rtt-ping"))


# -- 4. /subsz cache_hit_rate -----------------------------------------------------------------------


async def test_subsz_counts_match_cache_hits(pair: tuple[ServerProcess, ServerProcess]) -> None:
    ours = pair[0]
    n = 20
    for sp in pair:
        nc = await nats.connect(sp.url)
        try:
            sub = await nc.subscribe("hits.x")
            await flush(nc)
            before = get_json(sp, "/subsz")
            for _ in range(n):
                await nc.publish("hits.x", b"x")
            for _ in range(n):
                await sub.next_msg(timeout=5)
            after = get_json(sp, "/subsz")
        finally:
            await nc.close()
        assert after["cache_hit_rate"] > 0, (sp.name, after)
        if sp is ours:  # exact accounting: one miss fills the cache (cleared by the SUB), then hits
            assert after["num_matches"] - before["num_matches"] == n
            hits_before = round(before["cache_hit_rate"] * before["num_matches"])
            hits_after = round(after["cache_hit_rate"] * after["num_matches"])
            assert hits_after - hits_before == n - 1, (before, after)


# -- 5 and 8. the device list and the gateway token -------------------------------------------------


async def test_device_list_answers_without_adapters(pair: tuple[ServerProcess, ServerProcess]) -> None:
    nc = await nats.connect(pair[0].url)
    try:
        reply = json.loads((await nc.request(f"edge.{GW}.devices", b"", timeout=5)).data)
    finally:
        await nc.close()
    assert reply == {"gateway": GW, "devices": [], "count": 0, "evicted": 0}


async def test_readings_and_device_list_use_one_gateway_token(tmp_path: Path) -> None:
    sp = start_nats_edge(tmp_path, "--demo", "-n", GW)
    try:
        nc = await nats.connect(sp.url)
        sub = await nc.subscribe("dev.>")
        msg = await sub.next_msg(timeout=10)
        token = msg.subject.split(".")[1]
        assert token == GW and msg.subject.startswith(f"dev.{GW}.demo.demo1."), msg.subject
        devices = json.loads((await nc.request(f"edge.{token}.devices", b"", timeout=5)).data)
        await nc.close()
    finally:
        assert sp.stop() == 0, sp.log()
    assert devices["gateway"] == token and devices["count"] == 1
    (dev,) = devices["devices"]
    assert (dev["adapter"], dev["device"], dev["state"]) == ("demo", "demo1", "online")
    first = datetime.fromisoformat(dev["first_seen"].replace("Z", "+00:00"))
    last = datetime.fromisoformat(dev["last_seen"].replace("Z", "+00:00"))
    assert first <= last and dev["info"]["subject"] == f"dev.{GW}.demo.demo1"


# -- 6. listener errors -----------------------------------------------------------------------------


def _error_line(stderr: str) -> str:
    """The one error line of a failed start, without the log prefix ("[pid] date time [ERR] ")."""
    lines = [ln for ln in stderr.splitlines() if "[ERR]" in ln or "[FTL]" in ln]
    assert len(lines) == 1, stderr
    return lines[0].split("] ", 2)[2]


def test_taken_ports_name_the_listener_like_nats_server(pair: tuple[ServerProcess, ServerProcess]) -> None:
    ours, _ = pair
    http_port = int(ours.url_of("monitoring").rsplit(":", 1)[1])
    runs = {
        "monitoring": (["run", "-a", "127.0.0.1", "-p", "-1", "-m", str(http_port)],
                       ["-a", "127.0.0.1", "-p", "-1", "-m", str(http_port)]),
        "client": (["run", "-a", "127.0.0.1", "-p", str(ours.port)], ["-a", "127.0.0.1", "-p", str(ours.port)]),
    }
    for which, (edge_args, ns_args) in runs.items():
        mine = run_cli(*edge_args)
        theirs = subprocess.run([nats_server_binary(), *ns_args], capture_output=True, text=True, timeout=60,
                                check=False)
        assert mine.returncode == theirs.returncode == 1, (which, mine.stderr, theirs.stderr)
        assert "Traceback" not in mine.stderr
        assert _error_line(mine.stderr) == _error_line(theirs.stderr), which
    monitor_error = _error_line(run_cli(*runs["monitoring"][0]).stderr)
    assert monitor_error == ("Can't start monitoring: can't listen to the monitor port: "
                             f"listen tcp 127.0.0.1:{http_port}: bind: address already in use")


def test_a_taken_mqtt_port_names_the_mqtt_listener_like_nats_server(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        conf = tmp_path / "edge.toml"
        conf.write_text(f'[mqtt]\nport = {port}\ndir = "{tmp_path / "mqtt"}"\n')
        mine = run_cli("run", "-a", "127.0.0.1", "-p", "-1", "-c", str(conf))
        ns_conf = tmp_path / "ns.conf"
        ns_conf.write_text(f'server_name: ns\njetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
                           f'mqtt {{ listen: "127.0.0.1:{port}" }}\n')
        theirs = subprocess.run([nats_server_binary(), "-a", "127.0.0.1", "-p", "-1", "-c", str(ns_conf)],
                                capture_output=True, text=True, timeout=60, check=False)
    assert mine.returncode == theirs.returncode == 1, (mine.stderr, theirs.stderr)
    assert _error_line(mine.stderr) == _error_line(theirs.stderr) == (
        f"Unable to listen for MQTT connections: listen tcp 127.0.0.1:{port}: bind: address already in use")


# -- 7. subcommand usage ----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "usage"), [
    (["run", "--bogus"], "usage: nats-edge run "),
    (["--bogus"], "usage: nats-edge run "),  # run is the default command
    (["service", "install", "--bogus"], "usage: nats-edge service install "),
])
def test_unknown_flag_shows_the_subcommands_usage(args: list[str], usage: str) -> None:
    r = run_cli(*args)
    assert r.returncode == 2
    assert r.stderr.startswith(usage), r.stderr
    assert r.stderr.rstrip().endswith(f"{usage.split(' ', 1)[1].strip()}: error: unrecognized arguments: --bogus")


# -- 10. idle RSS without bytecode ------------------------------------------------------------------


def _vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_idle_rss_of_the_default_broker_compiled_from_source(tmp_path: Path) -> None:
    """`nats-edge run` with no config and no bytecode to load (an empty PYTHONPYCACHEPREFIX: every module,
    stdlib included, is compiled at start and nothing is written) stays within the idle budget."""
    pycache = tmp_path / "pycache"
    pycache.mkdir()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONOPTIMIZE", None)
    port = free_port()
    log = tmp_path / "edge.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "-p", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        # "Server is ready" is logged just before the broker hands freed heap back to the OS.
        wait_for(lambda: proc.poll() is None and b"Server is ready" in log.read_bytes(), 30, "the broker to start")
        try:
            wait_for(lambda: _vm_rss_kb(proc.pid) <= RSS_BUDGET_KB, 5, "idle RSS within the budget")
        except AssertionError:
            raise AssertionError(f"idle VmRSS {_vm_rss_kb(proc.pid)} kB > {RSS_BUDGET_KB} kB") from None
        assert not any(pycache.iterdir())  # really nothing compiled was written, nor read
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()
