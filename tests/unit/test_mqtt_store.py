"""The MQTT state journal (edge.mqtt.store) and the [mqtt] config section: replay, a torn tail cut at the
last good record, compaction keeping exactly the live state, and config errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config.mqtt import parse_mqtt
from edge.config.sections import KeyReporter
from edge.errors import ConfigError
from edge.mqtt import store as S


def _journal(tmp_path: Path) -> S.Journal:
    j = S.Journal(str(tmp_path))
    j.open()
    return j


def _fill(j: S.Journal) -> S.SessionState:
    s = S.SessionState("dev 1")
    j.state.sessions[s.client_id] = s
    s.subs = {b"a/#": 1, b"b": 2}
    j.session(s)
    for i in range(3):
        m = S.StoredMessage(i + 1, b"a/%d" % i, b"payload %d" % i, 1 + i % 2, retain=i == 2)
        s.messages[m.mid] = m
        j.message(s, m)
    s.messages[1].pid = 7
    j.sent(s, s.messages[1])
    s.messages[2].pid = 8
    j.sent(s, s.messages[2])
    s.messages[2].released = True
    j.released(s, s.messages[2])
    done = s.messages.pop(1)
    j.done(s, done)
    s.qos2_in.add(5)
    j.qos2_received(s, 5)
    j.state.retained[b"r/1"] = (b"kept", 1)
    j.retain(b"r/1", b"kept", 1, 0)
    j.state.retained[b"r/2"] = (b"gone", 0)
    j.retain(b"r/2", b"gone", 0, 0)
    del j.state.retained[b"r/2"]
    j.clear_retained(b"r/2", 0)
    return s


def _summary(state: S.StoreState) -> object:
    return ({cid: (s.subs, [(m.mid, m.topic, m.payload, m.qos, m.retain, m.pid, m.released)
                            for m in s.messages.values()], s.qos2_in) for cid, s in state.sessions.items()},
            state.retained)


EXPECTED = ({"dev 1": ({b"a/#": 1, b"b": 2}, [(2, b"a/1", b"payload 1", 2, False, 8, True),
                                             (3, b"a/2", b"payload 2", 1, True, 0, False)], {5})},
            {b"r/1": (b"kept", 1)})


def test_replay_rebuilds_the_state(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    _fill(j)
    j.close_sync()
    state, good, torn = S.read_journal(str(tmp_path / S.JOURNAL))
    assert (_summary(state), torn) == (EXPECTED, 0)
    assert good == (tmp_path / S.JOURNAL).stat().st_size


def test_reopen_compacts_to_the_live_state(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    _fill(j)
    j.close_sync()
    before = (tmp_path / S.JOURNAL).stat().st_size
    j2 = _journal(tmp_path)
    assert _summary(j2.state) == EXPECTED
    assert (tmp_path / S.JOURNAL).stat().st_size < before
    j2.close_sync()


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_a_torn_tail_is_cut_at_the_last_good_record(tmp_path: Path, cut: int) -> None:
    j = _journal(tmp_path)
    s = _fill(j)
    m = S.StoredMessage(9, b"late", b"x" * 20, 1)
    s.messages[9] = m
    j.message(s, m)
    j.close_sync()
    path = tmp_path / S.JOURNAL
    data = path.read_bytes()
    path.write_bytes(data[:-cut])  # a crash in the middle of the last write
    j2 = S.Journal(str(tmp_path))
    j2.open()
    last = S._record(b"M", b"dev 1", (9).to_bytes(8, "big"), b"late", b"x" * 20, b"\x01")
    assert data.endswith(last)
    assert j2.truncated == len(last) - cut  # what is left of the last record, and nothing before it
    assert _summary(j2.state) == EXPECTED
    j2.close_sync()


def test_a_corrupt_record_ends_the_replay(tmp_path: Path) -> None:
    j = _journal(tmp_path)
    _fill(j)
    j.close_sync()
    path = tmp_path / S.JOURNAL
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # inside the first record's body: its CRC no longer matches
    path.write_bytes(bytes(data))
    state, good, torn = S.read_journal(str(path))
    assert (good, torn, state.sessions, state.retained) == (0, len(data), {}, {})


def test_config_keys_and_errors() -> None:
    rep = KeyReporter("edge.toml", "mqtt.")
    s = parse_mqtt({"listen": "0.0.0.0:1883", "ack_wait": "10s", "max_ack_pending": 100,
                    "max_store_bytes": "1MB", "no_auth_user": "dev"}, rep)
    assert (s.host, s.port, s.ack_wait, s.max_ack_pending, s.max_store_bytes, s.no_auth_user, s.enabled) == (
        "0.0.0.0", 1883, 10.0, 100, 1024 * 1024, "dev", True)
    assert not parse_mqtt({}, rep).enabled
    with pytest.raises(ConfigError, match=r"edge.toml: mqtt.max_ack_pending: .*65535"):
        parse_mqtt({"port": 1883, "max_ack_pending": 70000}, rep)
    with pytest.raises(ConfigError, match=r"edge.toml: mqtt.prot: unknown key"):
        parse_mqtt({"prot": 1883}, rep)
    with pytest.raises(ConfigError, match=r"edge.toml: mqtt.tls.key_file: required"):
        parse_mqtt({"port": 1883, "tls": {"cert_file": "a.pem"}}, rep)
