"""Load settings from a hardware profile, a TOML file and command-line overrides, in that order.

Precedence (lowest first): built-in defaults, the hardware profile (``hw_profiles/<name>.toml``), the
config file (``-c``), then flags. Every error names where the value came from and the key, e.g.
``/etc/nats-edge/edge.toml: max_payload: expected a size such as 1048576 or "1MB", got "lots"``, and
nothing is half-applied: either a whole :class:`Settings` comes back or :class:`ConfigError` is raised.
Unknown keys are errors too, because a misspelt limit silently left at its default is worse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from edge.config import values as v
from edge.config.sections import SECTION_CHECKS, SECTION_MODULES, SECTIONS, KeyReporter, section_parser
from edge.config.settings import MAX_PAYLOAD_LIMIT, AuthorizationSettings, Settings
from edge.errors import ConfigError


@dataclass(frozen=True, slots=True)
class _Key:
    reader: Callable[..., Any]
    attr: str
    kwargs: tuple[tuple[str, Any], ...] = ()


# Top-level keys, named as in nats-server's config where the concept is the same.
_SERVER_KEYS: Final[dict[str, _Key]] = {
    "server_name": _Key(v.read_str, "server_name"),
    "host": _Key(v.read_str, "host"),
    "net": _Key(v.read_str, "host"),
    "port": _Key(v.read_port, "port"),
    "http_host": _Key(v.read_str, "http_host"),
    "http_port": _Key(v.read_port, "http_port"),
    "monitor_port": _Key(v.read_port, "http_port"),
    "max_payload": _Key(v.read_size, "max_payload", (("minimum", 1), ("maximum", MAX_PAYLOAD_LIMIT))),
    "max_control_line": _Key(v.read_size, "max_control_line", (("minimum", 32), ("maximum", 1 << 24))),
    "max_pending": _Key(v.read_size, "max_pending", (("minimum", 1024),)),
    "max_connections": _Key(v.read_int, "max_connections", (("minimum", 0),)),
    "max_subscriptions": _Key(v.read_int, "max_subscriptions", (("minimum", 0),)),
    "max_closed_clients": _Key(v.read_int, "max_closed_clients", (("minimum", 0), ("maximum", 1_000_000))),
    "ping_interval": _Key(v.read_duration, "ping_interval", (("minimum", 0.01),)),
    "ping_max": _Key(v.read_int, "ping_max", (("minimum", 1),)),
    "write_deadline": _Key(v.read_duration, "write_deadline", (("minimum", 0.001),)),
    "lame_duck_duration": _Key(v.read_duration, "lame_duck_duration", (("minimum", 0.0),)),
    "lame_duck_grace_period": _Key(v.read_duration, "lame_duck_grace_period", (("minimum", 0.0),)),
    "debug": _Key(v.read_bool, "debug"),
    "trace": _Key(v.read_bool, "trace"),
    "logtime": _Key(v.read_bool, "logtime"),
    "log_file": _Key(v.read_str, "log_file"),
    "ports_file_dir": _Key(v.read_str, "ports_file_dir"),
    "state_dir": _Key(v.read_str, "state_dir"),
}
_COMPOUND_KEYS: Final = frozenset({"listen", "http", "authorization"})
_AUTH_KEYS: Final = frozenset({"user", "password", "token", "timeout", "users", "no_auth_user"})

# Keys a hardware profile may carry besides server keys and sections (its own description).
_PROFILE_META_KEYS: Final = frozenset({"profile"})


def profiles_dir() -> str:
    """Where the hardware profiles are: installed inside the package, or the source tree's top level."""
    override = os.environ.get("NATS_EDGE_PROFILES_DIR")
    if override:
        return override
    # os.path rather than pathlib: pathlib (with urllib and ipaddress) costs ~0.7 MB of RSS.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(here, "_data", "hw_profiles")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(here), "hw_profiles")


def available_profiles() -> list[str]:
    d = profiles_dir()
    if not os.path.isdir(d):
        return []
    return sorted(f[: -len(".toml")] for f in os.listdir(d) if f.endswith(".toml"))


def read_toml(path: str | os.PathLike[str], source: str | None = None) -> dict[str, Any]:
    """Parse a TOML file; syntax errors become ConfigError with the file and TOML's line/column."""
    import tomllib  # only when there is a file to read: it costs ~0.7 MB of RSS

    source = source or str(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(source, "(file)", "no such file") from None
    except PermissionError:
        raise ConfigError(source, "(file)", "permission denied") from None
    except IsADirectoryError:
        raise ConfigError(source, "(file)", "is a directory, expected a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "(syntax)", str(exc)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "(syntax)", f"not UTF-8 text: {exc}") from None


def resolve_profile(name: str) -> tuple[str, str]:
    """Map a profile name (or ``auto``) to its file. ``auto`` is resolved by edge.config.profiles."""
    if name == "auto":
        from edge.config.profiles import detect_profile

        name = detect_profile()
    path = os.path.join(profiles_dir(), f"{name}.toml")
    if not os.path.isfile(path):
        known = ", ".join(available_profiles()) or "none installed"
        raise ConfigError("--profile", "profile", f"unknown hardware profile {name!r} (known: {known})")
    return name, path


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Build validated settings. Raises :class:`ConfigError` naming the source and key on any problem."""
    settings = Settings()
    if profile:
        name, path = resolve_profile(profile)
        settings.profile = name
        raw = read_toml(path)
        _apply_table(settings, raw, KeyReporter(str(path)), is_profile=True)
        settings.sources.append(str(path))
    if config_file is not None:
        path = os.fspath(config_file)
        raw = read_toml(path)
        _apply_table(settings, raw, KeyReporter(str(path)), is_profile=False)
        settings.sources.append(str(path))
    if overrides:
        _apply_table(settings, overrides, KeyReporter("command line"), is_profile=False)
    _check_consistency(settings, KeyReporter(settings.sources[-1] if settings.sources else "settings"))
    return settings


def _apply_table(settings: Settings, raw: dict[str, Any], rep: KeyReporter, *, is_profile: bool) -> None:
    for name, value in raw.items():
        if name in _SERVER_KEYS:
            spec = _SERVER_KEYS[name]
            setattr(settings, spec.attr, rep.read(raw, name, spec.reader, **dict(spec.kwargs)))
        elif name == "listen":
            settings.host, settings.port = _read_host_port(raw, name, rep)
        elif name == "http":
            settings.http_host, settings.http_port = _read_host_port(raw, name, rep)
        elif name == "authorization":
            _apply_authorization(settings.authorization, rep.require_table(value, name), rep.child(name))
        elif (parse_section := section_parser(name)) is not None:
            table = rep.require_table(value, name)
            previous = settings.sections.get(name)
            settings.sections[name] = parse_section(_merge(previous, table), rep.child(name))
        elif is_profile and name in _PROFILE_META_KEYS:
            continue
        else:
            known = set(_SERVER_KEYS) | _COMPOUND_KEYS | set(SECTIONS) | set(SECTION_MODULES)
            raise rep.error(name, f"unknown key (known keys: {', '.join(sorted(known))})")


def _merge(previous: Any, table: dict[str, Any]) -> dict[str, Any]:
    """A later source's section table overlays the earlier one's raw keys (profile < file < flags)."""
    raw_previous = getattr(previous, "raw", None)
    if isinstance(raw_previous, dict):
        merged = dict(raw_previous)
        merged.update(table)
        return merged
    return table


def _read_host_port(raw: dict[str, Any], name: str, rep: KeyReporter) -> tuple[str, int]:
    value = raw[name]
    if not isinstance(value, str) or ":" not in value:
        raise rep.error(name, f"expected \"host:port\", got {value!r}")
    host, _, port_text = value.rpartition(":")
    try:
        port = v.read_port(int(port_text))
    except ValueError:
        raise rep.error(name, f"expected \"host:port\" with a numeric port, got {value!r}") from None
    return host.strip("[]") or "0.0.0.0", port


def _apply_authorization(auth: AuthorizationSettings, table: dict[str, Any], rep: KeyReporter) -> None:
    rep.reject_unknown(table, _AUTH_KEYS)
    if "user" in table:
        auth.user = rep.read(table, "user", v.read_str)
    if "password" in table:
        auth.password = rep.read(table, "password", v.read_str, allow_empty=True)
    if "token" in table:
        auth.token = rep.read(table, "token", v.read_str)
    if "timeout" in table:
        auth.timeout = rep.read(table, "timeout", v.read_duration, minimum=0.01)
    if "users" in table:
        from edge.config.security import parse_users

        auth.users = parse_users(table["users"], rep)
    if "no_auth_user" in table:
        auth.no_auth_user = rep.read(table, "no_auth_user", v.read_str)


def _check_consistency(settings: Settings, rep: KeyReporter) -> None:
    auth = settings.authorization
    if auth.user is not None and auth.token is not None:
        raise rep.error("authorization", "set either user/password or token, not both")
    if auth.user is not None and auth.password is None:
        raise rep.error("authorization.password", "a user needs a password")
    if auth.password is not None and auth.user is None:
        raise rep.error("authorization.user", "a password needs a user")
    if auth.users or auth.no_auth_user is not None:
        from edge.config.security import check_users

        check_users(auth, rep)
    for name, section in settings.sections.items():  # e.g. a serial port's or [mqtt]'s user must exist
        check = SECTION_CHECKS.get(name)
        if check is not None:
            check(section, settings, rep)
    if settings.max_payload > settings.max_pending:
        raise rep.error("max_payload", f"{settings.max_payload} is larger than max_pending ({settings.max_pending})")
    if settings.http_port and settings.http_port == settings.port and settings.port > 0:
        raise rep.error("http_port", f"the monitoring port {settings.http_port} is also the client port")
    if settings.http_port or "monitoring" in settings.sections:
        from edge.config.monitoring import check_monitoring  # LAN bind needs auth; auth needs users

        check_monitoring(settings, rep)
