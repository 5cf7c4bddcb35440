"""The broker process's parts, composed: the core server and (as they are enabled) the monitoring
endpoint, the leaf uplink, the outbox and the adapters. Start order is the dependency order; stop is
the reverse, each step bounded.
"""

from __future__ import annotations

import asyncio
import logging

from edge.config.settings import Settings
from edge.core.server import Server

log = logging.getLogger("edge.runtime")


class Broker:
    """Owns the server and the optional parts; ``start()`` then ``stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server: Server | None = None
        self.ports_file: str | None = None

    async def start(self) -> None:
        self.server = Server(self.settings, asyncio.get_running_loop())
        await self.server.start()
        if self.settings.ports_file_dir:
            self.ports_file = self.server.write_ports_file(self.settings.ports_file_dir)

    async def stop(self, timeout: float) -> None:
        if self.server is not None:
            await self.server.shutdown(timeout)
        if self.ports_file:
            import os

            try:
                os.unlink(self.ports_file)
            except OSError:
                pass
