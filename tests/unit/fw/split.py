"""Feed a sans-IO decoder the same input whole, a byte at a time, or cut at given points."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from hypothesis import strategies as st


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """Split ``data`` at ``points`` (any ints; clamped, sorted, deduplicated)."""
    edges = sorted({min(max(p, 0), len(data)) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def run(make: Callable[[], Any], chunks: Sequence[bytes]) -> tuple[list[Any], dict[str, int]]:
    """Feed ``chunks`` to a fresh decoder; return all outputs and its final counters."""
    dec = make()
    out: list[Any] = []
    for chunk in chunks:
        out.extend(dec.feed(chunk))
    return out, dec.counters()


def ways(data: bytes) -> list[list[bytes]]:
    """The deterministic feeding plans: whole, byte at a time, and in halves."""
    return [[data], bytewise(data), cut(data, [len(data) // 2])]


split_points = st.lists(st.integers(min_value=0, max_value=100_000), max_size=12)
