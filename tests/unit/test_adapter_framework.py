"""Adapter framework units: config parsing/errors, subject tokens and timestamps, lazy imports, the
frames op splitter, and the supervisor's restart with backoff."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from edge.adapters.base import Supervisor, format_ts, sanitize_token
from edge.adapters.serial.adapter import OpSplitter
from edge.config import load_settings
from edge.errors import ConfigError


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return load_settings(p)


def test_serial_config_parsed(tmp_path: Path) -> None:
    s = _load(tmp_path, '[[adapters.serial]]\nport = "/dev/serial/by-id/usb-x"\ncodec = "jsonl"\n'
                        'codec_options = { device_field = "id" }\nsubjects = { reading = "s.{device}.{channel}" }\n')
    inst = s.sections["adapters"].instances[0]
    assert inst.kind == "serial" and inst.name == "serial0" and inst.options.device == "usb-x"
    assert inst.templates == {"reading": "s.{device}.{channel}"}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[[adapters.serial]]\ncodec = "jsonl"\n', "adapters.serial[0].port"),
        ('[[adapters.serial]]\nport = "/x"\ncodec = "morse"\n', "adapters.serial[0].codec"),
        ('[[adapters.serial]]\nport = "/x"\ncodec = "jsonl"\nbaud = 9600\n', "adapters.serial[0].baud"),
        ('[[adapters.serial]]\nport = "/x"\ncodec = "lines"\n', "adapters.serial[0].codec_options.pattern"),
        ('[[adapters.serial]]\nport = "/x"\ncodec = "jsonl"\nsubjects = { reading = "a.{nope}" }\n',
         "adapters.serial[0].subjects.reading"),
        ('[[adapters.demo]]\ninterval = "fast"\n', "adapters.demo[0].interval"),
        ("[[adapters.nosuch]]\n", "adapters.nosuch"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    assert f"{tmp_path / 'edge.toml'}: {key}:" in str(err.value)


def test_tokens_and_timestamps() -> None:
    assert sanitize_token("a.b c*>\x00d") == "a_b_c_d"
    assert sanitize_token("") == "_"
    assert format_ts(1_795_694_400.5) == "2026-11-26T12:00:00.500Z"


def test_plain_broker_does_not_import_optional_libraries() -> None:
    code = (
        "import sys, edge.runtime.broker, edge.config, edge.adapters.serial.adapter\n"
        "bad = [m for m in ('serial', 'bleak', 'zeroconf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_op_splitter_keeps_ops_whole() -> None:
    sp = OpSplitter(frame_size=64)
    stream = b"INFO {}\r\n" + b"MSG a.b 1 12\r\nhello\r\nworld\r\n" + b"PING\r\n" + b"MSG c 2 _INBOX.x 3\r\nabc\r\n"
    frames = sp.feed(stream[:20]) + sp.feed(stream[20:])
    assert b"".join(frames) == stream
    for f in frames:
        assert f.endswith(b"\r\n")
    assert all(len(f) <= 64 for f in frames)


async def test_supervisor_restarts_with_backoff() -> None:
    runs: list[float] = []
    loop = asyncio.get_running_loop()
    fourth = asyncio.Event()

    class Flaky:
        async def run(self) -> None:
            runs.append(loop.time())
            if len(runs) == 4:
                fourth.set()
            if len(runs) < 4:
                raise RuntimeError("boom")
            await asyncio.Event().wait()

    sup = Supervisor(backoff_min=0.01, backoff_max=0.04)
    stopped: list[int] = []
    sup.add("flaky", Flaky, on_stop=lambda: stopped.append(1))
    await asyncio.wait_for(fourth.wait(), 5)
    assert sup.stats()["flaky"]["failures"] == 3
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    assert gaps[1] >= gaps[0] * 1.5 - 0.005  # doubling
    await sup.stop(1.0)
    assert len(stopped) == 4
