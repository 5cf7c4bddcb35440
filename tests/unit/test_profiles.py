"""Hardware profile detection from fake device-tree model files, and every shipped profile validating."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.loader import available_profiles, load_settings, resolve_profile
from edge.config.profiles import detect_profile, profile_for_model, read_model

# Model strings as the Raspberry Pi firmware writes them (NUL-terminated).
BOARDS = [
    (b"Raspberry Pi Zero 2 W Rev 1.0\x00", "rpi-zero2w"),
    (b"Raspberry Pi 3 Model B Plus Rev 1.3\x00", "rpi-3bplus"),
    (b"Raspberry Pi 4 Model B Rev 1.4\x00", "rpi-4b"),
    (b"Raspberry Pi 5 Model B Rev 1.0\x00", "rpi-5"),
    (b"Raspberry Pi Compute Module 4 Rev 1.1\x00", "rpi-cm4"),
    (b"Raspberry Pi 3 Model B Rev 1.2\x00", "generic"),  # no profile of its own
    (b"Pine64 RockPro64 v2.1\x00", "generic"),
    (b"", "generic"),
]


@pytest.mark.parametrize(("model", "expected"), BOARDS)
def test_detect_profile_from_model_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: bytes, expected: str
) -> None:
    path = tmp_path / "model"
    path.write_bytes(model)
    monkeypatch.setenv("NATS_EDGE_DEVICE_MODEL_PATH", str(path))
    assert detect_profile() == expected
    name, file = resolve_profile("auto")
    assert name == expected
    assert Path(file).is_file()


def test_missing_model_file_is_generic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATS_EDGE_DEVICE_MODEL_PATH", str(tmp_path / "absent"))
    assert read_model() is None
    assert detect_profile() == "generic"


def test_model_read_is_bounded_and_tolerates_garbage(tmp_path: Path) -> None:
    path = tmp_path / "model"
    path.write_bytes(b"\xff\xfe" + b"x" * 100_000)
    model = read_model(path)
    assert model is not None and len(model) <= 256
    assert profile_for_model(model) == "generic"


def test_all_boards_have_profiles() -> None:
    assert {"generic", "rpi-zero2w", "rpi-3bplus", "rpi-4b", "rpi-5", "rpi-cm4"} <= set(available_profiles())


@pytest.mark.parametrize("name", ["generic", "rpi-zero2w", "rpi-3bplus", "rpi-4b", "rpi-5", "rpi-cm4"])
def test_each_profile_loads_and_validates(name: str) -> None:
    s = load_settings(profile=name)
    assert s.profile == name
    assert 0 < s.max_payload <= s.max_pending
    assert s.max_connections > 0
    if name != "generic":
        sf = s.sections["store_forward"]
        assert sf.max_bytes >= 2 * sf.segment_bytes
        assert 0 < sf.fsync_interval <= 1.0


def test_smaller_boards_get_smaller_limits() -> None:
    zero, pi5 = load_settings(profile="rpi-zero2w"), load_settings(profile="rpi-5")
    assert zero.max_pending < pi5.max_pending
    assert zero.max_connections < pi5.max_connections
    assert zero.sections["store_forward"].fsync_interval > pi5.sections["store_forward"].fsync_interval


def test_profile_adapter_defaults_fill_entries_and_entries_win(tmp_path: Path) -> None:
    conf = tmp_path / "edge.toml"
    conf.write_text(
        '[[adapters.serial]]\ndevice = "n1"\ncodec = "jsonl"\n'
        '[[adapters.serial]]\nport = "/dev/ttyUSB0"\ndevice = "n2"\ncodec = "lines"\n'
        'codec_options = { pattern = "(?P<t>.+)" }\n'
        "[[adapters.ble]]\n"
    )
    s = load_settings(conf, profile="rpi-zero2w")
    first, second, ble = (i.options for i in s.sections["adapters"].instances)
    assert (first.port, first.baudrate) == ("/dev/serial0", 115200)
    assert (second.port, second.baudrate) == ("/dev/ttyUSB0", 115200)
    assert (ble.adapter, ble.mode) == ("hci0", "passive")
    assert load_settings(profile="rpi-zero2w").sections["adapters"].enabled is False  # defaults enable nothing


@pytest.mark.parametrize(("table", "key", "needle"), [
    ('[adapters.defaults.nosuch]\nport = "x"\n', "adapters.defaults.nosuch", "unknown adapter kind 'nosuch'"),
    ('[adapters.defaults.serial]\nname = "x"\n', "adapters.defaults.serial.name", "is per instance"),
    ('[adapters.defaults.serial]\nbaudrate = "fast"\n[[adapters.serial]]\ndevice = "d"\ncodec = "jsonl"\n'
     'port = "/dev/x"\n', "adapters.serial[0].baudrate", ""),
])
def test_adapter_defaults_errors_name_file_and_key(tmp_path: Path, table: str, key: str, needle: str) -> None:
    from edge.errors import ConfigError

    conf = tmp_path / "edge.toml"
    conf.write_text(table)
    with pytest.raises(ConfigError) as info:
        load_settings(conf)
    assert str(info.value).startswith(f"{conf}: {key}: ") and needle in str(info.value)
