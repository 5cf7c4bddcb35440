"""Logging in nats-server's shape: ``[pid] 2026/11/26 12:00:00.123456 [INF] message``.

-D turns on debug, -V trace (protocol lines, logged at debug level through the ``trace`` flag), -l
writes to a file (through a writer thread: :mod:`edge.runtime.logfile`). Under systemd
(``JOURNAL_STREAM`` set) lines carry a ``<N>`` priority prefix and no timestamp, since journald adds
its own.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Final

_LEVEL_TAGS: Final = {
    logging.DEBUG: "DBG",
    logging.INFO: "INF",
    logging.WARNING: "WRN",
    logging.ERROR: "ERR",
    logging.CRITICAL: "FTL",
}
# sd-daemon(3) priorities for the same levels.
_SYSLOG_PRIORITY: Final = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class NatsStyleFormatter(logging.Formatter):
    def __init__(self, *, logtime: bool = True, journald: bool = False) -> None:
        super().__init__()
        self.logtime = logtime
        self.journald = journald
        self.pid = os.getpid()

    def format(self, record: logging.LogRecord) -> str:
        tag = "TRC" if record.name == "edge.trace" else _LEVEL_TAGS.get(record.levelno, "INF")
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        if self.journald:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>[{tag}] {message}"
        if self.logtime:
            t = time.localtime(record.created)
            stamp = time.strftime("%Y/%m/%d %H:%M:%S", t) + f".{int(record.created % 1 * 1e6):06d}"
            return f"[{self.pid}] {stamp} [{tag}] {message}"
        return f"[{self.pid}] [{tag}] {message}"


def configure_logging(
    *, debug: bool = False, trace: bool = False, log_file: str | None = None, logtime: bool = True
) -> None:
    """Install the one handler of the ``edge`` logger tree (stderr, or the -l file)."""
    journald = log_file is None and bool(os.environ.get("JOURNAL_STREAM"))
    formatter = NatsStyleFormatter(logtime=logtime, journald=journald)
    handler: logging.Handler
    if log_file:
        from edge.runtime import logfile

        handler = logfile.file_handler(log_file, formatter)
    else:
        if "edge.runtime.logfile" in sys.modules:
            sys.modules["edge.runtime.logfile"].stop()
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
    root = logging.getLogger("edge")
    for h in list(root.handlers):
        if h is not handler:
            root.removeHandler(h)
            h.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if (debug or trace) else logging.INFO)
    root.propagate = False
