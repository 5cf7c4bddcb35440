"""Waiting for a condition with a deadline: the one way tests synchronise (never a bare sleep).

:func:`wait_for` polls from synchronous code (it sleeps between polls, so never call it on a running
event loop); :func:`async_wait_for` polls from a coroutine and lets the loop run between polls. Both
return the predicate's first truthy value and raise ``AssertionError`` naming ``what`` on timeout.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes (then AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def async_wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str,
                         interval: float = 0.005) -> T:
    """:func:`wait_for` for coroutines: the event loop runs between polls; ``predicate`` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        value = cast("T", value)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
