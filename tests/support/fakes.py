"""A fake transport and a manual-time loop for driving protocol classes without sockets or wall-clock time.

The middle test tier (uvicorn's ``MockTransport``/``MockLoop`` pattern): a real :class:`ClientConnection`
or :class:`LeafLink` is built on a real :class:`~edge.core.server.Server` whose ``loop`` is a
:class:`ManualLoop`, and connected to a :class:`FakeTransport`. Timers (``call_later``/``call_at``) fire
only when the test calls :meth:`ManualLoop.advance`, and ``time()`` moves only then, so a 120 s ping
interval or a 10 s write deadline is checked exactly and instantly. ``call_soon`` callbacks (the
server's once-per-turn flush) run on :meth:`ManualLoop.run_ready`, which :meth:`advance` also does.

The loop is not an event loop: nothing here awaits. ``create_task`` hands the coroutine to the test's
real running loop (the bcrypt check's worker thread needs one) and keeps the task in
:attr:`ManualLoop.tasks` for the test to await.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
from collections.abc import Callable, Coroutine
from typing import Any

PEER = ("127.0.0.1", 50000)
LOCAL = ("127.0.0.1", 4222)


class FakeTransport:
    """An ``asyncio.Transport`` stand-in that records what the protocol does to it.

    ``stalled`` models a peer that stopped reading: written bytes then stay in the write buffer
    (``get_write_buffer_size``) until :meth:`drain`. ``close``/``abort`` only record; they do not call
    ``connection_lost`` (a test that wants it calls it, as the loop would on the next turn).
    """

    def __init__(self, peername: Any = PEER, sockname: Any = LOCAL) -> None:
        self.extra: dict[str, Any] = {"peername": peername, "sockname": sockname}
        self.data = bytearray()  # everything written, in order
        self.stalled = False
        self.buffered = 0
        self.reading = True
        self.closing = False
        self.aborted = False

    # -- what the protocol calls ----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closing, "write after close"
        self.data += data
        if self.stalled:
            self.buffered += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        assert self.reading, "pause_reading while paused"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resume_reading while reading"
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True
        self.aborted = True
        self.buffered = 0

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)

    # -- for the test ---------------------------------------------------------------------------

    def take(self) -> bytes:
        """What was written since the last call."""
        out = bytes(self.data)
        self.data.clear()
        return out

    def drain(self) -> None:
        """The peer read everything buffered."""
        self.buffered = 0


class ManualLoop:
    """The slice of ``asyncio.AbstractEventLoop`` the broker's protocol classes use, on manual time.

    Handles are real :class:`asyncio.Handle`/:class:`asyncio.TimerHandle` objects, so ``cancel()``
    behaves as on a real loop. An exception in a callback is raised out of :meth:`advance` /
    :meth:`run_ready` rather than logged, so a bug fails the test that caused it.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._ready: list[asyncio.Handle] = []
        self._timers: list[tuple[float, int, asyncio.TimerHandle]] = []
        self._seq = 0  # FIFO among timers due at the same time, as asyncio does
        self.tasks: list[asyncio.Task[Any]] = []

    # -- asyncio.AbstractEventLoop --------------------------------------------------------------

    def time(self) -> float:
        return self._now

    def get_debug(self) -> bool:
        return False

    def call_soon(self, callback: Callable[..., Any], *args: Any,
                  context: contextvars.Context | None = None) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)  # type: ignore[arg-type]
        self._ready.append(handle)
        return handle

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any,
                   context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        return self.call_at(self._now + delay, callback, *args, context=context)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any,
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)  # type: ignore[arg-type]
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, handle))
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        pass  # cancelled handles are skipped when they come due

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)  # type: ignore[arg-type]

    def create_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None,
                    context: contextvars.Context | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name, context=context)
        self.tasks.append(task)
        return task

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            raise exc
        raise AssertionError(context.get("message", "error in a loop callback"))

    # -- for the test ---------------------------------------------------------------------------

    def run_ready(self) -> None:
        """Run ``call_soon`` callbacks, including those they schedule, until none is left."""
        for _ in range(10_000):  # a callback that reschedules itself forever is a bug: stop, loudly
            if not self._ready:
                return
            ready, self._ready = self._ready, []
            for handle in ready:
                if not handle.cancelled():
                    handle._run()
        raise AssertionError("call_soon callbacks kept scheduling themselves")

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer due on the way at its own time."""
        assert seconds >= 0
        target = self._now + seconds
        self.run_ready()
        while self._timers and self._timers[0][0] <= target:
            when, _, handle = heapq.heappop(self._timers)
            if handle.cancelled():
                continue
            self._now = max(self._now, when)
            handle._run()
            self.run_ready()
        self._now = target

    @property
    def pending_timers(self) -> list[float]:
        """Due times (relative to now) of the timers not cancelled, soonest first."""
        return sorted(when - self._now for when, _, h in self._timers if not h.cancelled())
