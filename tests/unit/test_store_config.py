"""The [store_forward] config table."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.loader import load_settings
from edge.config.store_forward import StoreForwardSettings, read_long_duration, validate_subscribe_subject
from edge.errors import ConfigError
from edge.store.log import OutboxOptions


def load(tmp_path: Path, text: str) -> StoreForwardSettings | None:
    f = tmp_path / "edge.toml"
    f.write_text(text)
    return load_settings(f).sections.get("store_forward")


def test_defaults_and_enabled(tmp_path: Path) -> None:
    sf = load(tmp_path, '[store_forward]\nsubjects = ["telemetry.>"]\n')
    assert sf is not None and sf.enabled
    assert sf == StoreForwardSettings(subjects=("telemetry.>",))
    assert (sf.max_bytes, sf.max_msgs, sf.max_age, sf.full_policy) == (256 << 20, 1_000_000, 604800.0, "drop_oldest")
    assert (sf.fsync_interval, sf.fsync_every, sf.segment_bytes, sf.confirm, sf.batch, sf.dir) == (
        0.1, 1000, 16 << 20, "pong", 500, None)
    assert OutboxOptions.from_settings(sf) == OutboxOptions()
    empty = load(tmp_path, "[store_forward]\n")
    assert empty is not None and not empty.enabled
    assert load(tmp_path, "port = 4222\n") is None


def test_all_keys(tmp_path: Path) -> None:
    sf = load(tmp_path, """
[store_forward]
subjects = ["telemetry.>", "evt.*.*.*.offline", "telemetry.>"]
dir = "/var/lib/nats-edge/outbox"
max_bytes = "64MB"
max_msgs = 5000
max_age = "1d12h"
full_policy = "reject_new"
fsync_interval = "250ms"
fsync_every = 1
segment_bytes = "1MB"
replay_rate = 0
confirm = "jetstream"
stream = "EDGE"
jetstream_subject_prefix = "gw1"
batch = 100
""")
    assert sf is not None
    assert sf.subjects == ("telemetry.>", "evt.*.*.*.offline")
    assert (sf.dir, sf.max_bytes, sf.max_msgs, sf.max_age) == ("/var/lib/nats-edge/outbox", 64 << 20, 5000, 129600.0)
    assert (sf.full_policy, sf.fsync_interval, sf.fsync_every, sf.segment_bytes) == ("reject_new", 0.25, 1, 1 << 20)
    assert (sf.replay_rate, sf.confirm, sf.stream, sf.jetstream_subject_prefix, sf.batch) == (
        0, "jetstream", "EDGE", "gw1", 100)
    assert sf.raw["max_msgs"] == 5000


@pytest.mark.parametrize(
    ("line", "key", "needle"),
    [
        ('subjects = ["telemetry.>.x"]', "subjects", "last token"),
        ('subjects = ["a..b"]', "subjects", "empty token"),
        ('subjects = ["a.b*"]', "subjects", "whole tokens"),
        ("subjects = [1]", "subjects", "list of non-empty strings"),
        ('full_policy = "drop_newest"', "full_policy", "drop_oldest"),
        ('confirm = "ack"', "confirm", "jetstream"),
        ('max_age = "forever"', "max_age", "duration"),
        ("fsync_every = 0", "fsync_every", "at least 1"),
        ('segment_bytes = "1k"', "segment_bytes", "at least"),
        ('max_bytes = "20MB"', "max_bytes", "twice segment_bytes"),
        ('stream = "a.b"', "stream", "stream name"),
        ('jetstream_subject_prefix = "a.>"', "jetstream_subject_prefix", "wildcards"),
        ("sizes = 1", "sizes", "unknown key"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, line: str, key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as exc:
        base = "" if key == "subjects" else 'subjects = ["t.>"]\n'
        load(tmp_path, f"[store_forward]\n{base}{line}\n")
    assert exc.value.key == f"store_forward.{key}"
    assert exc.value.source.endswith("edge.toml")
    assert needle in exc.value.problem


def test_overrides_merge_by_raw_key(tmp_path: Path) -> None:
    f = tmp_path / "edge.toml"
    f.write_text('[store_forward]\nsubjects = ["t.>"]\nmax_msgs = 10\n')
    s = load_settings(f, overrides={"store_forward": {"max_msgs": 20}})
    sf = s.sections["store_forward"]
    assert (sf.subjects, sf.max_msgs) == (("t.>",), 20)


def test_readers() -> None:
    assert read_long_duration("7d") == 604800.0
    assert read_long_duration("168h") == 604800.0
    assert read_long_duration(0) == 0.0
    with pytest.raises(ValueError, match="duration"):
        read_long_duration("7dd")
    for ok in ("a", "a.b", "*", ">", "a.*.c", "a.>", "_INBOX.x"):
        validate_subscribe_subject(ok)
    for bad in ("", "a.", ".a", "a b", ">.a", "a.b>"):
        with pytest.raises(ValueError):
            validate_subscribe_subject(bad)
