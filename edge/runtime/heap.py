"""Give the heap that start-up left free back to the OS.

glibc keeps memory that imports and config parsing freed below its trim threshold, and only
``malloc_trim`` hands the free pages in the middle of the heap back: about 1 MB of idle RSS here with
bytecode, 2.5 MB without (the 25 MB idle budget is tight). The compiled build calls glibc's function
directly (declared in heap.pxd); the pure-Python build reaches it through ctypes, which itself costs
about 0.3 MB resident, which is why this small module is compiled too.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["return_freed_heap"]


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # The compiled build: glibc's malloc_trim (a no-op elsewhere), declared in heap.pxd.
        return _c_malloc_trim  # type: ignore[name-defined]
    except NameError:  # the pure-Python build
        pass
    try:
        import ctypes

        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim


def return_freed_heap() -> None:
    """Collect garbage, then return the heap's free pages to the OS where the C library can."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
