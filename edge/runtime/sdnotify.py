"""sd_notify(3) from the broker itself: READY/STATUS/WATCHDOG/RELOADING/STOPPING over $NOTIFY_SOCKET.

The protocol is a few newline-separated ``KEY=value`` assignments in one datagram sent to the
AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace), see
sd_notify(3) and systemd's "Notify socket" protocol doc. No dependency is needed.

Contracts:
- Sending never blocks the event loop: the socket is non-blocking, and a datagram that cannot be sent
  at once (EAGAIN, no listener) is dropped and counted. systemd keeps the last STATUS anyway.
- ``WATCHDOG=1`` is sent from a ``loop.call_later`` timer, so it stops as soon as the loop stops turning;
  systemd then kills and restarts the service (``WatchdogSec=`` in the unit). The interval is half of
  ``$WATCHDOG_USEC`` as sd_watchdog_enabled(3) recommends, and pings are only sent when
  ``$WATCHDOG_PID`` is unset or names this process.
- ``RELOADING=1`` carries ``MONOTONIC_USEC=`` (required for Type=notify-reload, harmless for Type=notify).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

log = logging.getLogger("edge.runtime")

# systemd's own sd_notify caps the state string; a STATUS line longer than this is truncated so that a
# datagram is always small (the AF_UNIX datagram limit is far larger, this is just a sane bound).
MAX_STATUS_LEN: Final = 512
# How often STATUS= is refreshed while running (seconds).
STATUS_INTERVAL: Final = 5.0


class Notifier:
    """A non-blocking sender of sd_notify datagrams; does nothing when $NOTIFY_SOCKET is unset."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address: str | None = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.dropped = 0
        self.sent = 0
        self._sock: socket.socket | None = None
        if self.address is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines (keyword names are upper-cased). Returns False if dropped."""
        if self._sock is None or self.address is None:
            return False
        lines = []
        for key, value in fields.items():
            text = str(value).replace("\n", " ")
            if key == "status":
                text = text[:MAX_STATUS_LEN]
            lines.append(f"{key.upper()}={text}")
        try:
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            # EAGAIN (receiver's queue full), ECONNREFUSED/ENOENT (nobody listening): drop, never wait.
            self.dropped += 1
            if self.dropped == 1:
                log.warning("sd_notify to %s failed: %s (further failures are counted, not logged)", self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> None:
        if status is None:
            self.notify(ready=1)
        else:
            self.notify(ready=1, status=status)

    def reloading(self) -> None:
        self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> None:
        self.notify(stopping=1)

    def status(self, text: str) -> None:
        self.notify(status=text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Heartbeat:
    """Loop-driven WATCHDOG=1 pings and periodic STATUS= updates.

    ``status_fn`` returns the STATUS text (clients, rates, uplink, outbox); it must be cheap and
    must not block. Both timers are ``call_later`` handles owned here and cancelled by ``stop()``.
    """

    def __init__(
        self,
        notifier: Notifier,
        loop: asyncio.AbstractEventLoop,
        status_fn: Callable[[], str] | None = None,
        status_interval: float = STATUS_INTERVAL,
    ) -> None:
        self.notifier = notifier
        self.loop = loop
        self.status_fn = status_fn
        self.status_interval = status_interval
        self.pings = 0
        self._watchdog: asyncio.TimerHandle | None = None
        self._status: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        if self.notifier.watchdog_interval:
            self._ping()
        if self.status_fn is not None:
            self._status = self.loop.call_later(self.status_interval, self._send_status)

    def _ping(self) -> None:
        self.pings += 1
        self.notifier.notify(watchdog=1)
        interval = self.notifier.watchdog_interval
        assert interval is not None
        self._watchdog = self.loop.call_later(interval, self._ping)

    def _send_status(self) -> None:
        assert self.status_fn is not None
        try:
            self.notifier.status(self.status_fn())
        except Exception:  # a bad status text must not stop the service; the log shows why
            log.exception("building the sd_notify STATUS failed")
        self._status = self.loop.call_later(self.status_interval, self._send_status)

    def stop(self) -> None:
        for handle in (self._watchdog, self._status):
            if handle is not None:
                handle.cancel()
        self._watchdog = self._status = None


def _socket_address(value: str) -> str | None:
    """$NOTIFY_SOCKET as a sendto() address: ``@name`` is the abstract namespace (leading NUL)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock:// and other transports are not used for services on a gateway


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of $WATCHDOG_USEC (sd_watchdog_enabled(3)), or None when the watchdog is off or not ours."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    try:
        micros = int(usec)
    except ValueError:
        return None
    if micros <= 0:
        return None
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return micros / 2 / 1_000_000
