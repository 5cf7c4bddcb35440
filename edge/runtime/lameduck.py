"""Lame duck mode (SIGUSR2), as nats-server's ``lameDuckMode()`` (server/server.go; docs section 4.5).

1. Stop accepting new clients; /healthz turns 503 so load balancers and checks see it.
2. Send every client an ``INFO`` with ``"ldm": true`` (and empty ``connect_urls``): nats.py, nats.go
   and others fire their lame-duck callback and can reconnect elsewhere.
3. Wait ``lame_duck_grace_period``, then close the clients spread evenly over
   ``lame_duck_duration - lame_duck_grace_period`` so that they do not all reconnect at once.
The caller then shuts the process down normally.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from edge.runtime.broker import Broker
    from edge.runtime.sdnotify import Notifier

log = logging.getLogger("edge.runtime")

# nats-server closes at least this many clients per step when there are many (server.go lameDuckMode
# batches so the whole run fits the duration); a floor on the pause keeps the loop responsive.
MIN_CLOSE_INTERVAL: Final = 0.001


async def run_lame_duck(broker: Broker, notifier: Notifier | None = None) -> None:
    server = broker.server
    if server is None:
        return
    settings = broker.settings
    broker.lame_duck = True
    server.stop_accepting()
    log.info("Entering lame duck mode, stop accepting new clients")
    if notifier is not None:
        notifier.status("lame duck: closing clients")
    line = server.lame_duck_info()
    for conn in list(server.clients.values()):
        # Queued on the connection's outbound buffer like any other protocol line; flushed this turn.
        conn.outbound.append(line)
    grace = settings.lame_duck_grace_period
    span = max(0.0, settings.lame_duck_duration - grace)
    if grace > 0:
        await asyncio.sleep(grace)
    clients = list(server.clients.values())
    if clients:
        log.info("Closing %d existing clients over %.1fs", len(clients), span)
    pause = max(MIN_CLOSE_INTERVAL, span / len(clients)) if clients else 0.0
    for conn in clients:
        conn.close()
        if pause and span:
            await asyncio.sleep(pause)
