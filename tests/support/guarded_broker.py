"""``python tests/support/guarded_broker.py ARGS``: the nats-edge CLI with the loop-blocking guard armed
inside the broker process (tests.support.blocking).

Test harness only: :func:`tests.support.processes.start_nats_edge` runs the broker through this file
instead of ``python -m edge`` when ``NATS_EDGE_TEST_BLOCKBUSTER=1`` is in its environment; production
code has no hook for it. A blocking call on the broker's loop raises ``BlockingError`` there, which the
broker may catch and log; so that it cannot go unnoticed, every one is also written to stderr (the log)
as a line starting with :data:`MARK`, followed by the stack.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

MARK = "LOOP BLOCKED:"
ARMED = "loop-blocking guard armed"


def main() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.support
    from blockbuster import blockbuster as bb_module

    from tests.support.blocking import loop_blocking_guard

    raise_blocking = bb_module.BlockingError.__init__

    def report(self: Exception, func: str) -> None:
        sys.stderr.write(f"{MARK} {func}\n{''.join(traceback.format_stack(limit=30))}")
        sys.stderr.flush()
        raise_blocking(self, func)

    bb_module.BlockingError.__init__ = report  # type: ignore[method-assign]
    from edge.cli import main as edge_main

    with loop_blocking_guard():
        sys.stderr.write(ARMED + "\n")
        sys.stderr.flush()
        return edge_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
