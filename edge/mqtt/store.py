"""MQTT state on the gateway's disk: persistent sessions and retained messages, in one journal.

The journal (``<dir>/state.journal``) is an append-only file of records ``u32 length | u32 crc32 | body``,
each body an op byte and length-prefixed fields. Replaying it rebuilds :class:`StoreState`; a torn or
corrupt tail (a crash mid-write) is cut at the last good record. When the file grows past twice the
live state (and at least :data:`COMPACT_MIN`) it is rewritten as a snapshot (write, rename).

Durability: a record is written to the file (the kernel's page cache) with one ``write`` before the
call that caused it returns, so everything acknowledged to a client survives SIGKILL; ``fsync`` runs in
a worker thread at most ``fsync_interval`` after a write (power loss loses at most that window), as the
outbox does, because SD cards wear. Writes are small (one record); compaction writes the live state at
once (bounded by ``max_store_bytes``).

Ops (fields after the op byte):
``S`` cid, subscriptions (u16 len filter + qos byte, repeated) - session created/updated;
``X`` cid - session deleted; ``M`` cid, mid(8), topic, payload, flags (qos | retain<<2) - queued message;
``I`` cid, mid(8), pid(2) - sent with packet id; ``L`` cid, mid(8) - PUBREC received (PUBREL owed);
``A`` cid, mid(8) - done; ``P``/``p`` cid, pid(2) - inbound QoS 2 id received / released;
``R`` topic, payload, qos(1) - retained set; ``r`` topic - retained cleared.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger("edge.mqtt")

JOURNAL: Final = "state.journal"
COMPACT_MIN: Final = 1024 * 1024
_HEAD: Final = struct.Struct(">II")
_U32: Final = struct.Struct(">I")
_MAX_RECORD: Final = 1 << 28


@dataclass(slots=True)
class StoredMessage:
    """An outbound QoS 1/2 message of a session: queued, sent (``pid``) or released (PUBREC seen)."""

    mid: int
    topic: bytes
    payload: bytes
    qos: int
    retain: bool = False
    pid: int = 0
    released: bool = False

    @property
    def size(self) -> int:
        return len(self.topic) + len(self.payload) + 32


@dataclass(slots=True)
class SessionState:
    client_id: str
    subs: dict[bytes, int] = field(default_factory=dict)  # topic filter -> granted QoS
    messages: dict[int, StoredMessage] = field(default_factory=dict)  # mid -> message, in queue order
    qos2_in: set[int] = field(default_factory=set)  # inbound QoS 2 packet ids awaiting PUBREL
    next_mid: int = 1


@dataclass(slots=True)
class StoreState:
    sessions: dict[str, SessionState] = field(default_factory=dict)
    retained: dict[bytes, tuple[bytes, int]] = field(default_factory=dict)  # topic -> (payload, qos)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_fd(fd: int, data: bytes, fsync: bool) -> None:
    """A writer job (worker thread): append ``data``, then fsync if asked."""
    if data:
        _write_all(fd, data)
    if fsync:
        os.fsync(fd)


def _fsync_close(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass
    os.close(fd)


def _record(op: bytes, *fields: bytes) -> bytes:
    body = op + b"".join(_U32.pack(len(f)) + f for f in fields)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _fields(body: bytes) -> list[bytes]:
    out = []
    pos = 1
    while pos < len(body):
        (n,) = _U32.unpack_from(body, pos)
        pos += 4
        if pos + n > len(body):
            raise ValueError("field past the end")
        out.append(body[pos:pos + n])
        pos += n
    return out


def _pack_subs(subs: dict[bytes, int]) -> bytes:
    return b"".join(len(f).to_bytes(2, "big") + f + bytes((q,)) for f, q in subs.items())


def _unpack_subs(data: bytes) -> dict[bytes, int]:
    subs = {}
    pos = 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        subs[data[pos + 2:pos + 2 + n]] = data[pos + 2 + n]
        pos += 3 + n
    return subs


def _apply(state: StoreState, body: bytes) -> None:
    op = body[:1]
    f = _fields(body)
    if op == b"R":
        state.retained[f[0]] = (f[1], f[2][0])
        return
    if op == b"r":
        state.retained.pop(f[0], None)
        return
    cid = f[0].decode()
    if op == b"X":
        state.sessions.pop(cid, None)
        return
    if op == b"S":
        s = state.sessions.get(cid)
        if s is None:
            s = state.sessions[cid] = SessionState(cid)
        s.subs = _unpack_subs(f[1])
        return
    s = state.sessions.get(cid)
    if s is None:
        return  # a record of a session deleted later in the same journal
    if op == b"M":
        mid = int.from_bytes(f[1], "big")
        flags = f[4][0]
        s.messages[mid] = StoredMessage(mid, f[2], f[3], flags & 3, bool(flags & 4))
        s.next_mid = max(s.next_mid, mid + 1)
    elif op in (b"I", b"L", b"A"):
        mid = int.from_bytes(f[1], "big")
        m = s.messages.get(mid)
        if m is None:
            return
        if op == b"I":
            m.pid = int.from_bytes(f[2], "big")
        elif op == b"L":
            m.released = True
        else:
            del s.messages[mid]
    elif op == b"P":
        s.qos2_in.add(int.from_bytes(f[1], "big"))
    elif op == b"p":
        s.qos2_in.discard(int.from_bytes(f[1], "big"))


def read_journal(path: str) -> tuple[StoreState, int, int]:
    """Replay a journal: (state, length of the good prefix, bytes cut from a torn/corrupt tail)."""
    state = StoreState()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return state, 0, 0
    pos = 0
    while pos + 8 <= len(data):
        n, crc = _HEAD.unpack_from(data, pos)
        body = data[pos + 8:pos + 8 + n]
        if n == 0 or n > _MAX_RECORD or len(body) != n or zlib.crc32(body) != crc:
            break
        try:
            _apply(state, body)
        except (ValueError, IndexError, UnicodeDecodeError):
            break
        pos += 8 + n
    return state, pos, len(data) - pos


def _snapshot(state: StoreState) -> bytes:
    parts = []
    for topic, (payload, qos) in state.retained.items():
        parts.append(_record(b"R", topic, payload, bytes((qos,))))
    for s in state.sessions.values():
        cid = s.client_id.encode()
        parts.append(_record(b"S", cid, _pack_subs(s.subs)))
        for m in s.messages.values():
            mid = m.mid.to_bytes(8, "big")
            parts.append(_record(b"M", cid, mid, m.topic, m.payload, bytes((m.qos | (4 if m.retain else 0),))))
            if m.pid:
                parts.append(_record(b"I", cid, mid, m.pid.to_bytes(2, "big")))
            if m.released:
                parts.append(_record(b"L", cid, mid))
        parts.extend(_record(b"P", cid, pid.to_bytes(2, "big")) for pid in sorted(s.qos2_in))
    return b"".join(parts)


class Journal:
    """The open journal: replayed state plus one method per op, each appending one record.

    Without a loop (tests, tools) every record is written at once. With a loop, records are buffered and
    written by one job at a time in the default executor (the event loop never touches the disk); a
    connection holds its output until :attr:`unwritten` is False (:meth:`after_write`), so nothing is
    acknowledged to a device before its record is in the file. ``fsync`` follows within ``fsync_interval``.
    """

    def __init__(self, directory: str, loop: asyncio.AbstractEventLoop | None = None,
                 fsync_interval: float = 1.0) -> None:
        self.directory = directory
        self.path = os.path.join(directory, JOURNAL)
        self.loop = loop
        self.fsync_interval = fsync_interval
        self.fd = -1
        self.size = 0
        self.live = 0  # approximate bytes of the live state (what a snapshot would write)
        self.truncated = 0  # bytes cut from a torn tail at open
        self.write_errors = 0
        self.compactions = 0
        self.state = StoreState()
        self._buffer: list[bytes] = []
        self._appended = 0  # records appended so far
        self._written = 0  # records in the file so far
        self._job: asyncio.Future[None] | None = None
        self._scheduled = False
        self._waiters: list[tuple[int, Callable[[], None]]] = []
        self._last_fsync = 0.0
        self._fsync_handle: asyncio.TimerHandle | None = None

    @property
    def unwritten(self) -> bool:
        return self._written < self._appended

    def after_write(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop once every record appended so far is in the file."""
        if not self.unwritten:
            callback()
            return
        self._waiters.append((self._appended, callback))

    def open(self) -> StoreState:
        """Read (and repair) the journal, compact it, and open it for appending. Blocking: call in a
        worker thread before the listener starts."""
        os.makedirs(self.directory, exist_ok=True)
        self.state, _good, self.truncated = read_journal(self.path)
        if self.truncated:
            log.warning("mqtt: cut %d bytes of a torn or corrupt tail from %s", self.truncated, self.path)
        snap = _snapshot(self.state)
        self._replace(snap, True)
        self.size = self.live = len(snap)
        return self.state

    def _replace(self, snap: bytes, sync: bool) -> None:
        """Replace the journal file by ``snap`` (write, rename). Blocking."""
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, snap)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        old, self.fd = self.fd, os.open(self.path, os.O_WRONLY | os.O_APPEND)
        if old >= 0:
            os.close(old)

    async def close(self) -> None:
        """Write what is buffered, fsync, close (the loop's journal; the sync one needs no close)."""
        if self._fsync_handle is not None:
            self._fsync_handle.cancel()
            self._fsync_handle = None
        while self._job is not None or self._buffer:
            if self._job is None:
                self._start()
            assert self._job is not None
            await self._job
        fd, self.fd = self.fd, -1
        if fd >= 0:
            loop = self.loop or asyncio.get_running_loop()
            await loop.run_in_executor(None, _fsync_close, fd)

    def close_sync(self) -> None:
        if self.fd >= 0:
            _fsync_close(self.fd)
            self.fd = -1

    def _append(self, rec: bytes, live_delta: int) -> None:
        if self.fd < 0:
            return
        self._appended += 1
        self.size += len(rec)
        self.live = max(0, self.live + live_delta)
        if self.loop is None:  # synchronous: tests and tools
            try:
                _write_all(self.fd, rec)
            except OSError as exc:
                self._failed(exc)
            self._written = self._appended
            return
        self._buffer.append(rec)
        if self._job is None and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._start)  # one job per loop turn's records

    def _start(self) -> None:
        self._scheduled = False
        if self._job is not None or not self._buffer:
            return
        assert self.loop is not None
        upto = self._appended
        if self.size > COMPACT_MIN and self.size > 2 * self.live:
            # The state already includes every buffered record: the snapshot replaces them all.
            snap = _snapshot(self.state)
            self._buffer.clear()
            self.size = self.live = len(snap)
            self.compactions += 1
            job = self.loop.run_in_executor(None, self._replace, snap, False)
        else:
            data = b"".join(self._buffer)
            self._buffer.clear()
            fsync = self.loop.time() - self._last_fsync >= self.fsync_interval
            if fsync:
                self._last_fsync = self.loop.time()
            job = self.loop.run_in_executor(None, _write_fd, self.fd, data, fsync)
        self._job = job
        job.add_done_callback(lambda f: self._done(f, upto))

    def _done(self, fut: asyncio.Future[None], upto: int) -> None:
        self._job = None
        exc = fut.exception()
        if exc is not None:
            self._failed(exc)
        self._written = upto
        if self._waiters:
            ready = [cb for seq, cb in self._waiters if seq <= upto]
            self._waiters = [(seq, cb) for seq, cb in self._waiters if seq > upto]
            for cb in ready:
                cb()
        if self._buffer:
            self._start()
        elif self._fsync_handle is None and self.loop is not None and self.fd >= 0:
            # fsync within fsync_interval of the last write even if no other write follows.
            self._fsync_handle = self.loop.call_later(self.fsync_interval, self._fsync_tick)

    def _fsync_tick(self) -> None:
        self._fsync_handle = None
        if self.loop is None or self._job is not None or self.fd < 0:
            return
        self._last_fsync = self.loop.time()
        upto = self._written
        job = self.loop.run_in_executor(None, _write_fd, self.fd, b"", True)
        self._job = job
        job.add_done_callback(lambda f: self._done_fsync(f, upto))

    def _done_fsync(self, fut: asyncio.Future[None], upto: int) -> None:
        self._job = None
        exc = fut.exception()
        if exc is not None:
            self._failed(exc)
        if self._buffer:
            self._start()

    def _failed(self, exc: BaseException) -> None:
        self.write_errors += 1
        log.error("mqtt: cannot write %s: %s", self.path, exc)

    # -- ops ------------------------------------------------------------------------------------

    def session(self, s: SessionState) -> None:
        self._append(_record(b"S", s.client_id.encode(), _pack_subs(s.subs)), 0)

    def delete_session(self, s: SessionState) -> None:
        self._append(_record(b"X", s.client_id.encode()), -sum(m.size for m in s.messages.values()))

    def message(self, s: SessionState, m: StoredMessage) -> None:
        rec = _record(b"M", s.client_id.encode(), m.mid.to_bytes(8, "big"), m.topic, m.payload,
                      bytes((m.qos | (4 if m.retain else 0),)))
        self._append(rec, len(rec))

    def sent(self, s: SessionState, m: StoredMessage) -> None:
        self._append(_record(b"I", s.client_id.encode(), m.mid.to_bytes(8, "big"), m.pid.to_bytes(2, "big")), 0)

    def released(self, s: SessionState, m: StoredMessage) -> None:
        self._append(_record(b"L", s.client_id.encode(), m.mid.to_bytes(8, "big")), 0)

    def done(self, s: SessionState, m: StoredMessage) -> None:
        self._append(_record(b"A", s.client_id.encode(), m.mid.to_bytes(8, "big")), -m.size)

    def qos2_received(self, s: SessionState, pid: int, *, released: bool = False) -> None:
        self._append(_record(b"p" if released else b"P", s.client_id.encode(), pid.to_bytes(2, "big")), 0)

    def retain(self, topic: bytes, payload: bytes, qos: int, previous: int) -> None:
        rec = _record(b"R", topic, payload, bytes((qos,)))
        self._append(rec, len(rec) - previous)

    def clear_retained(self, topic: bytes, previous: int) -> None:
        self._append(_record(b"r", topic), -previous)
