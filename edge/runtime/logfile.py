"""The -l log file, written by a thread of its own (imported only when -l is given).

The event loop only formats a line and puts it on a bounded queue, so a stalling SD card delays the
log, never the broker (or its systemd watchdog). When the queue is full a line is dropped and
counted, and the next line that fits is preceded by one that reports the count.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
from typing import Final

# Lines waiting for the writer thread. At ~150 B a line this bounds the backlog near 1.5 MB,
# minutes of -DV trace on a stalled card; past it lines are dropped and counted.
LOG_QUEUE_LINES: Final = 10_000


class BoundedQueueHandler(logging.handlers.QueueHandler):
    """A QueueHandler that never blocks: a full queue drops the record and counts it in ``dropped``."""

    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if self.dropped:
                note = logging.LogRecord("edge", logging.WARNING, __file__, 0,
                                         "%d log lines dropped: the log file could not keep up",
                                         (self.dropped,), None)
                self.queue.put_nowait(self.prepare(note))
                self.dropped = 0
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


_listener: logging.handlers.QueueListener | None = None


def stop() -> None:
    """Write out what is queued and stop the writer thread (at exit, or before reconfiguring)."""
    global _listener
    if _listener is not None:
        _listener.stop()
        for h in _listener.handlers:
            h.close()
        _listener = None


def file_handler(path: str, formatter: logging.Formatter) -> logging.Handler:
    """The handler for the ``edge`` logger: formats on the caller's thread, writes on the writer's.

    Raises OSError when the file cannot be opened (before any thread starts).
    """
    global _listener
    stop()
    target = logging.FileHandler(path, encoding="utf-8")
    target.setFormatter(logging.Formatter("%(message)s"))  # lines arrive formatted by the queue handler
    q: queue.Queue[logging.LogRecord] = queue.Queue(LOG_QUEUE_LINES)
    handler = BoundedQueueHandler(q)
    handler.setFormatter(formatter)
    _listener = logging.handlers.QueueListener(q, target)
    _listener.start()
    return handler


atexit.register(stop)
