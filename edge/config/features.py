"""Can every configured feature actually work here? Checked by ``check-config``, ``run`` and a SIGHUP reload.

The libraries a feature needs (pyserial, bleak, zeroconf, bcrypt, nkeys, aiofiles) are dependencies of
the package, but each is imported only when its feature is configured, so a broken or partial install
would otherwise surface late: as a traceback at start, or as an adapter that restarts forever. This
module finds the first configured feature that cannot work and raises one :class:`ConfigError` naming
the file, the config key and the remedy, e.g.::

    edge.toml: [[adapters.serial]][0]: needs pyserial, which cannot be imported (No module named 'serial'); \
pip install pyserial

Importing a module to check it costs nothing extra: the feature imports it moments later anyway, and
features that are not configured import nothing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from edge.config.settings import Settings, is_bcrypt
from edge.errors import ConfigError

__all__ = ["Requirement", "check_features", "requirements"]

# dbus-fast's default when DBUS_SYSTEM_BUS_ADDRESS is not set (as libdbus's).
DEFAULT_SYSTEM_BUS: Final = "unix:path=/var/run/dbus/system_bus_socket"


@dataclass(frozen=True, slots=True)
class Requirement:
    """``key`` (as the operator writes it) needs ``module``, installed by ``pip install <package>``."""

    key: str
    module: str
    package: str


def requirements(settings: Settings) -> Iterator[Requirement]:
    """The modules the configured features need, in config order (pure: imports nothing)."""
    auth = settings.authorization
    for name in ("password", "token"):
        if is_bcrypt(getattr(auth, name)):
            yield Requirement(f"authorization.{name}", "bcrypt", "bcrypt")
    for i, user in enumerate(auth.users):
        if is_bcrypt(user.password):
            yield Requirement(f"authorization.users[{i}].password", "bcrypt", "bcrypt")
        if user.nkey is not None:
            yield Requirement(f"authorization.users[{i}].nkey", "nkeys", "nkeys")
    if settings.ports_file_dir:
        yield Requirement("ports_file_dir", "aiofiles", "aiofiles")
    leaf = settings.sections.get("leafnodes")
    for i, remote in enumerate(getattr(leaf, "remotes", ())):
        for name in ("credentials", "nkey"):
            if getattr(remote, name):
                yield Requirement(f"leafnodes.remotes[{i}].{name}", "nkeys", "nkeys")
                yield Requirement(f"leafnodes.remotes[{i}].{name}", "aiofiles", "aiofiles")
    mdns = settings.sections.get("mdns")
    if mdns is not None and mdns.enabled:
        yield Requirement("[mdns]", "zeroconf", "zeroconf")
    for key, inst in _enabled_adapters(settings):
        if inst.kind == "serial":
            yield Requirement(key, "serial", "pyserial")
        elif inst.kind == "ble":
            yield Requirement(key, "bleak", "bleak")
            if any(getattr(d, "key", None) for d in getattr(inst.options, "devices", ())):
                yield Requirement(key, "cryptography.hazmat.primitives.ciphers.aead", "cryptography")


def check_features(settings: Settings) -> None:
    """Raise :class:`ConfigError` for the first configured feature that cannot work on this machine."""
    source = settings.sources[-1] if settings.sources else "command line"
    for req in requirements(settings):
        try:
            importlib.import_module(req.module)
        except Exception as exc:  # ImportError, or whatever a broken install raises while importing
            raise ConfigError(
                source, req.key,
                f"needs {req.package}, which cannot be imported ({_one_line(exc)}); pip install {req.package}",
            ) from None
    ble = next((key for key, inst in _enabled_adapters(settings) if inst.kind == "ble"), None)
    if ble is not None:
        problem = _system_bus_problem(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_SYSTEM_BUS)
        if problem:
            raise ConfigError(source, ble, problem)


def _enabled_adapters(settings: Settings) -> Iterator[tuple[str, Any]]:
    """(key, instance) of each enabled adapter; the key counts the kind's tables as the file lists them."""
    index: dict[str, int] = {}
    for inst in getattr(settings.sections.get("adapters"), "instances", ()):
        i = index[inst.kind] = index.get(inst.kind, -1) + 1
        if inst.enabled:
            yield f"[[adapters.{inst.kind}]][{i}]", inst


def _system_bus_problem(address: str) -> str | None:
    """Why BlueZ cannot be reached at this D-Bus ``address``, or None when its socket exists (or cannot be
    checked: abstract sockets and TCP addresses are left to bleak)."""
    last = address
    for part in address.split(";"):
        transport, _, params = part.partition(":")
        if transport != "unix":
            return None
        fields = dict(kv.split("=", 1) for kv in params.split(",") if "=" in kv)
        path = fields.get("path")
        if path is None or os.path.exists(path):
            return None
        last = path
    return (f"BLE needs the D-Bus system bus and BlueZ, but there is no bus socket at {last}; "
            "install and start them (apt install bluez dbus; systemctl start dbus bluetooth)")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
