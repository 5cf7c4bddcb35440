"""``nats-edge service install|uninstall``: put the broker under systemd on a gateway.

install writes, under ``--root`` (default ``/``):
- ``etc/systemd/system/nats-edge.service``: the shipped unit with ExecStart pointing at this
  installation (``<python> -m edge``) and ``NATS_EDGE_PROFILE`` set to the chosen profile;
- ``etc/systemd/system/nats-edge.service.d/venv.conf``, only when this installation (interpreter, venv
  or the edge package) lives under /home, /root or /run/user, which the unit's ``ProtectHome=yes``
  hides: the drop-in relaxes exactly that to ``ProtectHome=read-only``. An installation under /tmp or
  /var/tmp is refused: ``PrivateTmp=yes`` gives the service an empty /tmp of its own, and relaxing it
  would not help for long, since /tmp is emptied at boot;
- ``usr/lib/sysusers.d/nats-edge.conf``: the service user and its groups (dialout, bluetooth), then
  runs ``systemd-sysusers`` to create them;
- ``etc/nats-edge/nats-edge.toml``: a starter config, only if none exists (never overwritten);
- ``var/lib/nats-edge``: the state directory (systemd's StateDirectory= also creates it at start);
then ``systemctl enable`` (``--root`` given: offline, no start) or ``enable --now``.
Every step is idempotent: files whose content is already right are left alone. ``--dry-run`` only
prints the steps. uninstall disables and stops the unit and removes the unit, drop-in and sysusers
files, and keeps configuration and state (the outbox may hold undelivered data) unless ``--purge``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from edge.errors import EdgeError

__all__ = ["ServiceError", "install", "starter_config", "uninstall", "unit_text"]

UNIT_NAME: Final = "nats-edge.service"
UNIT_PATH: Final = "etc/systemd/system/nats-edge.service"
DROPIN_PATH: Final = "etc/systemd/system/nats-edge.service.d/venv.conf"
# What the unit's sandbox hides: ProtectHome=yes makes these empty, PrivateTmp=yes replaces these.
HOME_DIRS: Final = ("/home", "/root", "/run/user")
TMP_DIRS: Final = ("/tmp", "/var/tmp")
SYSUSERS_PATH: Final = "usr/lib/sysusers.d/nats-edge.conf"
CONFIG_PATH: Final = "etc/nats-edge/nats-edge.toml"
STATE_DIR: Final = "var/lib/nats-edge"
COMMAND_TIMEOUT: Final = 60.0


class ServiceError(EdgeError):
    """An install/uninstall step failed (the message says which and why)."""


@dataclass
class Plan:
    """The steps to run, each a description and an action; ``run()`` prints and (unless dry) executes."""

    dry_run: bool
    out: Callable[[str], None] = print
    steps: list[tuple[str, Callable[[], None] | None]] = field(default_factory=list)

    def add(self, text: str, action: Callable[[], None] | None) -> None:
        self.steps.append((text, action))

    def run(self) -> None:
        for text, action in self.steps:
            if action is None:
                self.out(f"  = {text} (already done)")
                continue
            self.out(f"  {'would ' if self.dry_run else ''}{text}")
            if not self.dry_run:
                action()


def _data_dir(name: str) -> Path:
    here = Path(__file__).resolve().parent.parent
    installed = here / "_data" / name
    return installed if installed.is_dir() else here.parent / name


def unit_text(profile: str, exec_prefix: str | None = None) -> str:
    """The shipped unit with ExecStart bound to this installation and the profile filled in."""
    text = (_data_dir("systemd") / UNIT_NAME).read_text()
    exec_prefix = exec_prefix or f"{sys.executable} -m edge"
    text = text.replace("ExecStart=/usr/bin/env nats-edge run", f"ExecStart={exec_prefix} run")
    return text.replace("Environment=NATS_EDGE_PROFILE=auto", f"Environment=NATS_EDGE_PROFILE={profile}")


def installation_paths() -> list[Path]:
    """What the service must read to start: the interpreter, the environment (venv) and its base, and
    the edge package (an editable install's is in the clone); each as written and with symlinks resolved."""
    import edge

    paths = [Path(sys.executable), Path(sys.prefix), Path(sys.base_prefix), Path(edge.__file__).parent]
    out: list[Path] = []
    for p in paths + [p.resolve() for p in paths]:
        if p not in out:
            out.append(p)
    return out


def _under(path: Path, dirs: tuple[str, ...]) -> str | None:
    for d in dirs:
        if path == Path(d) or Path(d) in path.parents:
            return d
    return None


def venv_dropin(paths: list[Path]) -> str | None:
    """The drop-in this installation needs, or None. Raises ServiceError for one under /tmp."""
    for p in paths:
        if _under(p, TMP_DIRS):
            raise ServiceError(
                f"this installation is under {p.parent if p.is_file() else p}, which the unit's PrivateTmp=yes "
                "hides from the service (and /tmp is emptied at boot); install nats-edge elsewhere, e.g. "
                "python3 -m venv /opt/nats-edge && /opt/nats-edge/bin/pip install <nats-edge>"
            )
    home = [p for p in paths if _under(p, HOME_DIRS)]
    if not home:
        return None
    return (
        "# Written by `nats-edge service install`: this installation lives under "
        f"{_under(home[0], HOME_DIRS)}\n"
        f"# ({home[0]}), which ProtectHome=yes hides from the service. Read-only access is all it needs.\n"
        "[Service]\nProtectHome=read-only\n"
    )


def _unreadable_dirs(paths: list[Path]) -> list[Path]:
    """Directories above the installation that other users (the service's user) cannot enter."""
    bad: list[Path] = []
    for p in paths:
        for d in reversed(p.parents if p.is_file() else [p, *p.parents]):
            try:
                mode = d.stat().st_mode
            except OSError:
                continue
            if not mode & 0o001 and d not in bad:
                bad.append(d)
    return bad


def starter_config(profile: str) -> str:
    """A config that ``nats-edge check-config -c`` accepts; limits come from the hardware profile."""
    return f"""# nats-edge configuration (TOML). Limits, outbox size and fsync cadence come from the hardware
# profile ({profile}, see hw_profiles/); values set here override it. Reload with
# `systemctl reload nats-edge` (SIGHUP): limits, authorization and log level apply without dropping clients.

server_name = "{os.uname().nodename or 'edge'}"
# Local clients only by default; use "0.0.0.0:4222" to serve the LAN (and set authorization below).
listen = "127.0.0.1:4222"
# Monitoring (/varz /connz /subsz /leafz /healthz /metrics /devicez), loopback only.
http = "127.0.0.1:8222"
# The outbox lives here (systemd's StateDirectory=).
state_dir = "/var/lib/nats-edge"
# Logs go to the journal: `journalctl -u nats-edge`.
debug = false

# [authorization]
# user = "gateway"
# password = "change-me"
"""


def _write(path: Path, text: str, mode: int = 0o644) -> Callable[[], None]:
    def action() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(mode)
        os.replace(tmp, path)

    return action


def _run(*argv: str) -> Callable[[], None]:
    def action() -> None:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServiceError(f"{' '.join(argv)}: {exc}") from None
        if proc.returncode != 0:
            raise ServiceError(f"{' '.join(argv)} exited with {proc.returncode}: {proc.stderr.strip()}")

    return action


def _rmdir_if_empty(path: Path) -> None:
    if not any(path.iterdir()):
        path.rmdir()


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False


def _resolve_profile(profile: str, out: Callable[[str], None]) -> str:
    from edge.config.loader import resolve_profile
    from edge.config.profiles import DEVICE_MODEL_PATH, read_model

    name, _path = resolve_profile(profile)  # raises ConfigError for an unknown profile
    if profile == "auto":
        model = read_model()
        path = os.environ.get("NATS_EDGE_DEVICE_MODEL_PATH") or DEVICE_MODEL_PATH
        out(f"profile auto: {path} reads {model!r}, using {name!r}" if model else
            f"profile auto: no device-tree model at {path}, using {name!r}")
    return name


def install(
    root: str = "/", profile: str = "auto", *, dry_run: bool = False, out: Callable[[str], None] = print
) -> int:
    """Install (idempotently) under ``root``; returns 0. Raises ServiceError/ConfigError on failure."""
    rootp = Path(root)
    offline = rootp.resolve() != Path("/")
    name = _resolve_profile(profile, out)
    plan = Plan(dry_run, out)
    out(f"{'Dry run: ' if dry_run else ''}installing nats-edge (profile {name}) under {rootp}")
    unit = rootp / UNIT_PATH
    text = unit_text(name)
    plan.add(f"write {unit}", None if _same(unit, text) else _write(unit, text))
    paths = installation_paths()
    dropin_text = venv_dropin(paths)  # raises for an installation the service could never see
    dropin = rootp / DROPIN_PATH
    if dropin_text is not None:
        home = [p for p in paths if _under(p, HOME_DIRS)]
        out(f"  ! this installation is under {_under(home[0], HOME_DIRS)} ({home[0]}), which the unit's "
            f"ProtectHome=yes hides: the drop-in {dropin.name} sets ProtectHome=read-only")
        plan.add(f"write {dropin}", None if _same(dropin, dropin_text) else _write(dropin, dropin_text))
        for d in _unreadable_dirs(home):
            out(f"  ! {d} is closed to other users (mode {d.stat().st_mode & 0o777:o}): the nats-edge user "
                f"cannot reach the installation; `chmod o+x {d}` or install under /opt")
    elif dropin.exists():
        plan.add(f"remove {dropin} (this installation is not under a home directory)", dropin.unlink)
    sysusers = rootp / SYSUSERS_PATH
    users_text = (_data_dir("systemd") / "nats-edge.sysusers").read_text()
    plan.add(f"write {sysusers}", None if _same(sysusers, users_text) else _write(sysusers, users_text))
    if shutil.which("systemd-sysusers"):
        argv = ["systemd-sysusers"] + ([f"--root={rootp}"] if offline else []) + [str(sysusers)]
        plan.add(f"create the service user: {' '.join(argv)}", _run(*argv))
    else:
        out("  ! systemd-sysusers not found: create user nats-edge (groups dialout, bluetooth) by hand")
    config = rootp / CONFIG_PATH
    plan.add(f"write starter config {config}",
             None if config.exists() else _write(config, starter_config(name), 0o640))
    state = rootp / STATE_DIR
    plan.add(f"create {state}", None if state.is_dir() else lambda: state.mkdir(parents=True, mode=0o750))
    if offline:
        plan.add(f"enable {UNIT_NAME} (offline: systemctl --root)",
                 _run("systemctl", f"--root={rootp}", "enable", UNIT_NAME))
    else:
        plan.add("systemctl daemon-reload", _run("systemctl", "daemon-reload"))
        plan.add(f"enable and start {UNIT_NAME}", _run("systemctl", "enable", "--now", UNIT_NAME))
    plan.run()
    return 0


def uninstall(
    root: str = "/", *, purge: bool = False, dry_run: bool = False, out: Callable[[str], None] = print
) -> int:
    """Disable/stop and remove the unit (idempotent); config and state only with ``purge``."""
    rootp = Path(root)
    offline = rootp.resolve() != Path("/")
    plan = Plan(dry_run, out)
    unit = rootp / UNIT_PATH
    if unit.exists():
        if offline:
            plan.add(f"disable {UNIT_NAME}", _run("systemctl", f"--root={rootp}", "disable", UNIT_NAME))
        else:
            plan.add(f"disable and stop {UNIT_NAME}", _run("systemctl", "disable", "--now", UNIT_NAME))
    targets = [unit, rootp / DROPIN_PATH, rootp / SYSUSERS_PATH]
    if purge:
        targets += [rootp / CONFIG_PATH]
    for path in targets:
        plan.add(f"remove {path}", path.unlink if path.exists() else None)
    dropin_dir = (rootp / DROPIN_PATH).parent
    if dropin_dir.is_dir():  # kept if `systemctl edit` put an override.conf there
        plan.add(f"remove {dropin_dir} if empty", lambda: _rmdir_if_empty(dropin_dir))
    if purge:
        state = rootp / STATE_DIR
        plan.add(f"remove {state} (outbox data!)", (lambda: shutil.rmtree(state)) if state.exists() else None)
    if not offline and unit.exists():
        plan.add("systemctl daemon-reload", _run("systemctl", "daemon-reload"))
    out(f"{'Dry run: ' if dry_run else ''}uninstalling nats-edge under {rootp}")
    plan.run()
    return 0
