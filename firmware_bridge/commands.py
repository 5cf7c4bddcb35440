"""Commands over line codecs: the bytes the gateway writes to a device and the device's reply (sans-IO).

``jsonl`` (one JSON object per line, in both directions)::

    gateway -> device   {"cmd":"relay","args":{"on":true},"cid":"7"}
    device  -> gateway  {"cid":"7","ok":true,"result":{"relay":true}}
                        {"cid":"7","ok":false,"error":"relay is jammed","code":"failed"}

A line from the device that carries ``cid`` and ``ok`` is a reply, never a reading. The correlation id
is the gateway's; a device copies it back verbatim. ``code`` is optional (default ``failed``).

``lines``: the gateway renders a configured template such as ``"RELAY {on}"``: ``{action}``, ``{cid}``
and ``{<argument>}`` placeholders are replaced (arguments must be scalars without line breaks; a
missing one is a bad argument), ``\\n`` is appended. Such devices do not answer; the gateway answers
once the line is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["CID_FIELD", "CommandReply", "TemplateError", "encode_command", "encode_reply", "parse_command",
           "parse_reply", "render_template"]

CID_FIELD: Final = "cid"
_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


class TemplateError(ValueError):
    """A template placeholder has no value, or the value cannot go on one line."""


@dataclass(frozen=True, slots=True)
class CommandReply:
    """A device's answer to the command with correlation id ``cid``."""

    cid: str
    ok: bool
    result: Any = None
    error: str = ""
    code: str = ""


def encode_command(action: str, args: dict[str, Any], cid: str) -> bytes:
    """The jsonl line (newline-terminated) that asks a device to perform ``action``."""
    return json.dumps({"cmd": action, "args": args, CID_FIELD: cid}, separators=(",", ":"),
                      ensure_ascii=False).encode() + b"\n"


def parse_command(obj: Any) -> tuple[str, dict[str, Any], str] | None:
    """A decoded jsonl object -> ``(action, args, cid)`` when it is a command, else None (device side)."""
    if not isinstance(obj, dict):
        return None
    action, args, cid = obj.get("cmd"), obj.get("args", {}), obj.get(CID_FIELD)
    if not isinstance(action, str) or not isinstance(cid, str) or not isinstance(args, dict):
        return None
    return action, args, cid


def encode_reply(cid: str, ok: bool, result: Any = None, error: str = "", code: str = "") -> bytes:
    """The jsonl reply line a device writes (device side; the simulator and the tests use it)."""
    body: dict[str, Any] = {CID_FIELD: cid, "ok": ok}
    if ok:
        body["result"] = result
    else:
        body["error"] = error
        if code:
            body["code"] = code
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def parse_reply(obj: dict[str, Any]) -> CommandReply | None:
    """A decoded jsonl object -> the reply it is, or None when it is not a reply (no ``cid``/``ok``)."""
    cid, ok = obj.get(CID_FIELD), obj.get("ok")
    if not isinstance(cid, str | int) or isinstance(cid, bool) or not isinstance(ok, bool):
        return None
    error = obj.get("error")
    code = obj.get("code")
    return CommandReply(str(cid), ok, obj.get("result"), error if isinstance(error, str) else "",
                        code if isinstance(code, str) else "")


def render_template(template: str, action: str, args: dict[str, Any], cid: str) -> bytes:
    """Fill ``template`` for one command; raises TemplateError naming the placeholder at fault."""
    values: dict[str, Any] = {**args, "action": action, "cid": cid}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise TemplateError(f"missing argument {name!r}")
        value = values[name]
        if isinstance(value, bool):
            text = "1" if value else "0"  # line protocols want digits, not Python's True
        elif isinstance(value, int | float | str):
            text = str(value)
        else:
            raise TemplateError(f"argument {name!r} must be a number, a string or a boolean")
        if "\n" in text or "\r" in text:
            raise TemplateError(f"argument {name!r} must not contain a line break")
        return text

    return _PLACEHOLDER.sub(sub, template).encode() + b"\n"
