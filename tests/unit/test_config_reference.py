"""edge/config/REFERENCE.md documents exactly the keys the configuration schema accepts.

The schema is spread over the section modules (``edge/config/*.py``), the adapter kinds' parsers and the
codec registry; each keeps its accepted keys in one constant, which ``reject_unknown`` enforces. This test
collects them per table and compares each with the key column of the reference's table under the heading
of the same name: a key added to the schema without documentation, or documented but not accepted,
fails here. It also proves the collection is the schema, by feeding every documented key of a few
tables to the real loader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.adapters import demo
from edge.adapters import section as adapters
from edge.adapters.ble import adapter as ble
from edge.adapters.mdns import config as mdns
from edge.adapters.serial import config as serial
from edge.config import leafnodes, loader, monitoring, mqtt, security, store_forward
from edge.config.sections import SECTION_MODULES
from edge.errors import ConfigError
from firmware_bridge import codecs

REFERENCE = Path(__file__).resolve().parents[2] / "edge" / "config" / "REFERENCE.md"


def schema() -> dict[str, frozenset[str]]:
    """Heading in REFERENCE.md -> the keys the schema accepts in that table."""
    codec_keys = {name: frozenset(spec) for name, (_factory, spec, _req) in codecs._REGISTRY.items()}
    assert codec_keys["nats"] == frozenset(), "the reference says the nats codec has no options"
    return {
        "top level": frozenset(loader._SERVER_KEYS) | loader._COMPOUND_KEYS | frozenset(SECTION_MODULES),
        "[authorization]": loader._AUTH_KEYS,
        "[authorization] users[]": security._USER_KEYS,
        "users[].permissions": security._PERM_KEYS,
        "permissions.publish / permissions.subscribe": security._SUBJ_PERM_KEYS,
        "permissions.allow_responses": security._RESP_KEYS,
        "[tls]": security._TLS_KEYS,
        "[auth_backoff]": security._AUTH_BACKOFF_KEYS,
        "[monitoring]": monitoring._KEYS,
        "[leafnodes]": leafnodes._SECTION_KEYS,
        "[[leafnodes.remotes]]": leafnodes._REMOTE_KEYS,
        "[[leafnodes.remotes]] tls": leafnodes._TLS_KEYS,
        "[store_forward]": store_forward._KNOWN,
        "[mqtt]": mqtt._KNOWN,
        "[adapters]": adapters._GLOBAL_KEYS,
        "[[adapters.<kind>]]": adapters._COMMON_KEYS,
        "[[adapters.<kind>]] subjects": adapters._TEMPLATE_KEYS,
        "[[adapters.serial]]": serial._KEYS,
        "codec_options (jsonl)": codec_keys["jsonl"],
        "codec_options (lines)": codec_keys["lines"],
        "codec_options (nmea)": codec_keys["nmea"],
        "codec_options (frames)": codec_keys["frames"],
        "[[adapters.demo]]": demo._KEYS,
        "[[adapters.ble]]": ble._KEYS,
        "[[adapters.ble.devices]]": ble._DEVICE_KEYS,
        "[[adapters.ble.devices]] characteristics[]": ble._CHAR_KEYS,
        "characteristics[].layout": ble._LAYOUT_KEYS,
        "layout.fields[]": ble._FIELD_KEYS,
        "[mdns]": mdns._KNOWN,
        "[[mdns.matchers]]": mdns._MATCHER_KEYS,
        "[mdns.pollers.<name>]": mdns._POLLER_KEYS,
        "[mdns.pollers.<name>.actions.<action>]": mdns._ACTION_KEYS,
    }


def documented() -> dict[str, list[str]]:
    """Heading -> the keys in the first column of the table under it (in order, duplicates kept)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,4} `([^`]+)`$", line)
        if heading:
            assert heading.group(1) not in out, f"two headings {heading.group(1)!r}"
            current = out[heading.group(1)] = []
        elif line.startswith("#"):
            current = None
        elif current is not None and (row := re.match(r"^\| `([^`]+)` \|", line)):
            current.append(row.group(1))
    return out


def test_every_schema_key_is_documented_and_every_documented_key_exists() -> None:
    docs = documented()
    want = schema()
    assert set(docs) == set(want), f"tables: missing {set(want) - set(docs)}, unknown {set(docs) - set(want)}"
    for table, keys in want.items():
        got = docs[table]
        assert len(got) == len(set(got)), f"{table}: a key documented twice: {got}"
        missing, extra = keys - set(got), set(got) - keys
        assert not missing and not extra, f"{table}: undocumented {sorted(missing)}, not in the schema {sorted(extra)}"


def test_the_collected_key_sets_are_what_the_loader_enforces(tmp_path: Path) -> None:
    """A key outside a collected set is refused by the real loader, naming that set in its error, so the
    sets above are the schema and not a copy of it."""
    cases = {
        "[store_forward]\nsubjects = ['a']\nbogus = 1\n": store_forward._KNOWN,
        "[mdns]\nbogus = 1\n": mdns._KNOWN,
        "[auth_backoff]\nbogus = 1\n": security._AUTH_BACKOFF_KEYS,
        "[[adapters.serial]]\nport = '/dev/null'\ncodec = 'jsonl'\nbogus = 1\n": serial._KEYS,
        "[[adapters.ble]]\nbogus = 1\n": ble._KEYS,
        "[[adapters.demo]]\nbogus = 1\n": demo._KEYS,
    }
    for i, (text, keys) in enumerate(cases.items()):
        conf = tmp_path / f"c{i}.toml"
        conf.write_text(text)
        with pytest.raises(ConfigError, match=re.escape(f"known keys: {', '.join(sorted(keys))}")):
            loader.load_settings(conf)


def test_jsonl_defaults_as_documented() -> None:
    """The reference's jsonl defaults: ``id`` names the device, ``ts`` is the time and not a channel."""
    from firmware_bridge.readings import Reading

    dec = codecs.get_codec("jsonl", {})
    line = b'{"id": "node7", "ts": 1790000000.5, "t": 21.5}\n'
    assert dec.feed(line) == [Reading("t", 21.5, None, "node7", 1790000000.5)]
    off = codecs.get_codec("jsonl", {"ts_field": "", "device_field": ""})
    assert off.feed(line) == [Reading("ts", 1790000000.5), Reading("t", 21.5)]
    assert dec.feed(b'{"ts": "yesterday", "t": 1}\n') == [] and dec.counters()["lines_bad"] == 1
