"""Commands to mDNS/HTTP devices, pure: the request a command becomes and how the answer maps to a result.

Shelly Gen2+ (devices with the ``shelly`` poller): JSON-RPC ``POST /rpc``
``{"id": n, "src": "nats-edge", "method": "Switch.Set", "params": {"id": 0, "on": true}}``. Actions
(:data:`SHELLY_ACTIONS`; ``id`` defaults to 0, every argument is passed on as a parameter):
``switch_set`` (``on`` required), ``switch_toggle``, ``switch_get_status``, ``cover_open``,
``cover_close``, ``cover_stop``, ``cover_go_to_position`` (``pos`` 0..100 required), ``light_set``,
``light_toggle``, and ``rpc`` ``{"method": "Sys.GetConfig", "params": {...}}`` for any other method.
The result is the RPC's ``result``; an RPC ``error`` becomes ``bad_arguments`` (Shelly code -103,
invalid argument), ``unsupported`` (-105/-114/404: no such method or component) or ``failed``.

Generic HTTP devices: a table of :class:`HttpAction` per poller (``[mdns.pollers.<name>.actions.<a>]``):
``method``, ``path`` and ``body`` templates whose ``{name}`` placeholders take the command's arguments
(URL-encoded in the path, JSON-encoded in the body; a missing one is ``bad_arguments``), and ``result``,
a dotted JSON path into the reply (``""`` = the whole reply). A status other than 2xx is ``failed``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from edge.adapters.commands import CommandError

from .readings import lookup

__all__ = ["SHELLY_ACTIONS", "HttpAction", "fill", "generic_request", "generic_result", "shelly_request",
           "shelly_result"]

_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE")

# action token -> (RPC method, required arguments)
SHELLY_ACTIONS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "switch_set": ("Switch.Set", ("on",)),
    "switch_toggle": ("Switch.Toggle", ()),
    "switch_get_status": ("Switch.GetStatus", ()),
    "cover_open": ("Cover.Open", ()),
    "cover_close": ("Cover.Close", ()),
    "cover_stop": ("Cover.Stop", ()),
    "cover_go_to_position": ("Cover.GoToPosition", ("pos",)),
    "light_set": ("Light.Set", ()),
    "light_toggle": ("Light.Toggle", ()),
    "rpc": ("", ("method",)),
}
_SHELLY_BAD_ARGS: Final = frozenset({-103})
_SHELLY_UNSUPPORTED: Final = frozenset({-105, -114, 404, -32601})


@dataclass(frozen=True, slots=True)
class HttpAction:
    """One configured action of a generic HTTP device."""

    name: str
    method: str = "POST"
    path: str = "/"
    body: str | None = None
    result: str = ""


def fill(template: str, args: dict[str, Any], encode: Callable[[Any], str]) -> str:
    """Replace ``{name}`` with ``encode(args[name])``; CommandError ``bad_arguments`` when one is missing."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in args:
            raise CommandError("bad_arguments", f"missing argument {name!r}")
        return encode(args[name])

    return _PLACEHOLDER.sub(sub, template)


def _path_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return urllib.parse.quote(str(value), safe="")
    raise CommandError("bad_arguments", "path arguments must be numbers, strings or booleans")


def _json_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def generic_request(action: HttpAction, args: dict[str, Any]) -> tuple[str, str, bytes | None]:
    """``(method, path, body)`` for one command."""
    path = fill(action.path, args, _path_value)
    body = None if action.body is None else fill(action.body, args, _json_value).encode()
    return action.method, path, body


def generic_result(action: HttpAction, status: int, doc: Any) -> Any:
    if not 200 <= status < 300:
        raise CommandError("failed", f"the device answered HTTP {status}")
    return lookup(doc, action.result) if action.result else doc


def shelly_request(action: str, args: dict[str, Any], rpc_id: int) -> bytes:
    """The JSON-RPC body for a Shelly action; CommandError for an unknown action or bad arguments."""
    entry = SHELLY_ACTIONS.get(action)
    if entry is None:
        raise CommandError("unsupported", f"unknown action {action!r}; actions: {', '.join(SHELLY_ACTIONS)}")
    method, required = entry
    missing = [a for a in required if a not in args]
    if missing:
        raise CommandError("bad_arguments", f"missing argument {missing[0]!r}")
    if action == "switch_set" and not isinstance(args["on"], bool):
        raise CommandError("bad_arguments", "'on' must be true or false")
    if action == "cover_go_to_position":
        pos = args["pos"]
        if isinstance(pos, bool) or not isinstance(pos, int) or not 0 <= pos <= 100:
            raise CommandError("bad_arguments", "'pos' must be an integer from 0 to 100")
    if action == "rpc":
        method, params = args["method"], args.get("params", {})
        if not isinstance(method, str) or not re.fullmatch(r"[A-Za-z0-9]+\.[A-Za-z0-9]+", method):
            raise CommandError("bad_arguments", "'method' must be a Shelly RPC method such as \"Sys.GetStatus\"")
        if not isinstance(params, dict):
            raise CommandError("bad_arguments", "'params' must be an object")
    else:
        params = {"id": 0, **args}
    return json.dumps({"id": rpc_id, "src": "nats-edge", "method": method, "params": params},
                      separators=(",", ":"), ensure_ascii=False).encode()


def shelly_result(status: int, doc: Any) -> Any:
    """The RPC's result, or CommandError from its error frame (or a bad HTTP answer)."""
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        code = err.get("code")
        message = str(err.get("message", "error"))
        if code in _SHELLY_BAD_ARGS:
            raise CommandError("bad_arguments", f"Shelly: {message}")
        if code in _SHELLY_UNSUPPORTED:
            raise CommandError("unsupported", f"Shelly: {message}")
        raise CommandError("failed", f"Shelly error {code}: {message}")
    if status != 200 or not isinstance(doc, dict) or "result" not in doc:
        raise CommandError("failed", f"the device answered HTTP {status} without an RPC result")
    return doc["result"]
