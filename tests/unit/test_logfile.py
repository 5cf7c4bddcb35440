"""The -l log file's queue: bounded, never blocking, drops counted and reported."""

from __future__ import annotations

import logging
import queue

from edge.runtime.logfile import BoundedQueueHandler


def record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("edge", logging.INFO, __file__, 0, msg, None, None)


def test_full_queue_drops_and_counts_then_reports() -> None:
    q: queue.Queue[logging.LogRecord] = queue.Queue(2)
    h = BoundedQueueHandler(q)
    h.setFormatter(logging.Formatter("%(message)s"))
    for i in range(5):
        h.handle(record(f"line {i}"))
    assert h.dropped == 3
    assert [q.get_nowait().getMessage() for _ in range(2)] == ["line 0", "line 1"]
    h.handle(record("line 5"))
    assert h.dropped == 0
    assert [q.get_nowait().getMessage() for _ in range(2)] == [
        "3 log lines dropped: the log file could not keep up", "line 5"]
