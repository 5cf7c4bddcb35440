"""The asyncio layer: durability notifications on the loop, reads from memory and from disk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from edge.store.async_outbox import AsyncOutbox
from edge.store.log import OutboxOptions

SUBJ = b"telemetry.gw1.temp"


async def test_durable_callback_runs_on_loop(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    calls: list[tuple[int, int]] = []
    box = await AsyncOutbox.async_open(
        tmp_path, OutboxOptions(fsync_interval=0.005, fsync_every=100, segment_bytes=4096),
        lambda seq: calls.append((seq, threading.get_ident())),
    )
    try:
        seqs = [box.append(SUBJ, b"%d" % i) for i in range(250)]
        assert seqs == list(range(1, 251))
        async with asyncio.timeout(10):
            await box.async_wait_durable(250)
        assert box.durable_seq == 250
        assert calls and calls[-1][0] == 250
        assert all(t == loop_thread for _, t in calls)
        assert [s for s, _ in calls] == sorted({s for s, _ in calls})  # coalesced, increasing
        got = await box.async_read_batch(100, 10, 1 << 20)
        assert [r.seq for r in got] == list(range(101, 111))
        box.confirm(200)
        assert await box.async_flush()
        assert box.stats().confirmed_seq == 200
    finally:
        await box.async_close()


async def test_read_from_disk_after_reopen(tmp_path: Path) -> None:
    opts = OutboxOptions(fsync_interval=0.005, segment_bytes=4096)
    box = await AsyncOutbox.async_open(tmp_path, opts)
    for i in range(100):
        box.append(SUBJ, b"%d" % i)
    await box.async_close()
    box = await AsyncOutbox.async_open(tmp_path, opts)
    try:
        assert box.report.records == 100
        assert box.outbox.read_memory(0, 10, 1 << 20) is None  # needs the disk: goes to the reader thread
        seen: list[int] = []
        after = 0
        for _ in range(100):
            got = await box.async_read_batch(after, 30, 1 << 20)
            if not got:
                break
            seen += [r.seq for r in got]
            after = got[-1].seq
        assert seen == list(range(1, 101))
    finally:
        await box.async_close()
