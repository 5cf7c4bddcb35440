"""The config loader: TOML, profiles, flags, and errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_settings
from edge.config.values import read_duration, read_size
from edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return p


def test_defaults_are_nats_server_defaults() -> None:
    s = load_settings()
    assert (s.host, s.port) == ("127.0.0.1", 4222)
    assert s.max_payload == 1048576
    assert s.max_control_line == 4096
    assert s.max_pending == 64 * 1024 * 1024
    assert s.max_connections == 65536
    assert s.ping_interval == 120.0
    assert s.ping_max == 2
    assert s.write_deadline == 10.0
    assert s.authorization.timeout == 2.0


def test_file_values_in_nats_server_spelling(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        'server_name = "gw1"\nlisten = "0.0.0.0:4333"\nmax_payload = "512KB"\nmax_pending = "8MB"\n'
        'ping_interval = "30s"\nwrite_deadline = "2.5s"\n[authorization]\nuser = "u"\npassword = "p"\n',
    )
    s = load_settings(p)
    assert (s.server_name, s.host, s.port) == ("gw1", "0.0.0.0", 4333)
    assert s.max_payload == 512 * 1024
    assert s.max_pending == 8 * 1024 * 1024
    assert s.ping_interval == 30.0
    assert s.write_deadline == 2.5
    assert (s.authorization.user, s.authorization.password) == ("u", "p")
    assert s.sources == [str(p)]


def test_flags_override_file_and_profile(tmp_path: Path) -> None:
    p = write(tmp_path, "port = 5000\nmax_payload = 1000\n")
    s = load_settings(p, profile="generic", overrides={"port": 6000})
    assert s.port == 6000
    assert s.max_payload == 1000
    assert s.profile == "generic"


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('max_payload = "lots"', "max_payload", 'expected a size such as 1048576 or "1MB"'),
        ("port = 70000", "port", "must be at most 65535"),
        ('ping_interval = "soon"', "ping_interval", "expected a duration"),
        ("prot = 4222", "prot", "unknown key"),
        ('[authorization]\nuser = "u"', "authorization.password", "a user needs a password"),
        ('[authorization]\ntoken = "t"\nuser = "u"\npassword = "p"', "authorization", "not both"),
        ("max_payload = 2000000\nmax_pending = 1000000", "max_payload", "larger than max_pending"),
        ("authorization = 5", "authorization", "expected a table"),
        ('[authorization]\nusr = "u"', "authorization.usr", "unknown key"),
        ("debug = 3", "debug", "expected true or false"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, text: str, key: str, problem: str) -> None:
    p = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.source == str(p)
    assert exc.value.key == key
    assert problem in exc.value.problem
    assert str(exc.value).startswith(f"{p}: {key}: ")


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "port = \n")
    with pytest.raises(ConfigError) as exc:
        load_settings(p)
    assert exc.value.source == str(p)
    assert exc.value.key == "(syntax)"
    assert "line 1" in exc.value.problem


def test_missing_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path / "nope.toml")
    assert "no such file" in str(exc.value)
    with pytest.raises(ConfigError) as exc2:
        load_settings(profile="toaster")
    assert "unknown hardware profile 'toaster'" in str(exc2.value)
    assert "generic" in str(exc2.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [(1048576, 1048576), ("1MB", 1048576), ("1mb", 1048576), ("64k", 64000), ("4KiB", 4096), ("2G", 2 * 10**9)],
)
def test_sizes(text: object, value: int) -> None:
    assert read_size(text) == value


@pytest.mark.parametrize(
    ("text", "value"), [(10, 10.0), ("2m", 120.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0)]
)
def test_durations(text: object, value: float) -> None:
    assert read_duration(text) == value
