"""nats-py helpers for tests."""

from __future__ import annotations

from typing import Any


async def flush(nc: Any, timeout: float = 5.0) -> None:
    """Return once the server has processed every command ``nc`` sent before this call.

    ``nc.flush()`` alone does not promise that: nats-py (2.16) writes flush's PING straight to the
    socket, while ``subscribe()`` and ``publish()`` leave their SUB/PUB in a pending buffer that a
    separate flusher task writes on its next turn. Under load the PING overtakes a SUB and its PONG
    comes back before the server has seen the SUB (this made a request right after ``subscribe``
    and ``flush`` get "no responders" from nats-server about once in five runs). The flusher task
    was woken by that ``subscribe()``, so it writes the pending commands before the first PONG
    can be read; a second PING therefore follows them on the wire, and its PONG covers them.
    """
    await nc.flush(timeout)
    await nc.flush(timeout)
