"""The loop-blocking guard (tests.support.blocking, armed for every test by tests/conftest.py) catches
broker code that blocks a running event loop, and lets the same code run in a worker thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from blockbuster import BlockingError

from edge.config.settings import Settings
from edge.config.store_forward import StoreForwardSettings
from edge.store.forwarder import Forwarder
from tests.support.wires import dial


def forwarder(tmp_path: Path) -> Forwarder:
    return Forwarder(dial(Settings()).server, StoreForwardSettings(subjects=("t",)), str(tmp_path), None)


async def test_blocking_file_io_in_broker_code_on_the_loop_fails(tmp_path: Path) -> None:
    fw = forwarder(tmp_path)
    with pytest.raises(BlockingError, match="Blocking call to "):
        fw._stable_id()  # made for a worker thread (Forwarder.open runs it with to_thread)


async def test_the_same_code_in_a_worker_thread_passes(tmp_path: Path) -> None:
    fw = forwarder(tmp_path)
    gateway = await asyncio.to_thread(fw._stable_id)
    assert gateway.startswith("gw") and (tmp_path / "gateway.id").read_text() == gateway + "\n"


def test_without_a_running_loop_nothing_is_checked(tmp_path: Path) -> None:
    assert forwarder(tmp_path)._stable_id().startswith("gw")
