"""The MicroPython command helpers (firmware_bridge/micropython/device_commands.py) under CPython, byte for
byte against the gateway's own encoders (firmware_bridge.commands, firmware_bridge.nats)."""

from __future__ import annotations

import json
from typing import Any

from firmware_bridge.commands import CommandReply, encode_command, encode_reply
from firmware_bridge.jsonl import JsonlDecoder
from firmware_bridge.micropython import device_commands as dc
from firmware_bridge.micropython import nats_serial as mp
from firmware_bridge.nats import encode_pub, encode_sub
from tests.unit.test_fw_micropython import FakeUart, client


def relay_handlers(state: dict[str, Any]) -> dict[str, Any]:
    def relay(args: dict[str, Any]) -> dict[str, bool]:
        if not isinstance(args.get("on"), bool):
            raise dc.CommandFailed("bad_arguments", "'on' must be true or false")
        state["on"] = args["on"]
        return {"relay": args["on"]}

    def boom(args: dict[str, Any]) -> None:
        raise RuntimeError("fuse")

    return {"relay": relay, "boom": boom}


def test_jsonl_device_answers_every_command_with_the_gateway_reply_format() -> None:
    state: dict[str, Any] = {}
    uart = FakeUart()
    dev = dc.JsonlDevice(uart, "relay7", relay_handlers(state), max_line=200)
    wire = (encode_command("relay", {"on": True}, "1") + b'{"id":"x","t":1}\n' + encode_command("relay", {}, "2")
            + encode_command("dance", {}, "3") + encode_command("boom", {}, "4") + b"x" * 300 + b"\n"
            + b'{"cmd":"relay","args":[1],"cid":"5"}\r\n')
    answered = sum(dev.feed(bytes([b])) for b in wire)  # byte by byte: line splitting is the device's
    assert answered == 5 and state == {"on": True}
    assert uart.take() == (
        encode_reply("1", True, {"relay": True})
        + encode_reply("2", False, error="'on' must be true or false", code="bad_arguments")
        + encode_reply("3", False, error="unknown action dance", code="unsupported")
        + encode_reply("4", False, error="RuntimeError('fuse')", code="failed")
        + encode_reply("5", False, error="the arguments must be a JSON object", code="bad_arguments")
    )
    assert (dev.commands, dev.lines_bad, dev.overflows) == (5, 1, 1)
    dev.reading({"relay": 1})
    line = uart.take()
    assert JsonlDecoder().feed(line)[0].device == "relay7"
    assert JsonlDecoder().feed(encode_reply("9", True, 1)) == [CommandReply("9", True, 1)]


def test_serve_nats_replies_with_the_envelope() -> None:
    state: dict[str, Any] = {}
    nc, uart = client(mp.MODE_NATS)
    dc.serve_nats(nc, "node7", relay_handlers(state), gateway="gw1")
    assert uart.take() == encode_sub("cmd.gw1.serial.node7.*", 1)
    nc.feed(b"MSG cmd.gw1.serial.node7.relay 1 _INBOX.r.1 11\r\n{\"on\":true}\r\n"
            b"MSG cmd.gw1.serial.node7.relay 1 _INBOX.r.2 3\r\n[1]\r\n"
            b"MSG cmd.gw1.serial.node7.nope 1 _INBOX.r.3 0\r\n\r\n")

    def env(reply: str, doc: dict[str, Any]) -> bytes:
        return encode_pub(reply, json.dumps(doc, separators=(",", ":")).encode())

    assert uart.take() == (
        env("_INBOX.r.1", {"ok": True, "result": {"relay": True}})
        + env("_INBOX.r.2", {"ok": False, "error": "the arguments must be a JSON object", "code": "bad_arguments"})
        + env("_INBOX.r.3", {"ok": False, "error": "unknown action nope", "code": "unsupported"})
    )
    assert state == {"on": True}
