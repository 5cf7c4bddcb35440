"""Store-and-forward on a full disk: a real nats-edge whose outbox lives on a 2 MB tmpfs the test mounts.

The hub is a real nats-server behind the test's TCP proxy (the fixtures of test_store_forward.py);
publishers are nats-py clients using request(), which the outbox answers once a record is stored.
The disk is filled with a filler file and freed by deleting it. Needs root (mount); skipped otherwise.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from tests.integration.test_store_forward import Rig, hub_collector, wait_leaf
from tests.support.waiting import async_wait_for

pytestmark = pytest.mark.timeout(120)

SUBJECT = "telemetry.gw1.df"
PAYLOAD = 1000  # bytes per message: a frame is about 1.05 KB
ENOSPC_REPLY = {"error": {"code": 503, "description": "outbox disk full (ENOSPC: No space left on device)"}}
SF = 'segment_bytes = 65536\nreplay_rate = 0\nfull_policy = "{policy}"'


@pytest.fixture
async def fs_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """A Rig whose outbox directory is on a fresh 2 MB tmpfs (unmounted after the processes stopped)."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = await asyncio.to_thread(subprocess.run, ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                                   capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    rig = Rig(tmp_path)
    rig.outbox = mnt / "outbox"
    try:
        yield rig
    finally:
        await rig.close()
        await asyncio.to_thread(subprocess.run, ["umount", str(mnt)], check=True)


def payload(i: int) -> bytes:
    return b"%06d" % i + b"x" * (PAYLOAD - 6)


def fill_disk(mnt: Path, leave: int) -> Path:
    """A filler file that leaves about ``leave`` bytes free on the filesystem."""
    st = os.statvfs(mnt)
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def http(rig: Rig, path: str) -> tuple[int, Any]:
    assert rig.edge is not None
    try:
        with urllib.request.urlopen(rig.edge.url_of("monitoring") + path, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def requests(nc: Client, indexes: range) -> list[dict[str, Any]]:
    """One request per index, all in flight at once; each must be answered within its deadline."""
    replies = await asyncio.gather(*(nc.request(SUBJECT, payload(i), timeout=10) for i in indexes))
    return [json.loads(m.data) for m in replies]


async def start(rig: Rig, policy: str) -> tuple[Client, list[Any]]:
    """Hub, edge and a publisher; the link is cut so that nothing is confirmed (and deleted) meanwhile."""
    await rig.start_hub()
    assert rig.hub is not None and rig.proxy is not None
    at_hub = await hub_collector(await rig.connect(rig.hub))
    edge = rig.start_edge(SF.format(policy=policy))
    await wait_leaf(rig.hub)
    pub = await rig.connect(edge)
    rig.proxy.cut()
    await wait_leaf(rig.hub, up=False)
    return pub, at_hub


async def deliver_and_check(rig: Rig, at_hub: list[Any], expected: list[bytes]) -> None:
    """Restore the link; the hub gets exactly ``expected``, in order, and the outbox drains to empty."""
    assert rig.proxy is not None and rig.hub is not None
    rig.proxy.restore()
    async def drained() -> bool:
        return len(at_hub) >= len(expected) and await rig.metric_is("depth_msgs", 0)

    await async_wait_for(drained, 30, "the outbox drained to the hub", interval=0.02)
    await rig.clients[0].flush()  # the hub-side subscriber: everything the hub confirmed has arrived
    assert len(at_hub) == len(expected)
    assert [m.data for m in at_hub] == expected


def log_lines(rig: Rig) -> tuple[list[str], list[str]]:
    assert rig.edge is not None
    text = rig.edge.log()
    assert "Traceback" not in text, text[-3000:]
    lines = text.splitlines()
    return [ln for ln in lines if "cannot write (ENOSPC" in ln], [ln for ln in lines if "writable again" in ln]


async def test_reject_new_answers_every_publisher_and_stores_no_rejected_record(fs_rig: Rig) -> None:
    rig = fs_rig
    pub, at_hub = await start(rig, "reject_new")
    before = await requests(pub, range(20))
    assert before == [{"stream": "outbox", "seq": s} for s in range(1, 21)]

    filler = fill_disk(rig.outbox.parent, leave=48 * 1024)
    n = 400
    replies = await requests(pub, range(100, 100 + n))  # each answered (no timeout), success or the error
    accepted = [(r["seq"], 100 + i) for i, r in enumerate(replies) if "seq" in r]
    errors = [r for r in replies if "seq" not in r]
    assert errors and all(r == ENOSPC_REPLY for r in errors), errors[:3]
    assert len(accepted) + len(errors) == n
    assert [s for s, _ in accepted] == sorted(s for s, _ in accepted)
    # While the disk is full, a publish is refused at once, without touching the disk.
    assert json.loads((await pub.request(SUBJECT, payload(999), timeout=5)).data) == ENOSPC_REPLY
    m = await rig.metrics()
    assert (m["disk_full"], m["rejected_disk_full"], m["rejected"]) == (1, len(errors) + 1, len(errors) + 1)
    assert m["publisher_errors"] == len(errors) + 1 and m["publisher_acks"] == 20 + len(accepted)
    assert m["depth_msgs"] == 20 + len(accepted) and m["dropped"] == 0
    status, health = http(rig, "/healthz")
    assert (status, health) == (503, {"status": "unavailable", "error": "outbox cannot write (ENOSPC: No space "
                                      "left on device): store-and-forward messages are rejected"})
    status, varz = http(rig, "/varz")
    assert status == 200 and varz["outbox"]["disk_full"] is True
    assert varz["outbox"]["disk_error"] == "ENOSPC: No space left on device"

    filler.unlink()
    await async_wait_for(lambda: http(rig, "/healthz") == (200, {"status": "ok"}), 20, "the outbox resumes by itself",
                         interval=0.02)
    after = await requests(pub, range(1000, 1020))
    assert all("seq" in r for r in after), after
    assert min(r["seq"] for r in after) > max([20] + [s for s, _ in accepted])
    m = await rig.metrics()
    assert (m["disk_full"], m["rejected"]) == (0, len(errors) + 1)
    assert http(rig, "/varz")[1]["outbox"]["disk_full"] is False

    expected = [payload(i) for i in range(20)] + [payload(i) for _, i in accepted]
    expected += [payload(i) for i in range(1000, 1020)]
    await deliver_and_check(rig, at_hub, expected)
    entering, leaving = log_lines(rig)
    assert len(entering) == 1 and len(leaving) == 1, (entering, leaving)


async def test_drop_oldest_makes_room_by_dropping_the_oldest_segments(fs_rig: Rig) -> None:
    rig = fs_rig
    pub, at_hub = await start(rig, "drop_oldest")
    old = await requests(pub, range(300))  # about 5 segments of 64 KiB
    assert all("seq" in r for r in old)
    filler = fill_disk(rig.outbox.parent, leave=16 * 1024)
    new = await requests(pub, range(1000, 1200))  # the disk is full: the oldest segments make room
    assert all("seq" in r for r in new), [r for r in new if "seq" not in r][:3]
    m = await rig.metrics()
    assert m["disk_full"] == 0 and m["rejected"] == 0 and m["dropped_disk_full"] > 0
    assert m["dropped"] == m["dropped_disk_full"] and m["depth_msgs"] == 500 - m["dropped_disk_full"]
    assert http(rig, "/healthz") == (200, {"status": "ok"})
    filler.unlink()
    everything = [payload(i) for i in range(300)] + [payload(i) for i in range(1000, 1200)]
    await deliver_and_check(rig, at_hub, everything[int(m["dropped_disk_full"]):])
    assert log_lines(rig) == ([], [])  # dropping made room every time: no error state
