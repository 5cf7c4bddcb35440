"""File-level helpers of the outbox: names, the state file, atomic replace, directory fsync.

The state file (``outbox.state``) is small JSON so that an operator can read it::

    {"version": 1, "confirmed": 812, "dropped_through": 0, "seq_ceiling": 1049388}

``confirmed``: every record with seq <= this was confirmed by the hub. ``dropped_through``: every record
with seq <= this was dropped (full policy or age). ``seq_ceiling``: no seq above this was ever handed
to a reader; a restart continues above it, which is how seqs stay unique across crashes even when the
newest records never reached the disk (see :mod:`edge.store.log`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Final

SEGMENT_SUFFIX: Final = ".seg"
STATE_NAME: Final = "outbox.state"
LOCK_NAME: Final = "outbox.lock"
TMP_SUFFIX: Final = ".tmp"
_SEGMENT_RE: Final = re.compile(r"^(\d{20})\.seg$")
STATE_VERSION: Final = 1


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    m = _SEGMENT_RE.match(name)
    return int(m.group(1)) if m else None


def list_segments(directory: str) -> list[tuple[int, str]]:
    """``(first_seq, path)`` of every segment file, oldest first."""
    out = []
    for name in os.listdir(directory):
        first = parse_segment_name(name)
        if first is not None:
            out.append((first, os.path.join(directory, name)))
    out.sort()
    return out


def fsync_dir(directory: str) -> None:
    """Make file creations, renames and removals in ``directory`` durable (POSIX needs this)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    write tmp, fsync tmp, rename over, fsync the directory (the rename itself must be durable too).
    """
    tmp = path + TMP_SUFFIX
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


_fdatasync: Final = getattr(os, "fdatasync", os.fsync)  # file size is "needed metadata": fdatasync suffices


class SegmentIO:
    """The system calls the outbox's writer thread makes on its files.

    The one seam for failures: a test subclass raises ``OSError(ENOSPC)`` (or EIO) from any of these to
    drive the log's disk-error handling without a full filesystem. Every method blocks; writer thread only.
    """

    def open_segment(self, path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def write_at(self, fd: int, data: bytes, offset: int) -> None:
        """All of ``data`` at ``offset``, or OSError (a short write is continued; the next call fails)."""
        view = memoryview(data)
        while view:
            view = view[os.pwrite(fd, view, offset + len(data) - len(view)) :]

    def datasync(self, fd: int) -> None:
        _fdatasync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def write_state(self, directory: str, state: StoreState) -> None:
        write_atomic(os.path.join(directory, STATE_NAME), state.encode())

    def free_bytes(self, directory: str) -> int:
        """Bytes an unprivileged writer may still use on the directory's filesystem."""
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize


@dataclass(frozen=True, slots=True)
class StoreState:
    confirmed: int = 0
    dropped_through: int = 0
    seq_ceiling: int = 0

    def encode(self) -> bytes:
        doc = {
            "version": STATE_VERSION,
            "confirmed": self.confirmed,
            "dropped_through": self.dropped_through,
            "seq_ceiling": self.seq_ceiling,
        }
        return (json.dumps(doc) + "\n").encode()


def read_state(directory: str) -> tuple[StoreState | None, str | None]:
    """Read the state file: ``(state, None)``, ``(None, None)`` if absent, ``(None, problem)`` if unreadable."""
    path = os.path.join(directory, STATE_NAME)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4096)
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ValueError("unknown version")
        values = [doc[k] for k in ("confirmed", "dropped_through", "seq_ceiling")]
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 64 for x in values):
            raise ValueError("bad field")
    except (ValueError, KeyError) as exc:
        return None, f"unreadable state file {path}: {exc}"
    return StoreState(*values), None
