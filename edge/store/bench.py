"""Append micro-benchmark for ``nats-edge bench``: how fast the outbox takes records, and what it writes.

Measured from the first append until every record is durable (fsynced), on the calling thread (it
plays the event loop: appends never block; on BUSY it waits for the writer, which a broker would do
by pausing its readers).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from edge.store.log import BUSY, Outbox, OutboxOptions

__all__ = ["append_benchmark"]


def append_benchmark(
    directory: str | os.PathLike[str],
    count: int = 200_000,
    size: int = 128,
    fsync_interval: float = 0.1,
    fsync_every: int = 1000,
    subject: bytes = b"telemetry.gw1.sensor.temp",
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Append ``count`` records of ``size`` payload bytes to a fresh outbox in ``directory``.

    Returns a dict: ``msgs_per_s``, ``seconds``, ``bytes_written``, ``bytes_per_msg``,
    ``amplification`` (bytes written / (payload + subject) bytes), ``fsyncs``, ``busy`` (BUSY answers
    waited out), ``append_us`` (mean time inside append()).
    """
    payload = os.urandom(size)
    durable = threading.Condition()
    state = {"durable": 0}

    def on_durable(seq: int) -> None:
        with durable:
            state["durable"] = seq
            durable.notify_all()

    opts = OutboxOptions(
        fsync_interval=fsync_interval, fsync_every=fsync_every, max_msgs=max(count + 1, 1_000_000),
        max_bytes=max(256 * 1024 * 1024, 4 * count * (size + 128)),
    )
    box = Outbox(directory, opts, on_durable)
    busy = 0
    append_time = 0.0
    try:
        append = box.append
        deadline = time.monotonic() + timeout
        t0 = time.perf_counter()
        last = 0
        i = 0
        while i < count:
            a = time.perf_counter()
            seq = append(subject, payload)
            append_time += time.perf_counter() - a
            if seq == BUSY:
                busy += 1
                with durable:  # wait for the writer to drain a batch
                    durable.wait_for(lambda: box.pending_bytes < opts.max_pending_bytes // 2, 1.0)
                if time.monotonic() > deadline:
                    raise TimeoutError("benchmark timed out")
                continue
            if seq < 0:
                raise RuntimeError(f"append failed: {seq}")
            last = seq
            i += 1
        with durable:
            if not durable.wait_for(lambda: state["durable"] >= last, max(0.0, deadline - time.monotonic())):
                raise TimeoutError("records did not become durable in time")
        elapsed = time.perf_counter() - t0
        st = box.stats()
    finally:
        box.close()
    content = count * (size + len(subject))
    return {
        "count": count,
        "size": size,
        "fsync_interval": fsync_interval,
        "fsync_every": fsync_every,
        "seconds": round(elapsed, 4),
        "msgs_per_s": round(count / elapsed),
        "bytes_written": st.bytes_written,
        "bytes_per_msg": round(st.bytes_written / count, 1),
        "amplification": round(st.bytes_written / content, 3),
        "fsyncs": st.fsyncs,
        "busy": busy,
        "append_us": round(append_time / count * 1e6, 2),
    }
