"""The command contract every adapter kind serves: request in, one JSON envelope out, one audit event.

A request on the command subject (default ``cmd.<gateway>.<adapter>.<device>.<action>``) carries the
action's arguments as a JSON object (an empty payload = ``{}``). The reply is always one envelope::

    {"ok": true, "result": <any JSON>}
    {"ok": false, "error": "relay is jammed", "code": "failed"}

with ``code`` one of :data:`CODES`:

- ``unknown_device``: the adapter does not know this device;
- ``offline``: the device is known but not reachable now (answered at once, never after a timeout);
- ``unsupported``: the device has no such action;
- ``bad_arguments``: the payload is not a JSON object, or the action's arguments are wrong;
- ``timeout``: the device did not answer in time;
- ``busy``: the adapter's (or the port's) bounded command queue is full (refusals are counted);
- ``failed``: the device answered with an error, or the adapter failed to deliver the command.

Each command, answered or not (a publish without a reply subject still runs), is published once done
on ``evt.<gateway>.<adapter>.<device>.command`` as ``{"ts", "action", "args", "ok", "ms", "result", "by"}``
or ``{..., "ok": false, "code", "error", "by"}``, so a cloud consumer can audit who switched what: ``by``
is the requester (edge.core.internal.source_identity: a NATS client's ``cid``, ``user``, ``name`` and
``ip``; an MQTT client's ``client_id`` and ``user``; ``{"kind": "leaf", "hub"}`` for a request from the
cloud; an internal client's ``name``). Access
to commands is the broker's ordinary subject permissions on ``cmd.>``.

An adapter serves commands with :meth:`edge.adapters.base.AdapterContext.serve_commands` (or, for parts
outside the adapter framework such as the mDNS service, a :class:`CommandService` of its own): it
supplies ``async handler(cmd: Command) -> result`` that raises :class:`CommandError` for the failures
above. The service runs each command in an owned task (at most ``max_in_flight``; beyond: ``busy``),
bounded by ``timeout`` as a backstop, and does the envelope and the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from edge.core.internal import source_identity
from edge.errors import EdgeError
from edge.protocol.subjects import sanitize_token

if TYPE_CHECKING:
    from edge.core.internal import InternalClient, Message

__all__ = ["CODES", "Command", "CommandError", "CommandService", "envelope", "parse_args"]

CODES: Final = ("unknown_device", "offline", "unsupported", "bad_arguments", "timeout", "busy", "failed")
DEFAULT_TIMEOUT: Final = 30.0  # backstop; adapters bound their own device I/O more tightly
DEFAULT_MAX_IN_FLIGHT: Final = 64
_DEVICE: Final = "\x00device"
_ACTION: Final = "\x00action"


class CommandError(EdgeError):
    """A command failed with ``code`` (one of :data:`CODES`); the message is the envelope's ``error``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown command error code {code!r}")
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Command:
    """One request: the device and action tokens of its subject and its arguments (a JSON object)."""

    device: str
    action: str
    args: dict[str, Any]
    subject: str


def parse_args(payload: bytes) -> dict[str, Any]:
    """The request payload as arguments; raises CommandError ``bad_arguments`` unless a JSON object."""
    if not payload.strip():
        return {}
    try:
        args = json.loads(payload)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
        raise CommandError("bad_arguments", "the payload must be a JSON object of arguments") from None
    if not isinstance(args, dict):
        raise CommandError("bad_arguments", f"the payload must be a JSON object, not {type(args).__name__}")
    return args


def envelope(ok: bool, result: Any = None, *, code: str = "", error: str = "") -> dict[str, Any]:
    """The reply document (see the module docstring)."""
    return {"ok": True, "result": result} if ok else {"ok": False, "error": error, "code": code}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _ts() -> str:
    now = datetime.now(tz=UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


Handler = Callable[[Command], Awaitable[Any]]


class CommandService:
    """Serves the command subject of one adapter instance's devices; loop-thread only.

    ``client()`` returns the internal client to subscribe and publish with (the adapter's own);
    ``command_template``/``event_template`` are the instance's subject templates (placeholders
    ``{gateway} {adapter} {device} {action}`` / ``{event}``). :meth:`serve` subscribes one device
    (or ``"*"``: every device, for an adapter that owns the whole ``<adapter>`` token).
    """

    def __init__(
        self,
        client: Callable[[], InternalClient],
        gateway: str,
        adapter: str,
        handler: Handler,
        *,
        command_template: str,
        event_template: str,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        log: logging.Logger | None = None,
    ) -> None:
        self._client = client
        self.gateway = gateway
        self.adapter = adapter
        self.handler = handler
        self.command_template = command_template
        self.event_template = event_template
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.log = log or logging.getLogger("edge.adapters.commands")
        self.stats: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._subs: dict[str, Any] = {}
        # Where the device and action tokens sit in a command subject (templates may reorder them).
        tokens = command_template.format(gateway=gateway, adapter=adapter, device=_DEVICE, action=_ACTION).split(".")
        self._device_at = tokens.index(_DEVICE) if _DEVICE in tokens else -1
        self._action_at = tokens.index(_ACTION) if _ACTION in tokens else len(tokens) - 1

    def serve(self, device: str) -> None:
        """Subscribe the command subject of ``device`` (``"*"`` = all); idempotent."""
        token = "*" if device == "*" else sanitize_token(device)
        if token in self._subs:
            return
        subject = self.command_template.format(gateway=self.gateway, adapter=self.adapter, device=token, action="*")
        self._subs[token] = self._client().subscribe(subject.encode(), lambda msg: self._on_request(token, msg))

    def close(self) -> None:
        """Cancel commands in flight (their requesters get no answer: the adapter is going away)."""
        for t in list(self._tasks):
            t.cancel()
        self._subs.clear()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def counters(self) -> dict[str, int]:
        return {f"commands_{k}": n for k, n in sorted(self.stats.items())}

    # -- one request ------------------------------------------------------------------------------

    def _on_request(self, served: str, msg: Message) -> None:
        tokens = msg.subject.decode(errors="replace").split(".")
        device = tokens[self._device_at] if served == "*" and 0 <= self._device_at < len(tokens) else served
        action = tokens[self._action_at] if self._action_at < len(tokens) else ""
        self.stats["received"] += 1
        try:
            cmd = Command(device, action, parse_args(msg.payload), msg.subject.decode(errors="replace"))
        except CommandError as exc:
            self._finish(Command(device, action, {}, ""), msg, envelope(False, code=exc.code, error=str(exc)), 0.0)
            return
        if len(self._tasks) >= self.max_in_flight:
            self._finish(cmd, msg, envelope(False, code="busy", error="too many commands in flight"), 0.0)
            return
        task = asyncio.get_running_loop().create_task(self._run(cmd, msg), name=f"command:{self.adapter}:{device}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, cmd: Command, msg: Message) -> None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.handler(cmd)
        except CommandError as exc:
            doc = envelope(False, code=exc.code, error=str(exc))
        except TimeoutError:
            doc = envelope(False, code="timeout", error=f"no answer within {self.timeout:g}s")
        except Exception as exc:  # a handler bug must cost this command, not the adapter
            self.log.exception("command %s on %s failed", cmd.action, cmd.device)
            doc = envelope(False, code="failed", error=f"{type(exc).__name__}: {exc}")
        else:
            doc = envelope(True, result)
        self._finish(cmd, msg, doc, time.monotonic() - started)

    def _finish(self, cmd: Command, msg: Message, doc: dict[str, Any], elapsed: float) -> None:
        self.stats["ok" if doc["ok"] else doc["code"]] += 1
        client = self._client()
        if msg.reply:
            client.publish(msg.reply, _dumps(doc))
        event = {"ts": _ts(), "action": cmd.action, "args": cmd.args, **doc, "ms": round(elapsed * 1000, 1)}
        by = source_identity(msg.source)
        if by is not None:
            event["by"] = by
        subject = self.event_template.format(gateway=self.gateway, adapter=self.adapter,
                                             device=sanitize_token(cmd.device), event="command")
        client.publish(subject.encode(), _dumps(event))
