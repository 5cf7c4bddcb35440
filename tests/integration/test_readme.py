"""The README's walk-throughs, run for real from the README's own text.

Every fenced block preceded by ``<!-- test: NAME -->`` in README.md is read here by name. Commands are
run as written, with only these substitutions (:class:`Subst`): ``.venv/bin/`` becomes the bin directory
of the Python running the tests, ``/tmp/edge-demo`` a temporary directory, and the README's ports
(4222 gateway, 4333 hub clients, 7422 hub leafnodes) ports that are free now; long-running servers get
``-p -1`` and report the port they bound. Expected outputs are compared exactly where the output is
deterministic, and by *shape* (every number replaced by ``N``) where it carries live values such as
sensor readings and times. So a command or an output in the README that stops being true fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ble_fixtures import dbus_daemon  # noqa: F401 - a fixture, used by name
from tests.support.processes import ServerProcess, _start, free_port, wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
# EDGE_README: check a draft section against these tests without editing README.md (a copy with it appended).
README = Path(os.environ.get("EDGE_README") or ROOT / "README.md")
BIN = Path(sys.executable).parent
DEMO_DIR = "/tmp/edge-demo"
CMD_TIMEOUT = 60.0
_BLOCK_RE = re.compile(r"<!-- test: ([\w-]+) -->\n```[\w]*\n(.*?)\n```", re.S)


def readme_blocks() -> dict[str, str]:
    """Marked blocks by name; a name used twice is an error (the test would not know which one is meant)."""
    blocks: dict[str, str] = {}
    for name, body in _BLOCK_RE.findall(README.read_text(encoding="utf-8")):
        assert name not in blocks, f"README marks two blocks as {name!r}"
        blocks[name] = body
    return blocks


BLOCKS = readme_blocks()


def shape(text: str) -> str:
    """``text`` with every number (digits, optionally with a fraction) replaced by ``N``."""
    return re.sub(r"\d+(?:\.\d+)?", "N", text)


class Subst:
    """The README's paths and ports mapped onto this test's temporary directory and free ports."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports: dict[int, int] = {}

    def __call__(self, text: str) -> str:
        text = text.replace(".venv/bin/", f"{BIN}/").replace(DEMO_DIR, str(self.tmp))
        for readme_port, port in self.ports.items():
            text = re.sub(rf"\b{readme_port}\b", str(port), text)
        return text


def run_shell(sub: Subst, name: str) -> str:
    """Run block ``name`` with bash as written (after substitution); its stdout, asserting exit 0."""
    r = subprocess.run(["bash", "-c", sub(BLOCKS[name])], capture_output=True, text=True, timeout=CMD_TIMEOUT,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"README block {name!r} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def start_server(sub: Subst, command: str, name: str) -> ServerProcess:
    """A README server command (``nats-edge run ...`` or ``nats-server ...``) on a port it picks itself."""
    argv = shlex.split(sub(command))
    if "-p" in argv:
        argv[argv.index("-p") + 1] = "-1"
    else:
        argv += ["-p", "-1"]
    return _start(name, argv, sub.tmp)


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    """Servers a test starts; whatever is still running at the end is stopped (killed if it hangs)."""
    started: list[ServerProcess] = []
    yield started
    for sp in started:
        sp.stop()


def stop_with_ctrl_c(sp: ServerProcess) -> None:
    code = sp.stop(signal.SIGINT)
    assert code == 0, f"{sp.name} exited with {code} on Ctrl-C:\n{sp.log()}"


def assert_same_shape(expected: str, actual: str, gateway: str | None = None) -> None:
    """Line by line, the README's lines and the actual ones are equal once numbers are ``N``; ``gateway``
    replaces the README's ``raspberrypi`` (the host name part of a demo subject)."""
    exp = expected.splitlines()
    if gateway is not None:
        exp = [line.replace("raspberrypi", gateway) for line in exp]
    assert [shape(line) for line in actual.splitlines()] == [shape(line) for line in exp], actual


# -- the two commands at the top ------------------------------------------------------------------


def test_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert BLOCKS["install-test"] in ci
    assert BLOCKS["install-test"].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && ")


def test_demo_runs_prints_readings_and_stops_on_ctrl_c(tmp_path: Path, servers: list[ServerProcess]) -> None:
    install, _, run = BLOCKS["install-run"].rpartition(" && ")
    assert install == "python3 -m venv .venv && .venv/bin/pip install ."
    assert run == ".venv/bin/nats-edge run --demo"
    sub = Subst(tmp_path)
    gw = start_server(sub, run, "nats-edge")
    servers.append(gw)
    sub.ports[4222] = gw.port
    from edge.adapters.base import sanitize_token

    gateway = sanitize_token(socket.gethostname())  # the default server name, as subjects carry it
    readme_log = [line for line in README.read_text(encoding="utf-8").splitlines() if "[INF] demo demo1:" in line]
    assert len(readme_log) == 1
    want = shape(readme_log[0].split("[INF] ", 1)[1].replace("raspberrypi", gateway))
    wait_for(lambda: "Server is ready" in gw.log(), 10, "Server is ready")
    wait_for(lambda: any(shape(line.split("[INF] ", 1)[-1]) == want for line in gw.log().splitlines()), 10,
             f"a demo log line shaped like the README's: {want}")
    out = run_shell(sub, "demo-watch")
    assert_same_shape(BLOCKS["demo-watch-output"], out, gateway)
    stop_with_ctrl_c(gw)
    assert "Server Exiting.." in gw.log()


# -- 2. a serial device ---------------------------------------------------------------------------


def _read_block(proc: subprocess.Popen[bytes], timeout: float) -> list[str]:
    """Lines the simulator prints up to its terminating empty line (raw reads: no buffer hides data from
    select)."""
    import os
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n\n" not in data:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise AssertionError(f"simulate-device printed only {data!r}")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError(f"simulate-device exited after {data!r}")
        data += chunk
    return data.decode("utf-8").split("\n\n", 1)[0].split("\n")


@contextmanager
def simulator(sub: Subst) -> Iterator[list[str]]:
    """The README's ``serial-sim`` command running; yields the lines it printed. On the way out it is
    stopped with Ctrl-C, and must exit 0."""
    mkdir, _, simulate = sub(BLOCKS["serial-sim"]).rpartition(" && ")
    # exec: the simulator is bash's child no more, so Ctrl-C (SIGINT) below reaches it.
    sim = subprocess.Popen(["bash", "-c", f"{mkdir} && exec {simulate}"],
                           stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        yield _read_block(sim, 20)
    finally:
        sim.send_signal(signal.SIGINT)
        code = sim.wait(10)
        assert sim.stdout is not None
        sim.stdout.close()
    assert code == 0


def test_serial_walkthrough(tmp_path: Path, servers: list[ServerProcess]) -> None:
    sub = Subst(tmp_path)
    with simulator(sub) as printed:
        expected = sub(BLOCKS["serial-sim-output"]).splitlines()
        assert shape(printed[0]) == shape(expected[0])  # the pty's number differs
        assert printed[1:] == expected[1:]
        block = "\n".join(printed[2:]) + "\n"
        parsed = tomllib.loads(block)  # the printed table is TOML, as it says
        assert parsed["adapters"]["serial"][0]["port"] == str(tmp_path / "sim0")
        # The README's config file is the printed table under a server name: pasting it is what it shows.
        run_shell(sub, "serial-config")
        config = (tmp_path / "serial.toml").read_text(encoding="utf-8")
        assert config == 'server_name = "gw1"\n\n' + block
        gw = start_server(sub, BLOCKS["serial-run"], "nats-edge")
        servers.append(gw)
        sub.ports[4222] = gw.port
        out = run_shell(sub, "serial-watch")
        assert_same_shape(BLOCKS["serial-watch-output"], out)
        online = _request(gw.port, "edge.gw1.devices")
        [dev] = [d for d in online["devices"] if d["adapter"] == "serial"]
        assert dev["device"] == "sim1" and dev["state"] == "online"
        assert dev["info"]["port"] == str(tmp_path / "sim0") and dev["info"]["codec"] == "jsonl"
        stop_with_ctrl_c(gw)
    assert not (tmp_path / "sim0").is_symlink()  # the simulator removes its link on Ctrl-C


def test_commands_walkthrough(tmp_path: Path, servers: list[ServerProcess]) -> None:
    sub = Subst(tmp_path)
    with simulator(sub):
        run_shell(sub, "commands-config")
        gw = start_server(sub, BLOCKS["commands-run"], "nats-edge")
        servers.append(gw)
        sub.ports[4222] = gw.port
        wait_for(lambda: any(d["state"] == "online" for d in _request(gw.port, "edge.gw1.devices")["devices"]
                             if d["adapter"] == "serial"), 20, "the simulated relay online")
        out = run_shell(sub, "commands-request")
        assert_same_shape(BLOCKS["commands-output"], out)
        [dev] = [d for d in _request(gw.port, "edge.gw1.devices")["devices"] if d["adapter"] == "serial"]
        assert dev["actions"] == ["relay", "toggle", "read"]
        stop_with_ctrl_c(gw)


def _request(port: int, subject: str, payload: bytes = b"") -> Any:
    """One request through nats-py (in a fresh event loop), its JSON reply."""
    import asyncio

    import nats

    async def go() -> Any:
        nc = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            return json.loads((await nc.request(subject, payload, timeout=5)).data)
        finally:
            await nc.close()

    return asyncio.run(go())


# -- 3. uplink, store-and-forward ---------------------------------------------------------------------


def _outbox_text(text: str) -> str:
    return re.sub(r"\(oldest [^)]*\)", "(oldest ...)", text.strip())


def test_uplink_walkthrough(tmp_path: Path, servers: list[ServerProcess]) -> None:
    sub = Subst(tmp_path)
    sub.ports[7422] = free_port()
    run_shell(sub, "uplink-hub-conf")
    hub = start_server(sub, BLOCKS["uplink-hub"], "hub")
    servers.append(hub)
    sub.ports[4333] = hub.port
    run_shell(sub, "uplink-stream")
    run_shell(sub, "uplink-gw-conf")
    gw = start_server(sub, BLOCKS["uplink-gw"], "nats-edge")
    servers.append(gw)
    sub.ports[4222] = gw.port
    linked = sub("Leafnode connection to nats-leaf://127.0.0.1:7422 established")
    wait_for(lambda: linked in gw.log(), 15, linked)

    stop_with_ctrl_c(hub)
    assert run_shell(sub, "uplink-publish") == BLOCKS["uplink-publish-output"] + "\n"
    outbox = run_shell(sub, "uplink-outbox")
    assert _outbox_text(outbox) == _outbox_text(sub(BLOCKS["uplink-outbox-pending"]))

    hub2 = start_server(sub, BLOCKS["uplink-hub"], "hub")
    servers.append(hub2)
    sub.ports[4333] = hub2.port
    replaying = "store_forward: link up, forwarding 3 stored records from seq 1"
    wait_for(lambda: replaying in gw.log(), 15, replaying)
    assert run_shell(sub, "uplink-replay") == BLOCKS["uplink-replay-output"] + "\n"
    empty = _outbox_text(sub(BLOCKS["uplink-outbox-empty"]))
    wait_for(lambda: _outbox_text(run_shell(sub, "uplink-outbox")) == empty, 15, "the outbox to be empty")
    stop_with_ctrl_c(gw)
    stop_with_ctrl_c(hub2)


# -- 4. mDNS --------------------------------------------------------------------------------------------


def test_mdns_walkthrough(tmp_path: Path, servers: list[ServerProcess]) -> None:
    pytest.importorskip("zeroconf")
    sub = Subst(tmp_path)
    run_shell(sub, "mdns-conf")
    gw = start_server(sub, BLOCKS["mdns-run"], "nats-edge")
    servers.append(gw)
    sub.ports[4222] = gw.port
    device = subprocess.Popen(["bash", "-c", "exec " + sub(BLOCKS["mdns-device"])], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL)
    try:
        expected = json.loads(BLOCKS["mdns-list-output"])
        [want] = expected["devices"]

        def listed() -> dict[str, Any] | None:
            reply = json.loads(run_shell(sub, "mdns-list"))
            mine = [d for d in reply["devices"] if d["device"] == want["device"]]
            return reply if mine else None

        reply = wait_for(listed, 30, "the ESPHome device in the device list", interval=0.3)
    finally:
        device.terminate()
        device.wait(10)
    assert set(reply) == set(expected) and reply["gateway"] == expected["gateway"]
    [got] = [d for d in reply["devices"] if d["device"] == want["device"]]
    for key in ("first_seen", "last_seen"):
        assert shape(got.pop(key)) == shape(want.pop(key))
    assert got == want
    stop_with_ctrl_c(gw)


# -- 5. BLE: the config is valid, and the shown readings are what the decoder and adapter make ---------


def check_config(conf: Path, bus: str) -> subprocess.CompletedProcess[str]:
    """``nats-edge check-config -c conf`` with a D-Bus system bus (a private dbus-daemon) as on a gateway:
    check-config refuses a BLE configuration where BlueZ cannot be reached."""
    import os

    return subprocess.run([str(BIN / "nats-edge"), "check-config", "-c", str(conf)], capture_output=True, text=True,
                          timeout=CMD_TIMEOUT, env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus})


def test_ble_config_and_readings(tmp_path: Path, dbus_daemon: str) -> None:  # noqa: F811
    from edge.adapters.base import AdapterContext
    from edge.adapters.ble.adapter import BleAdapter
    from edge.adapters.ble.decoders import DecoderState, decode_advertisement
    from edge.config import load_settings

    conf = tmp_path / "ble.toml"
    conf.write_text(BLOCKS["ble-conf"], encoding="utf-8")
    check = check_config(conf, dbus_daemon)
    assert check.returncode == 0, check.stderr
    settings = load_settings(conf)
    [inst] = settings.sections["adapters"].instances
    text = README.read_text(encoding="utf-8")
    vector = re.search(r"manufacturer data `([0-9A-F]+)`", text)
    assert vector is not None
    address = "CB:B8:33:4C:88:4F"
    assert vector.group(1).endswith(address.replace(":", ""))  # Ruuvi puts the MAC at the end
    result = decode_advertisement(address, {0x0499: bytes.fromhex(vector.group(1))}, {}, state=DecoderState())
    assert result.reject is None

    published: list[tuple[str, bytes]] = []

    class Capture(AdapterContext):
        def publish(self, subject: str | bytes, payload: bytes, *, reply: str | bytes | None = None) -> int:
            published.append((subject.decode() if isinstance(subject, bytes) else subject, payload))
            return 0

    ctx = Capture(None, "ble", inst.name, gateway=settings.server_name)  # type: ignore[arg-type]
    adapter = BleAdapter(inst.options, ctx)
    # The scanner names a configured address by its entry's name (edge.adapters.ble.scanner).
    [dev] = [d for d in inst.options.devices if d.address == address]
    lines = BLOCKS["ble-readings"].splitlines()
    rssi = json.loads(lines[0].split(" ", 1)[1])["rssi"]
    adapter._on_reading(dev.name, result.measurements, rssi, result.format or "")
    readings = dict(published)
    for line in lines:
        subject, body = line.split(" ", 1)
        assert subject in readings, f"{subject} not published; got {sorted(readings)}"
        got, want = json.loads(readings[subject]), json.loads(body)
        assert shape(got.pop("ts")) == shape(want.pop("ts"))
        assert got == want


# -- the configuration example ------------------------------------------------------------------------


def test_configuration_example_passes_check_config(tmp_path: Path, dbus_daemon: str) -> None:  # noqa: F811
    bcrypt = pytest.importorskip("bcrypt")
    conf = tmp_path / "edge.toml"
    conf.write_text(BLOCKS["config-example"], encoding="utf-8")
    r = check_config(conf, dbus_daemon)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"configuration ok ({conf})"
    users = tomllib.loads(BLOCKS["config-example"])["authorization"]["users"]
    [sensor] = [u for u in users if u["user"] == "sensor"]
    assert "the password of `sensor` is\n`sensor-secret`" in README.read_text(encoding="utf-8")
    assert sensor["password"].startswith("$2a$")
    assert bcrypt.checkpw(b"sensor-secret", sensor["password"].encode())


@pytest.mark.slow
def test_plain_install_starts_the_readme_config_without_a_traceback(
    tmp_path: Path, dbus_daemon: str, servers: list[ServerProcess]  # noqa: F811 - the fixture, by name
) -> None:
    """The README's first command installs with ``pip install .`` (no extras): that install alone runs the
    configuration example (serial, BLE, a bcrypt user, a leaf remote, store-and-forward) without a
    traceback, on a machine that has a D-Bus system bus but no serial port, no radio and no hub."""
    install, _, _run = BLOCKS["install-run"].rpartition(" && ")
    venv = tmp_path / "venv"
    r = subprocess.run(["bash", "-c", install.replace(".venv", str(venv)).replace("install .", f"install -q {ROOT}")],
                       capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    conf = tmp_path / "edge.toml"
    # The outbox goes under $STATE_DIRECTORY; the hub is a closed loopback port (no lookups leave the machine).
    conf.write_text(BLOCKS["config-example"].replace("hub.example.com:7422", f"127.0.0.1:{free_port()}"),
                    encoding="utf-8")
    env = {"DBUS_SYSTEM_BUS_ADDRESS": dbus_daemon, "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
           "STATE_DIRECTORY": str(tmp_path / "state"), "HOME": str(tmp_path)}
    cli = str(venv / "bin" / "nats-edge")
    r = subprocess.run([cli, "check-config", "-c", str(conf)], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"configuration ok ({conf})", r.stdout + r.stderr
    gw = _start("nats-edge", [cli, "run", "-c", str(conf), "-a", "127.0.0.1", "-p", "-1", "-m", "-1"],
                tmp_path, env)
    servers.append(gw)
    wait_for(lambda: "Server is ready" in gw.log(), 20, "Server is ready")
    # Each configured part has had its go: the serial port and the hub are missing, BLE finds no BlueZ.
    wait_for(lambda: all(word in gw.log() for word in ("serial", "ble", "Leafnode")), 20,
             "the serial, BLE and leaf parts to report")
    stop_with_ctrl_c(gw)
    assert "Traceback" not in gw.log(), gw.log()


# -- MQTT devices ---------------------------------------------------------------------------------


def _num_subscriptions(http_port: int) -> int:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/subsz", timeout=5) as resp:
        return int(json.loads(resp.read())["num_subscriptions"])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None or shutil.which("mosquitto_pub") is None,
                    reason="mosquitto-clients not installed (.ci/run installs it)")
def test_mqtt_walkthrough(tmp_path: Path, servers: list[ServerProcess]) -> None:
    sub = Subst(tmp_path)
    sub.ports[1883] = free_port()
    sub.ports[8222] = free_port()
    run_shell(sub, "mqtt-config")
    gw = start_server(sub, BLOCKS["mqtt-run"], "nats-edge")
    servers.append(gw)
    sub.ports[4222] = gw.port
    wait_for(lambda: _accepts(sub.ports[1883]), 10, "the MQTT port")
    before = _num_subscriptions(sub.ports[8222])
    # Terminal 2: exec, so the process we wait for is mosquitto_sub itself.
    listener = subprocess.Popen(["bash", "-c", "exec " + sub(BLOCKS["mqtt-sub"])], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: _num_subscriptions(sub.ports[8222]) > before, 10, "mosquitto_sub's subscription")
        assert run_shell(sub, "mqtt-pub") == ""
        assert run_shell(sub, "mqtt-nats") == BLOCKS["mqtt-nats-output"] + "\n"
        out, err = listener.communicate(timeout=CMD_TIMEOUT)
        assert listener.returncode == 0, err
        assert out == BLOCKS["mqtt-sub-output"] + "\n"
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.communicate()
    assert run_shell(sub, "mqtt-retained") == BLOCKS["mqtt-retained-output"] + "\n"
    held = json.loads(run_shell(sub, "mqtt-inspect"))
    assert held["retained"] == [], held  # the walk-through cleared the one it set
    stop_with_ctrl_c(gw)
