"""``python tests/support/loop_blocker.py ARGS``: the nats-edge CLI, where SIGUSR1 blocks its event loop.

Test harness only (the broker has no such hook): with ``NATS_EDGE_TEST_BLOCK_LOOP_SECONDS=N`` in the
environment, :func:`tests.support.processes.start_nats_edge` runs the broker through this file, and a
SIGUSR1 makes the main thread, which runs the event loop, sleep N seconds: a deliberately blocked loop,
to show that the systemd watchdog pings stop while it is blocked.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

BLOCK_ENV = "NATS_EDGE_TEST_BLOCK_LOOP_SECONDS"


def main() -> int:
    seconds = float(os.environ[BLOCK_ENV])

    def block(signum: int, frame: FrameType | None) -> None:
        time.sleep(seconds)  # runs on the main thread, between two steps of the event loop

    signal.signal(signal.SIGUSR1, block)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from edge.cli import main as edge_main

    return edge_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
