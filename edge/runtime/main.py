"""Run the broker process: event loop, listeners, signals, orderly shutdown.

SIGTERM and SIGINT stop accepting, flush what is pending to clients and exit 0 within
``SHUTDOWN_TIMEOUT``. Startup failures (port in use, unwritable log file) are one line on stderr and
exit code 1, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import Final

from edge import NATS_SERVER_VERSION, __version__, build_kind
from edge.config.settings import Settings
from edge.errors import ListenError
from edge.runtime.heap import return_freed_heap
from edge.runtime.logging import configure_logging

log = logging.getLogger("edge.runtime")

SHUTDOWN_TIMEOUT: Final = 5.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_broker(settings: Settings, reload: Callable[[], Settings] | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code. ``reload`` re-reads the config on SIGHUP."""
    try:
        configure_logging(
            debug=settings.debug, trace=settings.trace, log_file=settings.log_file, logtime=settings.logtime
        )
    except OSError as exc:
        print(f"nats-edge: cannot open log file {settings.log_file}: {exc.strerror}", file=sys.stderr)
        return 1
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(settings, reload))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _serve(settings: Settings, reload: Callable[[], Settings] | None = None) -> int:
    from edge.runtime.broker import Broker
    from edge.runtime.reload import Lifecycle

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(settings)
    # The build is in the first line, as --version says it: `nats-edge bench` reads it from here.
    log.info("Starting nats-edge version %s (nats-server %s protocol, %s build)", __version__, NATS_SERVER_VERSION,
             build_kind())
    try:
        await broker.start()
    except ListenError as exc:
        log.error("%s", exc)
        await broker.stop(timeout=1.0)
        return 1
    except OSError as exc:  # not a listener: the outbox's directory, mDNS sockets, ...
        log.error("Can't start: %s", exc)
        await broker.stop(timeout=1.0)
        return 1
    # sd_notify READY=1/WATCHDOG/STATUS, SIGHUP reload, SIGUSR2 lame duck (edge.runtime.reload).
    life = Lifecycle(broker, stop, reload)
    life.install_signals()
    log.info("Server is ready")
    life.ready()
    return_freed_heap()
    await stop.wait()
    log.info("Initiating shutdown...")
    life.stopping()
    life.remove_signals()
    await broker.stop(timeout=SHUTDOWN_TIMEOUT)
    life.close()
    log.info("Server Exiting..")
    return 0
