"""The command contract (edge.adapters.commands) as a sans-IO unit: envelope, audit event, bounded
in-flight commands, the timeout backstop; and the config keys that feed it (serial, mDNS actions)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from edge.adapters.commands import Command, CommandError, CommandService
from edge.adapters.mdns.actions import HttpAction, generic_request, shelly_request, shelly_result
from edge.config import load_settings
from edge.core.internal import Message
from edge.errors import ConfigError


class Recorder:
    """The two calls CommandService makes on an internal client, recorded."""

    def __init__(self) -> None:
        self.subs: dict[bytes, Any] = {}
        self.published: list[tuple[str, Any]] = []
        self.changed = asyncio.Event()

    def subscribe(self, subject: bytes, callback: Any) -> object:
        self.subs[subject] = callback
        return object()

    def publish(self, subject: bytes, payload: bytes) -> int:
        self.published.append((subject.decode(), json.loads(payload)))
        self.changed.set()
        return 1

    def request(self, subject: str, payload: bytes, reply: str = "_INBOX.1") -> None:
        sub = next(s for s in self.subs)  # one served subject in these tests
        self.subs[sub](Message(subject.encode(), reply.encode() if reply else None, b"", payload))


def service(handler: Any, **kw: Any) -> tuple[CommandService, Recorder]:
    rec = Recorder()
    svc = CommandService(lambda: rec, "gw1", "serial", handler, command_template=kw.pop("command", "cmd.{gateway}."
                         "{adapter}.{device}.{action}"), event_template=kw.pop("event", "evt.{gateway}.{adapter}."
                         "{device}.{event}"), **kw)
    return svc, rec


async def settle(rec: Recorder, events: int) -> None:
    """Until ``events`` commands have finished (each ends by publishing its audit event)."""
    async with asyncio.timeout(5):
        while sum(1 for subject, _ in rec.published if not subject.startswith("_INBOX.")) < events:
            rec.changed.clear()
            await rec.changed.wait()


async def test_envelope_event_and_reordered_templates() -> None:
    seen: list[Command] = []

    async def handler(cmd: Command) -> Any:
        seen.append(cmd)
        if cmd.action == "fail":
            raise CommandError("failed", "jammed")
        if cmd.action == "bug":
            raise RuntimeError("oops")
        return {"n": cmd.args.get("n")}

    svc, rec = service(handler, command="ctl.{action}.{device}.{gateway}", event="audit.{device}.{event}")
    svc.serve("*")
    assert list(rec.subs) == [b"ctl.*.*.gw1"]
    rec.request("ctl.go.relay1.gw1", b'{"n": 2}')
    rec.request("ctl.fail.relay1.gw1", b"")
    rec.request("ctl.bug.relay1.gw1", b"")
    rec.request("ctl.go.relay1.gw1", b"[]")  # refused before the handler
    rec.request("ctl.go.relay1.gw1", b"{}", reply="")  # no reply subject: runs, audited, nothing answered
    await settle(rec, 5)
    assert [(c.device, c.action, c.args) for c in seen] == [
        ("relay1", "go", {"n": 2}), ("relay1", "fail", {}), ("relay1", "bug", {}), ("relay1", "go", {})]
    replies = [body for subject, body in rec.published if subject == "_INBOX.1"]
    assert replies == [
        {"ok": False, "error": "the payload must be a JSON object, not list", "code": "bad_arguments"},
        {"ok": True, "result": {"n": 2}},
        {"ok": False, "error": "jammed", "code": "failed"},
        {"ok": False, "error": "RuntimeError: oops", "code": "failed"},
    ]
    events = [body for subject, body in rec.published if subject == "audit.relay1.command"]
    assert [(e["action"], e["ok"], e.get("code")) for e in events] == [
        ("go", False, "bad_arguments"), ("go", True, None), ("fail", False, "failed"), ("bug", False, "failed"),
        ("go", True, None)]
    assert events[1]["args"] == {"n": 2} and events[1]["ts"].endswith("Z") and events[1]["ms"] >= 0
    assert svc.counters() == {"commands_bad_arguments": 1, "commands_failed": 2, "commands_ok": 2,
                              "commands_received": 5}


async def test_bounded_in_flight_and_timeout_backstop() -> None:
    release = asyncio.Event()

    async def handler(cmd: Command) -> Any:
        await release.wait()
        return "done"

    svc, rec = service(handler, max_in_flight=2, timeout=0.05)
    svc.serve("relay1")
    assert list(rec.subs) == [b"cmd.gw1.serial.relay1.*"]
    for _ in range(5):
        rec.request("cmd.gw1.serial.relay1.go", b"")
    # Three refused at once (no await in between), two running until the backstop ends them.
    assert [b["code"] for s, b in rec.published if s == "_INBOX.1"] == ["busy"] * 3
    await settle(rec, 5)
    assert [b["code"] for s, b in rec.published if s == "_INBOX.1"] == ["busy"] * 3 + ["timeout"] * 2
    assert svc.counters()["commands_busy"] == 3


def test_error_codes_are_the_contract() -> None:
    with pytest.raises(ValueError, match="unknown command error code 'nope'"):
        CommandError("nope", "x")


def _load(tmp_path: Path, text: str) -> Any:
    p = tmp_path / "edge.toml"
    p.write_text(text)
    return load_settings(p)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('codec = "nats"\nactions = ["a"]\n', "adapters.serial[0].actions", "only for the jsonl and lines codec"),
        ('codec = "jsonl"\ncommand_template = "X"\n', "adapters.serial[0].command_template", "only for the lines"),
        ('codec = "lines"\ncodec_options = { pattern = "(?P<t>.)" }\ncommand_template = "A\\nB"\n',
         "adapters.serial[0].command_template", "must be one line"),
        ('codec = "jsonl"\nactions = ["a.b"]\n', "adapters.serial[0].actions", "not a valid subject token"),
        ('codec = "jsonl"\nmax_pending_commands = 0\n', "adapters.serial[0].max_pending_commands", ""),
    ],
)
def test_serial_command_keys_are_checked(tmp_path: Path, text: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, f'[[adapters.serial]]\nport = "/dev/x"\n{text}')
    assert f"{tmp_path / 'edge.toml'}: {key}:" in str(err.value) and problem in str(err.value)


def test_serial_and_mdns_command_config_parsed(tmp_path: Path) -> None:
    s = _load(tmp_path, '[[adapters.serial]]\nport = "/dev/x"\ncodec = "lines"\n'
                        'codec_options = { pattern = "(?P<t>.)" }\nactions = ["relay"]\n'
                        'command_template = "RELAY {on}"\ncommand_timeout = "2s"\n'
                        '[mdns]\n[mdns.pollers.box]\nfields = { t = "t" }\n'
                        '[mdns.pollers.box.actions.relay]\npath = "/r?on={on}"\nmethod = "GET"\n')
    opts = s.sections["adapters"].instances[0].options
    assert (opts.actions, opts.command_template, opts.command_timeout, opts.accepts_commands) == (
        ("relay",), "RELAY {on}", 2.0, True)
    assert s.sections["mdns"].pollers["box"].actions == (HttpAction("relay", "GET", "/r?on={on}"),)
    with pytest.raises(ConfigError, match=r"mdns\.pollers\.box\.actions\.x\.path: required"):
        _load(tmp_path, '[mdns]\n[mdns.pollers.box]\nfields = { t = "t" }\n'
                        '[mdns.pollers.box.actions.x]\nmethod = "GET"\n')
    with pytest.raises(ConfigError, match=r"mdns\.pollers\.shelly\.actions: the shelly poller's"):
        _load(tmp_path, '[mdns]\n[mdns.pollers.shelly.actions.x]\npath = "/"\n')


def test_http_actions_render_and_map() -> None:
    action = HttpAction("relay", "POST", "/api/{name}", '{"on": {on}, "label": {name}}', "state.on")
    assert generic_request(action, {"on": True, "name": "a/b"}) == (
        "POST", "/api/a%2Fb", b'{"on": true, "label": "a/b"}')
    with pytest.raises(CommandError, match="missing argument 'on'"):
        generic_request(action, {"name": "x"})
    body = json.loads(shelly_request("cover_go_to_position", {"pos": 40}, 7))
    assert body == {"id": 7, "src": "nats-edge", "method": "Cover.GoToPosition", "params": {"id": 0, "pos": 40}}
    assert shelly_result(200, {"id": 7, "result": {"ok": 1}}) == {"ok": 1}
    with pytest.raises(CommandError) as err:
        shelly_result(200, {"id": 7, "error": {"code": -103, "message": "Invalid argument 'pos'"}})
    assert err.value.code == "bad_arguments"


class _Publisher:
    def __init__(self, identity: dict[str, Any] | None) -> None:
        if identity is not None:
            self.identity = identity


@pytest.mark.parametrize(("identity", "by"), [
    ({"kind": "client", "cid": 7, "user": "alice", "ip": "10.0.0.5"},
     {"kind": "client", "cid": 7, "user": "alice", "ip": "10.0.0.5"}),
    ({"kind": "mqtt", "client_id": "panel-1", "user": "panel"},
     {"kind": "mqtt", "client_id": "panel-1", "user": "panel"}),
    (None, None),  # a source that cannot say who it is: no "by"
])
async def test_the_event_says_who_asked(identity: dict[str, Any] | None, by: dict[str, Any] | None) -> None:
    async def handler(cmd: Command) -> Any:
        return "done"

    svc, rec = service(handler)
    svc.serve("relay")
    sub = next(iter(rec.subs))
    rec.subs[sub](Message(b"cmd.gw1.serial.relay.toggle", b"_INBOX.9", b"", b"", _Publisher(identity)))
    await settle(rec, 1)
    event = next(doc for subject, doc in rec.published if subject == "evt.gw1.serial.relay.command")
    assert event.get("by") == by
    svc.close()
