"""The first hour on a gateway: a configured feature that cannot work is refused up front, in one line.

The real CLI runs in a subprocess. A library is made unimportable by a stub package of the same name,
first on ``PYTHONPATH``, whose ``__init__`` raises ImportError (as a broken or partial install would).
Also: a plain broker imports none of the feature libraries, and the outbox's default directory.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import START_TIMEOUT, STOP_TIMEOUT, start_nats_edge, wait_for

RUN = ["-a", "127.0.0.1", "-p", "-1"]
BCRYPT_HASH = "$2a$11$" + "a" * 53
# Imported by the features a plain broker does not have; none may load without them.
FEATURE_MODULES = ("serial", "bleak", "dbus_fast", "zeroconf", "bcrypt", "nkeys", "nacl", "aiofiles", "cryptography")


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m edge ARGS`` from ``tmp_path``; a run that does not refuse is killed by the timeout."""
    return subprocess.run([sys.executable, "-m", "edge", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=START_TIMEOUT, check=False)


def _broken(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment in which ``import <module>`` raises ImportError."""
    pkg = tmp_path / "stubs" / module
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"raise ImportError('{module} is broken on this gateway')\n")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path / "stubs"), os.environ.get("PYTHONPATH")) if p)}


CASES = {
    "serial": ('[[adapters.serial]]\nport = "/dev/ttyUSB9"\ncodec = "jsonl"\n',
               "[[adapters.serial]][0]", "pyserial"),
    "bcrypt": (f'[authorization]\nusers = [{{user = "a", password = "{BCRYPT_HASH}"}}]\n',
               "authorization.users[0].password", "bcrypt"),
    "nkeys": ('[[leafnodes.remotes]]\nurl = "nats-leaf://127.0.0.1:7422"\ncredentials = "/etc/leaf.creds"\n',
              "leafnodes.remotes[0].credentials", "nkeys"),
    "zeroconf": ('[mdns]\ninterfaces = ["127.0.0.1"]\n', "[mdns]", "zeroconf"),
}


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("module", sorted(CASES))
def test_an_unimportable_feature_library_is_one_line_naming_file_key_and_remedy(
    tmp_path: Path, module: str, command: str
) -> None:
    config, key, package = CASES[module]
    conf = tmp_path / "edge.toml"
    conf.write_text(config)
    args = [command, "-c", str(conf), *(RUN if command == "run" else [])]
    out = _cli(tmp_path, *args, env=_broken(tmp_path, module))
    assert out.returncode == 1, out
    assert out.stdout == ""
    assert out.stderr == (
        f"nats-edge: configuration error: {conf}: {key}: needs {package}, which cannot be imported "
        f"({module} is broken on this gateway); pip install {package}\n"
    )


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_ble_without_a_system_bus_is_refused(tmp_path: Path, command: str) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('[[adapters.demo]]\n[[adapters.ble]]\nname = "radio"\n[[adapters.ble]]\nenabled = false\n')
    bus = tmp_path / "no-bus"
    out = _cli(tmp_path, command, "-c", str(conf), *(RUN if command == "run" else []),
               env={"DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={bus}"})
    assert out.returncode == 1, out
    assert out.stderr == (
        f"nats-edge: configuration error: {conf}: [[adapters.ble]][0]: BLE needs the D-Bus system bus and BlueZ, "
        f"but there is no bus socket at {bus}; install and start them "
        "(apt install bluez dbus; systemctl start dbus bluetooth)\n"
    )


def test_a_reload_that_adds_an_unusable_feature_keeps_the_running_configuration(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text('server_name = "gw"\n')
    sp = start_nats_edge(tmp_path, "-c", str(conf), env=_broken(tmp_path, "serial"))
    try:
        conf.write_text('server_name = "gw"\n' + CASES["serial"][0])
        sp.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "Failed to reload" in sp.log(), START_TIMEOUT, "the reload to be refused")
        assert (f"[ERR] Failed to reload server configuration: {conf}: [[adapters.serial]][0]: needs pyserial, "
                "which cannot be imported (serial is broken on this gateway); pip install pyserial "
                "(keeping the running configuration)") in sp.log()
        assert sp.proc.poll() is None
    finally:
        assert sp.stop() == 0, sp.log()
    assert "Traceback" not in sp.log() and "Reloaded adapters" not in sp.log()


def test_check_config_passes_when_the_libraries_import(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text("".join(c for c, _, _ in CASES.values()))
    out = _cli(tmp_path, "check-config", "-c", str(conf))
    assert (out.returncode, out.stdout, out.stderr) == (0, f"configuration ok ({conf})\n", "")


def _run_until_ready(tmp_path: Path, *args: str, python: tuple[str, ...] = (), env: dict[str, str] | None = None,
                     cwd: Path | None = None) -> tuple[str, str]:
    """Start ``python -m edge run`` (logging to a file), wait until it is ready, stop it; (log, stderr)."""
    log = tmp_path / "edge.log"
    proc = subprocess.Popen([sys.executable, *python, "-m", "edge", "run", *RUN, "-l", str(log), *args],
                            cwd=cwd or tmp_path, env={**os.environ, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text() if log.exists() else proc.returncode
            return log.exists() and "Server is ready" in log.read_text()

        wait_for(ready, START_TIMEOUT, "the broker to be ready")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=STOP_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=STOP_TIMEOUT)
    assert proc.returncode == 0, log.read_text()
    return log.read_text(), stderr


def test_a_plain_broker_imports_no_feature_library(tmp_path: Path) -> None:
    """``-X importtime`` lists every module the process imported, up to the moment it is ready."""
    _, stderr = _run_until_ready(tmp_path, python=("-X", "importtime"))
    imported = {m.group(1).strip() for m in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|(.*)$", stderr, re.M)}
    assert "edge.runtime.broker" in imported  # the listing is real
    assert sorted(m for m in imported if m.split(".")[0] in FEATURE_MODULES) == []


@pytest.mark.parametrize("where", ["STATE_DIRECTORY", "XDG_STATE_HOME", "HOME"])
def test_the_outbox_defaults_to_a_state_directory_not_the_current_one(tmp_path: Path, where: str) -> None:
    state, xdg, home, cwd = tmp_path / "state", tmp_path / "xdg", tmp_path / "home", tmp_path / "cwd"
    cwd.mkdir()
    env = {"STATE_DIRECTORY": "", "XDG_STATE_HOME": "", "HOME": str(home)}  # empty = unset
    if where == "STATE_DIRECTORY":
        env["STATE_DIRECTORY"] = f"{state}:{tmp_path / 'second'}"  # systemd: one path per StateDirectory=
        expected, origin = state / "outbox", "$STATE_DIRECTORY"
    elif where == "XDG_STATE_HOME":
        env["XDG_STATE_HOME"] = str(xdg)
        expected, origin = xdg / "nats-edge" / "outbox", "$XDG_STATE_HOME"
    else:
        expected, origin = home / ".local" / "state" / "nats-edge" / "outbox", "the per-user state directory"
    conf = tmp_path / "edge.toml"
    conf.write_text('server_name = "gw"\n[store_forward]\nsubjects = ["telemetry.>"]\n')
    log, _ = _run_until_ready(tmp_path, "-c", str(conf), env=env, cwd=cwd)
    lines = [ln for ln in log.splitlines() if "Outbox directory" in ln]
    assert len(lines) == 1 and lines[0].endswith(f"Outbox directory {expected} (from {origin})"), log
    assert expected.is_dir() and any(expected.iterdir())
    assert list(cwd.iterdir()) == []
    assert not (tmp_path / "second").exists()
