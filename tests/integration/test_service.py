"""The systemd unit as shipped and as `nats-edge service install --root` writes it, checked by systemd-analyze."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "nats-edge.service"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edge", *args], capture_output=True, text=True, timeout=60,
                          env=full, check=False)


def verify(path: Path) -> None:
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0 and "nats-edge" not in proc.stderr, proc.stderr


def test_shipped_unit_verifies_and_has_the_essentials() -> None:
    verify(UNIT)
    text = UNIT.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=", "Restart=on-failure", "StateDirectory=",
                 "ConfigurationDirectory=", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem=strict",
                 "ProtectHome=yes", "PrivateTmp=yes", "NoNewPrivileges=yes", "SystemCallFilter=@system-service"):
        assert line in text, line


def test_install_into_root_writes_a_verifiable_unit_and_is_idempotent(opt_dir: Path, tmp_path: Path) -> None:
    # Installed where a gateway's would be (under /opt), wherever this checkout happens to live.
    venv = make_venv(opt_dir)
    src = copy_source(opt_dir)
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    root = tmp_path / "root"
    env = {"NATS_EDGE_DEVICE_MODEL_PATH": str(model)}

    def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return venv_cli(venv, *args, src=src, env=env)

    dry = cli("service", "install", "--root", str(root), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would write" in dry.stdout and not root.exists()
    first = cli("service", "install", "--root", str(root), env=env)
    assert first.returncode == 0, first.stderr
    assert "using 'rpi-4b'" in first.stdout
    unit = root / "etc/systemd/system/nats-edge.service"
    verify(unit)
    text = unit.read_text()
    assert f"ExecStart={venv}/bin/python -m edge run" in text and "NATS_EDGE_PROFILE=rpi-4b" in text
    assert (root / "etc/systemd/system/multi-user.target.wants/nats-edge.service").is_symlink()
    assert "nats-edge:" in (root / "etc/passwd").read_text()
    config = root / "etc/nats-edge/nats-edge.toml"
    check = cli("check-config", "-c", str(config), "--profile", "rpi-4b")
    assert check.returncode == 0, check.stderr
    # Idempotent: a second run changes nothing that is already right and keeps an edited config.
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    second = cli("service", "install", "--root", str(root), env=env)
    assert second.returncode == 0, second.stderr
    assert "= write" in second.stdout and "edited by the operator" in config.read_text()
    verify(unit)
    # Uninstall removes the unit and its enablement, keeps config and state.
    rm = cli("service", "uninstall", "--root", str(root))
    assert rm.returncode == 0, rm.stderr
    assert not unit.exists() and config.exists() and (root / "var/lib/nats-edge").is_dir()
    assert not (root / "etc/systemd/system/multi-user.target.wants/nats-edge.service").exists()
    again = cli("service", "uninstall", "--root", str(root))
    assert again.returncode == 0, again.stderr


def test_install_with_unknown_profile_fails_cleanly(tmp_path: Path) -> None:
    proc = cli("service", "install", "--root", str(tmp_path / "r"), "--profile", "toaster")
    assert proc.returncode == 1 and "unknown hardware profile 'toaster'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "r").exists()


def make_venv(parent: Path) -> Path:
    """A real venv (no pip: fast) under ``parent``; edge comes through PYTHONPATH (see :func:`venv_cli`)."""
    venv = parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv


def copy_source(parent: Path) -> Path:
    """A copy of the package and its data under ``parent``: where the installation lives is part of what
    ``service install`` checks, so the tests decide it, not the place this checkout was cloned to."""
    src = parent / "src"
    for name in ("edge", "firmware_bridge", "hw_profiles", "systemd"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    return src


def venv_cli(venv: Path, *args: str, src: Path = REPO,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(src), **(env or {}))
    # cwd too: ``python -m`` puts the working directory first on sys.path, ahead of PYTHONPATH.
    return subprocess.run([str(venv / "bin" / "python"), "-m", "edge", *args], capture_output=True, text=True,
                          timeout=60, env=full, check=False, cwd=src)


@pytest.fixture
def opt_dir() -> Iterator[Path]:
    """A temporary directory under /opt (where the README suggests installing), removed afterwards."""
    try:
        os.makedirs("/opt", exist_ok=True)
        path = Path(tempfile.mkdtemp(dir="/opt", prefix="nats-edge-test-"))
    except OSError as exc:
        pytest.skip(f"cannot create a directory under /opt: {exc}")
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def home_dir() -> Iterator[Path]:
    """A temporary directory under /home (what ProtectHome=yes hides), removed afterwards."""
    try:
        path = Path(tempfile.mkdtemp(dir="/home", prefix="nats-edge-test-"))
    except OSError as exc:
        pytest.skip(f"cannot create a directory under /home: {exc}")
    yield path
    shutil.rmtree(path)


def test_install_from_a_venv_under_home_adds_a_protect_home_dropin(home_dir: Path, tmp_path: Path) -> None:
    venv = make_venv(home_dir)
    src = copy_source(home_dir)
    root = tmp_path / "root"
    proc = venv_cli(venv, "service", "install", "--root", str(root), "--profile", "generic", src=src)
    assert proc.returncode == 0, proc.stderr
    unit = root / "etc/systemd/system/nats-edge.service"
    dropin = root / "etc/systemd/system/nats-edge.service.d/venv.conf"
    assert f"ExecStart={venv}/bin/python -m edge run" in unit.read_text()
    assert "ProtectHome=yes" in unit.read_text()  # the shipped hardening stays; the drop-in relaxes it
    text = dropin.read_text()
    assert "[Service]\nProtectHome=read-only\n" in text and str(venv) in text
    assert f"this installation is under /home ({venv}/bin/python)" in proc.stdout
    assert f"write {dropin}" in proc.stdout
    # mkdtemp made the directory 0700: the service user could not enter it, and the output says so.
    assert f"! {home_dir} is closed to other users (mode 700)" in proc.stdout
    verify(unit)  # loads nats-edge.service.d/ too: a bad drop-in line would be reported here
    again = venv_cli(venv, "service", "install", "--root", str(root), "--profile", "generic", src=src)
    assert again.returncode == 0 and f"= write {dropin} (already done)" in again.stdout, again.stdout
    rm = venv_cli(venv, "service", "uninstall", "--root", str(root), src=src)
    assert rm.returncode == 0, rm.stderr
    assert not dropin.exists() and not dropin.parent.exists() and not unit.exists()


def test_install_from_a_venv_under_tmp_is_refused(tmp_path: Path) -> None:
    venv = make_venv(tmp_path)
    assert str(venv).startswith(("/tmp/", "/var/tmp/")), venv  # pytest's tmp_path is under /tmp here
    root = tmp_path / "root"
    proc = venv_cli(venv, "service", "install", "--root", str(root), "--profile", "generic")
    assert proc.returncode == 1, proc.stdout
    line = f"nats-edge: this installation is under {venv}/bin, which the unit's PrivateTmp=yes hides"
    assert line in proc.stderr and "Traceback" not in proc.stderr
    assert not root.exists()  # refused before writing anything
