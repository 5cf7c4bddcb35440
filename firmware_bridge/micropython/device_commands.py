"""device_commands: answer the gateway's commands from a MicroPython device (runs on CPython too).

The gateway sends one command per request on ``cmd.<gateway>.serial.<device>.<action>`` with a JSON
object of arguments and expects one envelope back (edge.adapters.commands)::

    {"ok": true, "result": <any JSON>}      {"ok": false, "error": "...", "code": "bad_arguments"}

``handlers`` maps an action to ``fn(args) -> result``; a handler raises ``CommandFailed(code, text)``
for a refusal (code: unsupported, bad_arguments, busy, failed); an unknown action is answered
``unsupported``, any other exception ``failed``. Two ways to the gateway:

- ``serve_nats(nc, device, handlers)``: a ``nats``/``frames`` port (nats_serial.NatsSerial); the
  device subscribes to its command subject and replies to each request itself.
- ``JsonlDevice(uart, device, handlers)``: a ``jsonl`` port. The gateway writes
  ``{"cmd": "relay", "args": {...}, "cid": "7"}`` lines; ``poll()`` answers each with
  ``{"cid": "7", "ok": true, "result": ...}`` (for ASCII text byte-identical to
  firmware_bridge.commands.encode_reply).
  ``reading(values)`` writes one reading line ``{"id": <device>, ...values}``. Lines longer than
  ``max_line`` are dropped (counted in ``overflows``); lines that are not commands in ``lines_bad``.

No dataclasses, typing or f-strings: MicroPython has none of them on every port.
"""

try:
    import ujson as json
except ImportError:
    import json

CODES = ("unsupported", "bad_arguments", "busy", "failed")


class CommandFailed(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, text)
        self.code = code if code in CODES else "failed"
        self.text = text


def _dumps(obj):
    # Compact like the gateway's json.dumps(separators=(",", ":")); ujson is compact already.
    try:
        return json.dumps(obj, separators=(",", ":"))
    except TypeError:  # ujson: no separators argument
        return json.dumps(obj)


def run_handler(handlers, action, args):
    """The envelope (a dict) for one command."""
    fn = handlers.get(action)
    if fn is None:
        return {"ok": False, "error": "unknown action " + action, "code": "unsupported"}
    try:
        return {"ok": True, "result": fn(args)}
    except CommandFailed as exc:
        return {"ok": False, "error": exc.text, "code": exc.code}
    except Exception as exc:  # a handler bug answers the requester instead of stalling it
        return {"ok": False, "error": repr(exc), "code": "failed"}


def _args(data):
    if not data:
        return {}
    try:
        args = json.loads(data)
    except ValueError:
        return None
    return args if isinstance(args, dict) else None


def serve_nats(nc, device, handlers, gateway="*"):
    """Subscribe ``cmd.<gateway>.serial.<device>.*`` on a NatsSerial and answer with the envelope."""

    def on_msg(msg):
        action = msg.subject.rsplit(".", 1)[-1]
        args = _args(msg.data)
        if args is None:
            doc = {"ok": False, "error": "the arguments must be a JSON object", "code": "bad_arguments"}
        else:
            doc = run_handler(handlers, action, args)
        msg.respond(_dumps(doc))

    return nc.subscribe("cmd." + gateway + ".serial." + device + ".*", on_msg)


class JsonlDevice:
    """A jsonl-port device: readings out, commands in, replies out (see the module docstring)."""

    def __init__(self, uart, device, handlers, max_line=512):
        self.uart = uart
        self.device = device
        self.handlers = handlers
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False
        self.commands = 0
        self.lines_bad = 0
        self.overflows = 0

    def reading(self, values):
        obj = {"id": self.device}
        obj.update(values)
        self.uart.write((_dumps(obj) + "\n").encode())

    def poll(self):
        """Read what is waiting (without blocking where the UART has any()) and answer every command."""
        any_fn = getattr(self.uart, "any", None)
        if any_fn is not None and not any_fn():
            return 0
        data = self.uart.read(256)
        if not data:
            return 0
        return self.feed(data)

    def feed(self, data):
        answered = 0
        for b in data:
            if b == 10:  # \n
                if not self._skipping and self._buf:
                    answered += self._line(bytes(self._buf).rstrip(b"\r"))
                self._buf = bytearray()
                self._skipping = False
            elif not self._skipping:
                self._buf.append(b)
                if len(self._buf) > self.max_line:
                    self.overflows += 1
                    self._buf = bytearray()
                    self._skipping = True
        return answered

    def _line(self, line):
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or not isinstance(obj.get("cmd"), str) or not isinstance(obj.get("cid"), str):
            self.lines_bad += 1
            return 0
        args = obj.get("args", {})
        if isinstance(args, dict):
            doc = run_handler(self.handlers, obj["cmd"], args)
        else:
            doc = {"ok": False, "error": "the arguments must be a JSON object", "code": "bad_arguments"}
        reply = {"cid": obj["cid"], "ok": doc["ok"]}
        if doc["ok"]:
            reply["result"] = doc["result"]
        else:
            reply["error"] = doc["error"]
            reply["code"] = doc["code"]
        self.commands += 1
        self.uart.write((_dumps(reply) + "\n").encode())
        return 1
