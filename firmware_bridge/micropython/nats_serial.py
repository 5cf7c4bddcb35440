"""nats_serial: a tiny NATS client for MicroPython over a UART (or any stream object).

Runs unchanged on MicroPython and CPython (the tests run it under CPython), so it uses only what
MicroPython has: no dataclasses, no typing, no f-strings, bytes-only buffers. Two wire modes:

- "nats":   the NATS client protocol as plain text (PUB/SUB/UNSUB/CONNECT/PONG; MSG/PING from the
            gateway), exactly as over TCP;
- "frames": the same ops, each wrapped as COBS(op || CRC-16/CCITT-FALSE big-endian) + 0x00, for noisy
            links (Cheshire & Baker COBS, 1999; CRC poly 0x1021, init 0xFFFF, check 0x29B1 for
            "123456789"). Byte-identical to firmware_bridge.frames.encode_frame and the C library.

The UART object needs write(b) and read(n); any() is used when present (machine.UART) so poll()
never blocks. Buffers are bounded (max_line, max_payload); overflows are counted and skipped.

    nc = NatsSerial(machine.UART(1, 115200), mode="frames")
    nc.connect("node7")
    nc.subscribe("cmd.node7.>", lambda m: m.respond(b"ok"))
    nc.publish("sensors.node7.temperature", b"21.5")
    while True:
        nc.poll()
"""

try:
    import utime as time
except ImportError:
    import time
try:
    from os import urandom
except ImportError:  # ports without os.urandom
    urandom = None

VERSION = "0.1.0"
MODE_NATS = "nats"
MODE_FRAMES = "frames"

if hasattr(time, "ticks_ms"):
    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
else:  # CPython

    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection); crc16(b"123456789") == 0x29B1."""
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        crc &= 0xFFFF
    return crc


def cobs_encode(data):
    """COBS-encode (Cheshire & Baker's StuffData: a 0xFF block after every 254 non-zero bytes)."""
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out.extend(block)
            block = bytearray()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(0xFF)
                out.extend(block)
                block = bytearray()
    out.append(len(block) + 1)
    out.extend(block)
    return bytes(out)


def cobs_decode(data):
    """Decode one COBS frame (no delimiter); None if it is not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            return None
        for j in range(i + 1, end):
            if data[j] == 0:
                return None
            out.append(data[j])
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


def encode_frame(payload):
    """COBS(payload || crc16 big-endian) + 0x00."""
    crc = crc16(payload)
    return cobs_encode(bytes(payload) + bytes(((crc >> 8) & 0xFF, crc & 0xFF))) + b"\x00"


def _json_str(s):
    # json.dumps(s) with ensure_ascii=True, byte for byte (MicroPython's json has no options).
    out = ['"']
    for ch in s:
        c = ord(ch)
        if ch == '"' or ch == "\\":
            out.append("\\" + ch)
        elif c < 0x20 or c > 0x7E:
            if c == 0x0A:
                out.append("\\n")
            elif c == 0x0D:
                out.append("\\r")
            elif c == 0x09:
                out.append("\\t")
            elif c == 0x08:
                out.append("\\b")
            elif c == 0x0C:
                out.append("\\f")
            elif c > 0xFFFF:
                c -= 0x10000
                out.append(f"\\u{0xD800 + (c >> 10):04x}\\u{0xDC00 + (c & 0x3FF):04x}")
            elif c == 0x7F:
                out.append(ch)
            else:
                out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _token(name, value):
    if not value or " " in value or "\t" in value or "\r" in value or "\n" in value:
        raise ValueError(name + " must be non-empty without whitespace")
    return value.encode()


def _as_bytes(payload):
    if isinstance(payload, str):
        return payload.encode()
    return bytes(payload)


class Msg:
    """A received message; respond() publishes to its reply subject."""

    def __init__(self, client, subject, sid, reply, data):
        self.subject = subject
        self.sid = sid
        self.reply = reply
        self.data = data
        self._client = client

    def respond(self, payload):
        if self.reply is None:
            return False
        self._client.publish(self.reply, payload)
        return True


class NatsSerial:
    """NATS client over a stream. Counters: msgs_in, msgs_out, overflows, frames_bad, lines_bad,
    bytes_dropped, errors (-ERR received; last_error holds the text)."""

    def __init__(self, uart, mode=MODE_NATS, max_line=512, max_payload=1024, inbox=None, clock=None):
        if mode not in (MODE_NATS, MODE_FRAMES):
            raise ValueError("mode must be 'nats' or 'frames'")
        self.uart = uart
        self.mode = mode
        self.max_line = max_line
        self.max_payload = max_payload
        self._clock = clock or _ticks_ms
        if inbox is None:
            rnd = urandom(6) if urandom else bytes((self._clock() >> s) & 0xFF for s in (0, 8, 16, 24))
            inbox = "_INBOX." + "".join(f"{b:02x}" for b in rnd)
        self.inbox = inbox
        self._subs = {}  # sid -> callback
        self._next_sid = 1
        self._inbox_sid = 0
        self._next_req = 1
        self._replies = {}  # request token -> payload (None = waiting)
        self._buf = b""  # protocol bytes not yet parsed (bounded: max_line + max_payload + 2)
        self._fbuf = b""  # frames mode: encoded bytes of the current frame
        self._fskip = False
        self._lskip = False
        self._msg = None  # (subject, sid, reply, hdr_len, total_len) awaiting its payload
        self._skip = 0  # payload bytes still to drop after an oversize MSG
        self.msgs_in = 0
        self.msgs_out = 0
        self.overflows = 0
        self.frames_bad = 0
        self.lines_bad = 0
        self.bytes_dropped = 0
        self.errors = 0
        self.last_error = None

    # -- output ---------------------------------------------------------------------------------
    def _send(self, op):
        data = encode_frame(op) if self.mode == MODE_FRAMES else op
        mv = memoryview(data)
        while len(mv):
            n = self.uart.write(mv)
            if n is None:  # some stream objects return None for "all written"
                break
            mv = mv[n:]

    def connect(self, name=None):
        """Send CONNECT (verbose and pedantic off so the gateway sends no +OK per op)."""
        body = '{"verbose":false,"pedantic":false'
        if name is not None:
            body += ',"name":' + _json_str(name)
        body += ',"lang":"micropython","version":"' + VERSION + '","protocol":1}'
        self._send(b"CONNECT " + body.encode() + b"\r\n")

    def publish(self, subject, payload=b"", reply=None):
        data = _as_bytes(payload)
        head = b"PUB " + _token("subject", subject) + b" "
        if reply is not None:
            head += _token("reply", reply) + b" "
        self._send(head + str(len(data)).encode() + b"\r\n" + data + b"\r\n")
        self.msgs_out += 1

    def subscribe(self, subject, callback, queue=None):
        """Subscribe; callback(msg) runs inside poll(). Returns the sid."""
        sid = self._next_sid
        self._next_sid += 1
        op = b"SUB " + _token("subject", subject) + b" "
        if queue is not None:
            op += _token("queue", queue) + b" "
        self._subs[sid] = callback
        self._send(op + str(sid).encode() + b"\r\n")
        return sid

    def unsubscribe(self, sid, max_msgs=None):
        if max_msgs is None:
            self._subs.pop(sid, None)
            self._send(b"UNSUB " + str(sid).encode() + b"\r\n")
        else:
            self._send(b"UNSUB " + str(sid).encode() + b" " + str(max_msgs).encode() + b"\r\n")

    def request(self, subject, payload=b"", timeout_ms=1000):
        """Publish with a reply inbox and poll until the reply arrives; its payload, or None on timeout."""
        if not self._inbox_sid:
            self._inbox_sid = self.subscribe(self.inbox + ".*", self._on_reply)
        token = str(self._next_req)
        self._next_req += 1
        self._replies[token] = None
        self.publish(subject, payload, self.inbox + "." + token)
        start = self._clock()
        try:
            while True:
                self.poll()
                if self._replies[token] is not None:
                    return self._replies[token]
                if _ticks_diff(self._clock(), start) >= timeout_ms:
                    return None
                if hasattr(time, "sleep_ms"):
                    time.sleep_ms(1)  # MicroPython only; under CPython request() spins on the clock
        finally:
            self._replies.pop(token, None)

    def _on_reply(self, msg):
        token = msg.subject[len(self.inbox) + 1 :]
        if token in self._replies:
            self._replies[token] = msg.data

    # -- input ----------------------------------------------------------------------------------
    def poll(self):
        """Read what the UART has and process it (MSG callbacks, PING->PONG). Returns messages handled."""
        if hasattr(self.uart, "any"):
            n = self.uart.any()
            data = self.uart.read(n) if n else None
        else:
            data = self.uart.read(256)
        return self.feed(data) if data else 0

    def feed(self, data):
        """Process received bytes (for callers that read the UART themselves). Returns messages handled."""
        if self.mode == MODE_NATS:
            return self._proto(bytes(data))
        handled = 0
        data = bytes(data)
        while data:
            i = data.find(b"\x00")
            seg = data if i < 0 else data[:i]
            data = b"" if i < 0 else data[i + 1 :]
            if self._fskip:
                self.bytes_dropped += len(seg)
            elif len(self._fbuf) + len(seg) > self.max_line + self.max_payload + 8:
                self.overflows += 1
                self.bytes_dropped += len(self._fbuf) + len(seg)
                self._fbuf = b""
                self._fskip = True
            else:
                self._fbuf += seg
            if i < 0:
                break
            frame, self._fbuf = self._fbuf, b""
            if self._fskip:
                self._fskip = False
                continue
            if not frame:
                continue
            raw = cobs_decode(frame)
            if raw is None or len(raw) < 2 or crc16(raw[:-2]) != (raw[-2] << 8 | raw[-1]):
                self.frames_bad += 1
                self.bytes_dropped += len(frame)
                continue
            handled += self._proto(raw[:-2])
        return handled

    def _proto(self, data):
        buf = self._buf + data
        handled = 0
        pos = 0
        while pos < len(buf):
            if self._skip:
                n = min(self._skip, len(buf) - pos)
                self._skip -= n
                self.bytes_dropped += n
                pos += n
                continue
            if self._msg is not None:
                subject, sid, reply, hdr, total = self._msg
                if len(buf) - pos < total + 2:
                    break
                body = buf[pos + max(hdr, 0) : pos + total]
                ok = buf[pos + total : pos + total + 2] == b"\r\n"
                pos += total + 2 if ok else total
                self._msg = None
                if not ok:
                    self.lines_bad += 1
                    self.bytes_dropped += total
                    continue
                handled += self._dispatch(subject, sid, reply, body)
                continue
            nl = buf.find(b"\n", pos)
            if nl < 0:
                if self._lskip or len(buf) - pos > self.max_line:
                    if not self._lskip:
                        self.overflows += 1
                    self._lskip = True
                    self.bytes_dropped += len(buf) - pos
                    pos = len(buf)
                break
            line = buf[pos:nl]
            pos = nl + 1
            if self._lskip:
                self._lskip = False
                self.bytes_dropped += len(line)
                continue
            self._control(line.rstrip(b"\r"))
        self._buf = buf[pos:]
        return handled

    def _control(self, line):
        if len(line) > self.max_line:
            self.overflows += 1
            self.bytes_dropped += len(line)
            return
        parts = line.split()
        if not parts:
            return
        op = parts[0].upper()
        if op == b"PING":
            self._send(b"PONG\r\n")
        elif op in (b"PONG", b"+OK", b"INFO"):
            pass
        elif op == b"-ERR":
            self.errors += 1
            self.last_error = line[5:].strip().strip(b"'").decode()
        elif op == b"MSG" or op == b"HMSG":
            args = parts[1:]
            nums = 1 if op == b"MSG" else 2
            if len(args) not in (2 + nums, 3 + nums) or not all(a.isdigit() for a in args[-nums:]):
                self.lines_bad += 1
                self.bytes_dropped += len(line)
                return
            total = int(args[-1])
            hdr = int(args[-2]) if nums == 2 else -1
            if not args[1].isdigit() or hdr > total:
                self.lines_bad += 1
                self.bytes_dropped += len(line)
                return
            reply = args[2].decode() if len(args) == 3 + nums else None
            if total > self.max_payload:
                self.overflows += 1
                self.bytes_dropped += len(line)
                self._skip = total + 2
                return
            self._msg = (args[0].decode(), int(args[1]), reply, hdr, total)
        else:
            self.lines_bad += 1
            self.bytes_dropped += len(line)

    def _dispatch(self, subject, sid, reply, data):
        cb = self._subs.get(sid)
        if cb is None:
            return 0
        self.msgs_in += 1
        cb(Msg(self, subject, sid, reply, data))
        return 1
